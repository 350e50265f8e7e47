//! A fresh, migrated database per test, on either backend (feature `test-support`).
//!
//! PostgreSQL: each test gets its own database, cloned from a template that was migrated
//! once. Cloning a template takes a fraction of a second, against seconds for running the
//! migrations, and separate databases let tests run in parallel without seeing each other's
//! rows. The template's name carries a hash of the migration files, so a changed migration
//! gets a new template instead of a stale one; an advisory lock keeps concurrent test
//! processes from building it twice. The database is dropped when the [`TestDatabase`] is.
//!
//! MariaDB: each test gets its own database too, migrated directly (MariaDB has no template
//! databases; `marquee migrate` of its four migrations into an empty database took 0.04 s,
//! process start included, on the development machine).
//!
//! SQLite: a file in a temporary folder, migrated directly (milliseconds).
//!
//! These helpers panic on failure by design: a test whose arrangement fails must fail.
#![allow(clippy::expect_used)]

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

use crate::connection::{Backend, DatabaseUrl, DbConnection};
use crate::migrations::run_pending;

/// Environment variable naming a PostgreSQL server for tests: a URL whose database the test
/// user can connect to and create databases from, e.g. `postgres://postgres@127.0.0.1/postgres`.
pub const POSTGRES_URL_VAR: &str = "MARQUEE_TEST_DATABASE_URL";

/// Environment variable naming a MariaDB (or MySQL 8) server for tests: a URL whose user may
/// create databases, e.g. `mysql://root@127.0.0.1:3306/test`.
pub const MYSQL_URL_VAR: &str = "MARQUEE_TEST_MYSQL_URL";

/// A database that exists for one test.
#[derive(Debug)]
pub struct TestDatabase {
    url: DatabaseUrl,
    /// The server's admin URL and the database's name, to drop it with.
    server: Option<(Backend, String, String)>,
    _dir: Option<tempfile::TempDir>,
}

/// A name no other test database of this process (or another) has.
fn test_database_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "marquee_test_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The URL the variable `var` names; panics, naming the variable, if it is unset.
fn server_url(var: &str, what: &str, example: &str) -> String {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "this test needs {what}: set {var} to a server whose user may create databases, \
             e.g. {example}"
        ),
    }
}

impl TestDatabase {
    /// A migrated SQLite database in a new temporary folder.
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("create a temporary folder");
        let path = dir.path().join("marquee.sqlite3");
        let url = DatabaseUrl::parse(&path.to_string_lossy()).expect("a file path is a SQLite url");
        let mut conn = connect(&url, "open the test SQLite database");
        run_pending(&mut conn).expect("migrate the test SQLite database");
        Self {
            url,
            server: None,
            _dir: Some(dir),
        }
    }

    /// A migrated PostgreSQL database cloned from the template on the server
    /// [`POSTGRES_URL_VAR`] names.
    ///
    /// # Panics
    /// If that variable is unset or empty. A test that calls this carries
    /// `#[ignore = "needs PostgreSQL: set MARQUEE_TEST_DATABASE_URL"]`, so it only runs when
    /// asked for (`--include-ignored`), and then it must fail rather than pass without
    /// PostgreSQL.
    pub fn postgres() -> Self {
        let admin = server_url(
            POSTGRES_URL_VAR,
            "PostgreSQL",
            "postgres://postgres@127.0.0.1:5432/postgres",
        );
        let template = ensure_template(&admin);
        let name = test_database_name();
        let mut conn = admin_connection(&admin);
        conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .expect("drop a leftover test database");
        conn.batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
            .expect("clone the template database");
        let url = DatabaseUrl::parse(&with_database(&admin, &name)).expect("a postgres url");
        Self {
            url,
            server: Some((Backend::Postgres, admin, name)),
            _dir: None,
        }
    }

    /// A migrated MariaDB database of its own on the server [`MYSQL_URL_VAR`] names.
    ///
    /// # Panics
    /// If that variable is unset or empty (see [`TestDatabase::postgres`]).
    pub fn mysql() -> Self {
        let admin = server_url(MYSQL_URL_VAR, "MariaDB", "mysql://root@127.0.0.1:3306/test");
        let name = test_database_name();
        let mut conn = MysqlConnection::establish(&admin)
            .unwrap_or_else(|error| panic!("connect to {MYSQL_URL_VAR}: {error}"));
        conn.batch_execute(&format!(
            "DROP DATABASE IF EXISTS {name}; \
             CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
        ))
        .expect("create the test database");
        let url = DatabaseUrl::parse(&with_database(&admin, &name)).expect("a mysql url");
        let mut migrating = connect(&url, "connect to the test database");
        run_pending(&mut migrating).expect("migrate the test MariaDB database");
        Self {
            url,
            server: Some((Backend::Mysql, admin, name)),
            _dir: None,
        }
    }

    /// A database of the given backend (see [`TestDatabase::postgres`] for PostgreSQL's).
    pub fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => Self::sqlite(),
            Backend::Postgres => Self::postgres(),
            Backend::Mysql => Self::mysql(),
        }
    }

    pub fn url(&self) -> &DatabaseUrl {
        &self.url
    }

    /// Runs SQL directly, outside any pool (for arranging unusual states in tests).
    pub fn execute(&self, sql: &str) {
        self.session().execute(sql);
    }
}

