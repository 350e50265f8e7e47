//! Which database a URL names, and the one connection type that speaks to each of them.

use std::fmt;
use std::path::Path;

use diesel::connection::SimpleConnection;
use diesel::{Connection, MysqlConnection, PgConnection, SqliteConnection};

use percent_encoding::percent_decode_str;
use url::Url;

use marquee_pool::PoolConfig;

use crate::config::SessionTimeouts;

/// A connection to PostgreSQL, SQLite or MariaDB (MySQL).
///
/// Queries are written once against this type (one `schema.rs`); diesel checks at compile
/// time that each is valid on every backend. Where the dialects differ, code matches on the
/// variant, and those places are listed in ARCHITECTURE.md.
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Postgres(PgConnection),
    Sqlite(SqliteConnection),
    Mysql(MysqlConnection),
}

/// Runs the same diesel code on whichever concrete connection `$conn` holds.
///
/// For the few statements diesel's multi-backend type cannot express (today: multi-row
/// `INSERT`, whose `DEFAULT` handling differs between the backends). Each arm is compiled
/// for its own backend, so the body is still checked by diesel on both.
macro_rules! on_concrete_connection {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::connection::DbConnection::Postgres($c) => $body,
            $crate::connection::DbConnection::Sqlite($c) => $body,
            $crate::connection::DbConnection::Mysql($c) => $body,
        }
    };
}
pub(crate) use on_concrete_connection;

/// Runs `$body` in a write transaction on the concrete connection `$conn` holds, rolling
/// back if it returns `Err`.
///
/// On SQLite the transaction is `BEGIN IMMEDIATE`: it takes the write lock at the start. A
/// plain (deferred) transaction that reads and then writes can find another writer ahead of
/// it at the write and fail at once with "database is locked", since waiting could deadlock;
/// an immediate one waits its turn (busy_timeout) instead. On PostgreSQL and MariaDB row
/// locks and the statements' conditions do the arbitration, and an ordinary transaction is
/// right (READ COMMITTED on both: see `establish`).
macro_rules! write_transaction {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::connection::DbConnection::Postgres($c) => {
                diesel::Connection::transaction($c, |$c| $body)
            }
            $crate::connection::DbConnection::Sqlite($c) => $c.immediate_transaction(|$c| $body),
            $crate::connection::DbConnection::Mysql($c) => {
                diesel::Connection::transaction($c, |$c| $body)
            }
        }
    };
    // The same on SQLite and MariaDB; on PostgreSQL `$pg_body` runs instead, as it is (with
    // a transaction of its own if it wants one): the operations PostgreSQL does in one
    // function call.
    ($conn:expr, postgres: |$pg:ident| $pg_body:expr, portable: |$c:ident| $body:expr) => {
        match $conn {
            $crate::connection::DbConnection::Postgres($pg) => $pg_body,
            $crate::connection::DbConnection::Sqlite($c) => $c.immediate_transaction(|$c| $body),
            $crate::connection::DbConnection::Mysql($c) => {
                diesel::Connection::transaction($c, |$c| $body)
            }
        }
    };
}
pub(crate) use write_transaction;

impl fmt::Debug for DbConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Postgres(_) => "DbConnection::Postgres",
            Self::Sqlite(_) => "DbConnection::Sqlite",
            Self::Mysql(_) => "DbConnection::Mysql",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
    /// MariaDB, or MySQL 8: one dialect, one client library (libmariadb).
    Mysql,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Sqlite => "sqlite",
            Self::Mysql => "mysql",
        }
    }
}

/// A database location: a `postgres://` (or `postgresql://`) URL, a `mysql://` (or
/// `mariadb://`) URL, or a SQLite file path (optionally written `sqlite://path`).
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(Location);

#[derive(Clone, PartialEq, Eq)]
enum Location {
    /// A libpq connection URI, as the `url` crate parsed (and normalised) it.
    Postgres(Url),
    /// A MariaDB/MySQL URL (`mysql://user:password@host:3306/database`), its scheme
    /// `mysql` whichever of the two it was written with.
    Mysql(Url),
    /// A SQLite file path.
    Sqlite(String),
}

/// Why a database URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatabaseUrlError {
    #[error("is empty")]
    Empty,
    #[error(
        "an in-memory SQLite database is private to one connection and cannot back a pool; use a file path"
    )]
    InMemorySqlite,
    #[error(
        "has the unsupported scheme {0:?}; use postgres://, postgresql://, mysql://, mariadb://, sqlite:// or a file path"
    )]
    UnsupportedScheme(String),
    /// The parser's reason, which never quotes the URL (it may hold a password).
    #[error("is not a valid URL ({0})")]
    Invalid(String),
}

impl DatabaseUrl {
    pub fn parse(url: &str) -> Result<Self, DatabaseUrlError> {
        let url = url.trim();
        if url.is_empty() {
            return Err(DatabaseUrlError::Empty);
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let parsed =
                Url::parse(url).map_err(|error| DatabaseUrlError::Invalid(error.to_string()))?;
            return Ok(Self(Location::Postgres(parsed)));
        }
        if let Some(rest) = url
            .strip_prefix("mysql://")
            .or_else(|| url.strip_prefix("mariadb://"))
        {
            // The client library knows only `mysql://`.
            let parsed = Url::parse(&format!("mysql://{rest}"))
                .map_err(|error| DatabaseUrlError::Invalid(error.to_string()))?;
            return Ok(Self(Location::Mysql(parsed)));
        }
        if let Some((scheme, _)) = url.split_once("://")
            && scheme != "sqlite"
        {
            // A mistyped scheme would otherwise become a SQLite file named after it.
            return Err(DatabaseUrlError::UnsupportedScheme(scheme.to_owned()));
        }
        let path = url.strip_prefix("sqlite://").unwrap_or(url);
        if path.is_empty() {
            return Err(DatabaseUrlError::Empty);
        }
        if path == ":memory:" || path.contains("mode=memory") {
            return Err(DatabaseUrlError::InMemorySqlite);
        }
        Ok(Self(Location::Sqlite(path.to_owned())))
    }

    pub fn backend(&self) -> Backend {
        match self.0 {
            Location::Postgres(_) => Backend::Postgres,
            Location::Sqlite(_) => Backend::Sqlite,
            Location::Mysql(_) => Backend::Mysql,
        }
    }