/// A connection of its own that stays open, outside any pool: for holding locks the way
/// another process would (a backup, a second instance, an operator in `psql`).
#[derive(Debug)]
pub struct TestSession(DbConnection);

impl TestSession {
    /// Runs SQL on this session; a transaction it begins stays open until it is ended here
    /// or the session is dropped.
    pub fn execute(&mut self, sql: &str) {
        self.0.batch_execute(sql).expect("run test SQL");
    }
}

impl TestDatabase {
    /// Opens a [`TestSession`] on this database.
    pub fn session(&self) -> TestSession {
        TestSession(connect(&self.url, "connect to the test database"))
    }

    /// Runs a query that returns one integer column named `n` (e.g. `SELECT count(*) AS n
    /// FROM seats`), for checks on the tables themselves.
    pub fn count(&self, sql: &str) -> i64 {
        diesel::sql_query(sql)
            .get_result::<Found>(&mut self.session().0)
            .expect("run a counting query")
            .n
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        match &self.server {
            Some((Backend::Postgres, admin, name)) => {
                // FORCE ends the connections a test's pool may still hold.
                if let Ok(mut conn) = PgConnection::establish(admin) {
                    let _ =
                        conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
                }
            }
            // MariaDB drops a database under its open connections' feet.
            Some((Backend::Mysql, admin, name)) => {
                if let Ok(mut conn) = MysqlConnection::establish(admin) {
                    let _ = conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name}"));
                }
            }
            _ => {}
        }
    }
}

/// A connection to `url` with the settings the pool gives each of its connections, outside
/// any pool; panics with `expectation` if it cannot be opened.
fn connect(url: &DatabaseUrl, expectation: &str) -> DbConnection {
    url.establish(
        &crate::PoolConfig::default(),
        &crate::SessionTimeouts::default(),
    )
    .expect(expectation)
}

fn admin_connection(admin: &str) -> PgConnection {
    PgConnection::establish(admin)
        .unwrap_or_else(|error| panic!("connect to {POSTGRES_URL_VAR}: {error}"))
}

/// `url` with its database name replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let mut url = url::Url::parse(url)
        .unwrap_or_else(|error| panic!("a test server's URL is not a URL: {error}"));
    url.set_path(database);
    url.into()
}

#[derive(QueryableByName)]
struct Found {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Creates the migrated template for the current migrations if it does not exist yet;
/// returns its name.
fn ensure_template(admin: &str) -> String {
    let name = format!("marquee_template_{:016x}", migrations_hash());
    let mut conn = admin_connection(admin);
    // Any constant shared by every test process works as the lock key.
    conn.batch_execute("SELECT pg_advisory_lock(7262736)")
        .expect("take the template lock");
    let exists = diesel::sql_query("SELECT count(*) AS n FROM pg_database WHERE datname = $1")
        .bind::<Text, _>(&name)
        .get_result::<Found>(&mut conn)
        .expect("look up the template")
        .n
        > 0;
    if !exists {
        // Templates of other migration sets are left alone: checkouts with different
        // migrations (two branches, or worktrees) test side by side on one server, and
        // dropping another's template would fail its tests while they clone it. Each is a
        // few megabytes; `DROP DATABASE` removes old ones by hand.
        let building = format!("{name}_building");
        conn.batch_execute(&format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"))
            .and_then(|()| conn.batch_execute(&format!("CREATE DATABASE {building}")))
            .expect("create the template database");
        {
            let url = DatabaseUrl::parse(&with_database(admin, &building)).expect("a postgres url");
            let mut template = connect(&url, "connect to the template database");
            run_pending(&mut template).expect("migrate the template database");
        }
        conn.batch_execute(&format!("ALTER DATABASE {building} RENAME TO {name}"))
            .expect("publish the template database");
    }
    conn.batch_execute("SELECT pg_advisory_unlock(7262736)")
        .expect("release the template lock");
    name
}

/// 64-bit FNV-1a: a hash whose value is fixed by its definition, so the template name stays
/// the same across Rust releases (std's `DefaultHasher` promises no such thing).
#[derive(Debug)]
struct Fnv(u64);

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// A hash of every PostgreSQL migration file's name and content.
fn migrations_hash() -> u64 {
    fn visit(dir: &Path, hasher: &mut Fnv) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("read the migrations folder")
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                visit(&path, hasher);
            } else {
                hasher.write(path.file_name().unwrap_or_default().as_encoded_bytes());
                hasher.write(&std::fs::read(&path).expect("read a migration"));
            }
        }
    }
    let mut hasher = Fnv(0xcbf2_9ce4_8422_2325);
    visit(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres"),
        &mut hasher,
    );
    hasher.0
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_the_database_name() {
        assert_eq!(
            with_database("postgres://u@h:5432/postgres", "t1"),
            "postgres://u@h:5432/t1"
        );
        assert_eq!(
            with_database("postgres://u@h/postgres?sslmode=disable", "t1"),
            "postgres://u@h/t1?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h", "t1"), "postgres://u@h/t1");
    }
}