    /// The URL (normalised by the URL parser) or the path. May contain a password: never log
    /// it; log [`DatabaseUrl::redacted`] instead.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Location::Postgres(url) | Location::Mysql(url) => url.as_str(),
            Location::Sqlite(path) => path,
        }
    }

    /// The location with every password replaced by `***`, for logs and errors: the
    /// password of the user, and the value of any query parameter whose name contains
    /// `password` (libpq's `password` and `sslpassword`). A SQLite path is shown as it is.
    pub fn redacted(&self) -> String {
        let url = match &self.0 {
            Location::Postgres(url) | Location::Mysql(url) => url,
            Location::Sqlite(path) => return path.clone(),
        };
        let mut shown = url.clone();
        if url.password().is_some() && shown.set_password(Some("***")).is_err() {
            // Only a URL without a host refuses a password, and the parser gives such a URL
            // none; should one appear anyway, show nothing of it rather than the password.
            return format!("{}://***", url.scheme());
        }
        if url.query().is_some() {
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(key, value)| {
                    let value = if is_secret_parameter(&key) {
                        "***".to_owned()
                    } else {
                        value.into_owned()
                    };
                    (key.into_owned(), value)
                })
                .collect();
            shown.query_pairs_mut().clear().extend_pairs(pairs);
        }
        shown.into()
    }

    /// The URL's secrets as they may appear in a driver's message: each password, both as
    /// written (percent-encoded) and decoded.
    fn secrets(&self) -> Vec<String> {
        let (Location::Postgres(url) | Location::Mysql(url)) = &self.0 else {
            return Vec::new();
        };
        let mut secrets: Vec<String> = url
            .query_pairs()
            .filter(|(key, _)| is_secret_parameter(key))
            .map(|(_, value)| value.into_owned())
            .collect();
        if let Some(password) = url.password() {
            secrets.push(password.to_owned());
            secrets.push(
                percent_decode_str(password)
                    .decode_utf8_lossy()
                    .into_owned(),
            );
        }
        secrets.retain(|secret| !secret.is_empty());
        // Longest first, so that a secret containing another is replaced whole.
        secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
        secrets
    }

    /// Removes the URL's passwords from a connection error. libpq quotes parts of the
    /// connection string in some of its messages (a malformed percent-encoding, a host it
    /// cannot resolve), and these messages are logged and reported at start-up.
    fn scrub(&self, error: diesel::ConnectionError) -> diesel::ConnectionError {
        use diesel::ConnectionError as E;
        let secrets = self.secrets();
        let clean = |message: String| {
            secrets
                .iter()
                .fold(message, |message, secret| message.replace(secret, "***"))
        };
        match error {
            E::BadConnection(message) => E::BadConnection(clean(message)),
            E::InvalidConnectionUrl(message) => E::InvalidConnectionUrl(clean(message)),
            other => other,
        }
    }

    /// Opens one connection, applying the per-connection settings each backend needs.
    pub(crate) fn establish(
        &self,
        config: &PoolConfig,
        timeouts: &SessionTimeouts,
    ) -> Result<DbConnection, diesel::ConnectionError> {
        match &self.0 {
            Location::Postgres(url) => {
                let mut conn = PgConnection::establish(libpq_url(url, config).as_str())
                    .map_err(|error| self.scrub(error))?;
                // Set per session rather than in the URL's `options`, so that the URL's own
                // parameters stay as the operator wrote them; these win over them.
                conn.batch_execute(&format!(
                    "SET lock_timeout = {}; SET statement_timeout = {};",
                    timeouts.lock_timeout_ms(),
                    timeouts.statement_timeout_ms()
                ))
                .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                Ok(DbConnection::Postgres(conn))
            }
            Location::Mysql(url) => {
                let mut conn =
                    MysqlConnection::establish(url.as_str()).map_err(|error| self.scrub(error))?;
                conn.batch_execute(&mysql_session(timeouts))
                    .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                // MariaDB bounds a statement's run with `max_statement_time`; MySQL 8 has no
                // such variable, and bounds SELECTs only, with `max_execution_time`.
                let mariadb = conn.batch_execute(&format!(
                    "SET SESSION max_statement_time = {}",
                    timeouts.statement_timeout.as_secs_f64()
                ));
                if mariadb.is_err() {
                    let bound = timeouts.statement_timeout_ms();
                    conn.batch_execute(&format!("SET SESSION max_execution_time = {bound}"))
                        .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                }
                Ok(DbConnection::Mysql(conn))
            }
            Location::Sqlite(path) => {
                if let Some(parent) = Path::new(path).parent()
                    && !parent.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(parent).map_err(|error| {
                        diesel::ConnectionError::BadConnection(format!(
                            "cannot create the folder {}: {error}",
                            parent.display()
                        ))
                    })?;
                }
                let mut conn = SqliteConnection::establish(path)?;
                // busy_timeout first: it makes this connection wait (at most lock_timeout)
                // for a lock instead of failing at once with SQLITE_BUSY, and switching to
                // WAL takes one while the pool opens its other connections. WAL lets readers
                // run beside the one writer. Foreign keys are off by default in SQLite; the
                // schema relies on them.
                conn.batch_execute(&format!(
                    "PRAGMA busy_timeout = {}; PRAGMA journal_mode = WAL; \
                     PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
                    timeouts.lock_timeout_ms()
                ))
                .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                Ok(DbConnection::Sqlite(conn))
            }
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted())
    }
}

/// The session settings of a MariaDB/MySQL connection:
///
/// - UTC: `DATETIME` columns hold UTC, as `TIMESTAMP` columns do on PostgreSQL, and `NOW()`
///   must agree with them;
/// - strict mode: a value that does not fit is an error, not a silent truncation;
/// - READ COMMITTED: InnoDB's default, REPEATABLE READ, takes gap locks on the ranges a
///   locking read or an UPDATE scans, so two holds on different seats of one schedule can
///   block (or deadlock) each other where PostgreSQL lets them pass; under READ COMMITTED
///   InnoDB locks the rows it changes, as PostgreSQL does, and each statement sees what
///   committed before it;
/// - the lock timeout, in whole seconds (MariaDB counts no finer), rounded up: for row locks
///   (`innodb_lock_wait_timeout`) and for the table locks a migration or `LOCK TABLES` takes
///   (`lock_wait_timeout`, a year by default).
fn mysql_session(timeouts: &SessionTimeouts) -> String {
    format!(
        "SET SESSION time_zone = '+00:00'; \
         SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_DATE,NO_ZERO_IN_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'; \
         SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED; \
         SET SESSION innodb_lock_wait_timeout = {seconds}; \
         SET SESSION lock_wait_timeout = {seconds};",
        seconds = timeouts.lock_timeout_ms().div_ceil(1000).max(1)
    )
}

/// Whether a libpq query parameter holds a secret (`password`, `sslpassword`).
fn is_secret_parameter(key: &str) -> bool {
    key.to_ascii_lowercase().contains("password")
}

/// `url` with the libpq time bounds it does not set itself.
///
/// Without `connect_timeout` a black-holed host keeps a connect attempt for the kernel's
/// SYN timeout (minutes); without `tcp_user_timeout` a link that dies mid-query leaves the
/// query waiting for the kernel's retransmission timeout (about 15 minutes), holding a pool
/// connection all that time.
fn libpq_url(url: &Url, config: &PoolConfig) -> Url {
    let mut url = url.clone();
    // libpq takes whole seconds here, and treats anything below 2 as 2.
    let bounds = [
        (
            "connect_timeout",
            config.connection_timeout.as_secs().max(2).to_string(),
        ),
        (
            "tcp_user_timeout",
            config.validation_timeout.as_millis().to_string(),
        ),
    ];
    for (key, value) in bounds {
        if !url.query_pairs().any(|(present, _)| present == key) {
            url.query_pairs_mut().append_pair(key, &value);
        }
    }
    url
}

/// Opens Marquee's connections for the pool: the URL's backend, with the per-connection
/// settings each backend needs (see [`DatabaseUrl`]).
#[derive(Debug)]
pub(crate) struct DbConnector {
    pub(crate) url: DatabaseUrl,
    /// The pool's settings, for libpq's own time bounds.
    pub(crate) config: PoolConfig,
    pub(crate) timeouts: SessionTimeouts,
}

impl marquee_pool::Connector for DbConnector {
    type Connection = DbConnection;

    fn connect(&self) -> Result<DbConnection, diesel::ConnectionError> {
        self.url.establish(&self.config, &self.timeouts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_backends() {
        let pg = DatabaseUrl::parse("postgres://u:secret@db:5432/marquee").expect("valid");
        assert_eq!(pg.backend(), Backend::Postgres);
        assert_eq!(pg.redacted(), "postgres://u:***@db:5432/marquee");
        let sqlite = DatabaseUrl::parse("sqlite://data/m.sqlite3").expect("valid");
        assert_eq!(sqlite.backend(), Backend::Sqlite);
        assert_eq!(sqlite.as_str(), "data/m.sqlite3");
        assert_eq!(DatabaseUrl::parse(" "), Err(DatabaseUrlError::Empty));
        assert_eq!(
            DatabaseUrl::parse(":memory:"),
            Err(DatabaseUrlError::InMemorySqlite)
        );
        assert_eq!(
            DatabaseUrl::parse("postgress://h/db"),
            Err(DatabaseUrlError::UnsupportedScheme("postgress".into()))
        );
    }

    #[test]
    fn adds_libpq_timeouts_only_when_absent() {
        let config = PoolConfig::default();
        let libpq = |url: &str| {
            let Location::Postgres(url) = DatabaseUrl::parse(url).expect("valid").0 else {
                panic!("a postgres url");
            };
            libpq_url(&url, &config).to_string()
        };
        assert_eq!(
            libpq("postgres://h/db"),
            "postgres://h/db?connect_timeout=30&tcp_user_timeout=5000"
        );
        assert_eq!(
            libpq("postgres://h/db?connect_timeout=3"),
            "postgres://h/db?connect_timeout=3&tcp_user_timeout=5000"
        );
        // A parameter whose name merely ends like one of ours is not taken for it.
        assert_eq!(
            libpq("postgres://h/db?xconnect_timeout=3&sslmode=disable"),
            "postgres://h/db?xconnect_timeout=3&sslmode=disable&connect_timeout=30&tcp_user_timeout=5000"
        );
    }

    fn redacted(url: &str) -> String {
        DatabaseUrl::parse(url).expect("valid").redacted()
    }

    #[test]
    fn redaction_hides_a_password_that_contains_an_at_sign() {
        // The last `@` ends the user information, as in every URL parser that follows the
        // URL standard; splitting at the first one would show `pa55` as part of the host.
        let url = DatabaseUrl::parse("postgres://app:s3cr3t@pa55@host/db").expect("valid");
        assert_eq!(url.redacted(), "postgres://app:***@host/db");
        assert_eq!(
            format!("{url:?}"),
            "DatabaseUrl(postgres://app:***@host/db)"
        );
    }

    #[test]
    fn redaction_hides_query_parameter_passwords() {
        assert_eq!(
            redacted("postgres://app@host/db?password=s3cr3t&sslmode=disable"),
            "postgres://app@host/db?password=***&sslmode=disable"
        );
        assert_eq!(
            redacted("postgresql://host/db?sslpassword=k3y&PASSWORD=s3cr3t"),
            "postgresql://host/db?sslpassword=***&PASSWORD=***"
        );
    }

    #[test]
    fn redaction_hides_percent_encoded_passwords() {
        assert_eq!(
            redacted("postgres://app:p%40ss%3Aw%2Frd@host:5432/db"),
            "postgres://app:***@host:5432/db"
        );
        assert_eq!(
            redacted("postgres://app@host/db?password=p%26ss%3Dw%20rd"),
            "postgres://app@host/db?password=***"
        );
    }

    #[test]
    fn redaction_keeps_what_is_not_a_password() {
        assert_eq!(
            redacted("postgres://app@host:5432/db"),
            "postgres://app@host:5432/db"
        );
        assert_eq!(redacted("postgres://host/db"), "postgres://host/db");
        // SQLite paths are shown unchanged, even where they look like user information.
        assert_eq!(redacted("data/m.sqlite3"), "data/m.sqlite3");
        assert_eq!(
            redacted("sqlite:///var/a:b@c.sqlite3"),
            "/var/a:b@c.sqlite3"
        );
    }

    #[test]
    fn connection_errors_lose_the_passwords() {
        let url =
            DatabaseUrl::parse("postgres://app:s3cr%40t@host/db?password=qp4ss").expect("valid");
        let scrubbed = url.scrub(diesel::ConnectionError::BadConnection(
            "invalid percent-encoded token: \"s3cr%40t\"; user s3cr@t; qp4ss".into(),
        ));
        assert_eq!(
            scrubbed.to_string(),
            "invalid percent-encoded token: \"***\"; user ***; ***"
        );
    }

    #[test]
    fn an_unparsable_postgres_url_is_refused_without_quoting_it() {
        let error = DatabaseUrl::parse("postgres://app:s3cr3t@h1:5432,h2:5432/db").unwrap_err();
        assert_eq!(
            error,
            DatabaseUrlError::Invalid("invalid port number".into())
        );
        assert!(!error.to_string().contains("s3cr3t"));
    }
}
