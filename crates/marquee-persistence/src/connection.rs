//! Which database a URL names, and the one connection type that speaks to either.

use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::r2d2::R2D2Connection;
use diesel::{Connection, PgConnection, SqliteConnection};
use rand::Rng;

use crate::config::PoolConfig;

/// A connection to PostgreSQL or SQLite.
///
/// Queries are written once against this type (one `schema.rs`); diesel checks at compile
/// time that each is valid on both backends. Where the dialects differ, code matches on the
/// variant, and those places are listed in ARCHITECTURE.md.
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Postgres(PgConnection),
    Sqlite(SqliteConnection),
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
/// an immediate one waits its turn (busy_timeout) instead. On PostgreSQL row locks and the
/// statements' conditions do the arbitration, and an ordinary transaction is right.
macro_rules! write_transaction {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::connection::DbConnection::Postgres($c) => {
                diesel::Connection::transaction($c, |$c| $body)
            }
            $crate::connection::DbConnection::Sqlite($c) => $c.immediate_transaction(|$c| $body),
        }
    };
}
pub(crate) use write_transaction;

impl fmt::Debug for DbConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Postgres(_) => "DbConnection::Postgres",
            Self::Sqlite(_) => "DbConnection::Sqlite",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Sqlite => "sqlite",
        }
    }
}

/// A database location: a `postgres://` (or `postgresql://`) URL, or a SQLite file path
/// (optionally written `sqlite://path`).
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    backend: Backend,
    /// For PostgreSQL the URL as given; for SQLite the file path.
    target: String,
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
        "has the unsupported scheme {0:?}; use postgres://, postgresql://, sqlite:// or a file path"
    )]
    UnsupportedScheme(String),
}

impl DatabaseUrl {
    pub fn parse(url: &str) -> Result<Self, DatabaseUrlError> {
        let url = url.trim();
        if url.is_empty() {
            return Err(DatabaseUrlError::Empty);
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self {
                backend: Backend::Postgres,
                target: url.to_owned(),
            });
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
        Ok(Self {
            backend: Backend::Sqlite,
            target: path.to_owned(),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The URL or path as configured. May contain a password: never log it; log
    /// [`DatabaseUrl::redacted`] instead.
    pub fn as_str(&self) -> &str {
        &self.target
    }

    /// The location with any password replaced by `***`, for logs and errors.
    pub fn redacted(&self) -> String {
        if self.backend == Backend::Sqlite {
            return self.target.clone();
        }
        let Some((scheme, rest)) = self.target.split_once("://") else {
            return self.target.clone();
        };
        match rest.split_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
                None => self.target.clone(),
            },
            None => self.target.clone(),
        }
    }

    /// Opens one connection, applying the per-connection settings each backend needs.
    pub(crate) fn establish(
        &self,
        config: &PoolConfig,
    ) -> Result<DbConnection, diesel::ConnectionError> {
        match self.backend {
            Backend::Postgres => {
                PgConnection::establish(&postgres_url_with_timeouts(&self.target, config))
                    .map(DbConnection::Postgres)
            }
            Backend::Sqlite => {
                if let Some(parent) = Path::new(&self.target).parent()
                    && !parent.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(parent).map_err(|error| {
                        diesel::ConnectionError::BadConnection(format!(
                            "cannot create the folder {}: {error}",
                            parent.display()
                        ))
                    })?;
                }
                let mut conn = SqliteConnection::establish(&self.target)?;
                // busy_timeout first: it makes this connection wait for a lock instead of
                // failing at once with SQLITE_BUSY, and switching to WAL takes one while the
                // pool opens its other connections. WAL lets readers run beside the one
                // writer. Foreign keys are off by default in SQLite; the schema relies on them.
                conn.batch_execute(
                    "PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; \
                     PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
                )
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

/// Adds libpq time bounds the URL does not set itself.
///
/// Without `connect_timeout` a black-holed host keeps a connect attempt for the kernel's
/// SYN timeout (minutes); without `tcp_user_timeout` a link that dies mid-query leaves the
/// query waiting for the kernel's retransmission timeout (about 15 minutes), holding a pool
/// connection all that time.
fn postgres_url_with_timeouts(url: &str, config: &PoolConfig) -> String {
    let mut url = url.to_owned();
    let mut add = |key: &str, value: u128| {
        if !url.contains(&format!("{key}=")) {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(&format!("{key}={value}"));
        }
    };
    // libpq takes whole seconds here, and treats anything below 2 as 2.
    add(
        "connect_timeout",
        config.connection_timeout.as_secs().max(2).into(),
    );
    add("tcp_user_timeout", config.validation_timeout.as_millis());
    url
}

/// A connection as the pool holds it: the connection, when it must retire, and when it was
/// last returned.
pub struct ManagedConnection {
    pub(crate) conn: DbConnection,
    retire_at: Option<Instant>,
    last_returned: Instant,
    /// Set when a query found the link dead. diesel's own `is_broken` only looks at the
    /// transaction state, so without this a dead connection would go back into the pool.
    pub(crate) lost: bool,
}

impl fmt::Debug for ManagedConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagedConnection")
            .field("conn", &self.conn)
            .field("retire_at", &self.retire_at)
            .finish()
    }
}

/// Opens connections for r2d2 and decides when one is no longer fit to hand out.
#[derive(Debug)]
pub(crate) struct ConnectionManager {
    pub(crate) url: DatabaseUrl,
    pub(crate) config: PoolConfig,
}

/// A connection that was used this recently is handed out without a ping. HikariCP does the
/// same (`aliveBypassWindowMs`): under load, pinging before every checkout would double the
/// round trips for nothing.
const ALIVE_BYPASS_WINDOW: Duration = Duration::from_millis(500);

impl ConnectionManager {
    fn retire_at(&self, now: Instant) -> Option<Instant> {
        let lifetime = self.config.max_lifetime;
        if lifetime.is_zero() {
            return None;
        }
        // HikariCP's variance: up to 2.5 % off each connection's lifetime, so that a pool
        // whose connections were opened together does not close them all in the same second.
        let spread = lifetime / 40;
        let jitter = rand::rng().random_range(Duration::ZERO..=spread);
        Some(now + lifetime - jitter)
    }
}

impl r2d2::ManageConnection for ConnectionManager {
    type Connection = ManagedConnection;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<ManagedConnection, Self::Error> {
        let started = Instant::now();
        let conn = self
            .url
            .establish(&self.config)
            .map_err(diesel::r2d2::Error::ConnectionError)?;
        let now = Instant::now();
        crate::metrics::created(&self.config.pool_name, now - started);
        Ok(ManagedConnection {
            conn,
            retire_at: self.retire_at(now),
            last_returned: now,
            lost: false,
        })
    }

    fn is_valid(&self, managed: &mut ManagedConnection) -> Result<(), Self::Error> {
        let now = Instant::now();
        if managed.retire_at.is_some_and(|at| now >= at) {
            return Err(diesel::r2d2::Error::QueryError(
                diesel::result::Error::BrokenTransactionManager,
            ));
        }
        if now.duration_since(managed.last_returned) < ALIVE_BYPASS_WINDOW {
            return Ok(());
        }
        managed.conn.ping().map_err(diesel::r2d2::Error::QueryError)
    }

    fn has_broken(&self, managed: &mut ManagedConnection) -> bool {
        let now = Instant::now();
        managed.last_returned = now;
        managed.lost || managed.conn.is_broken() || managed.retire_at.is_some_and(|at| now >= at)
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
        assert_eq!(
            postgres_url_with_timeouts("postgres://h/db", &config),
            "postgres://h/db?connect_timeout=30&tcp_user_timeout=5000"
        );
        assert_eq!(
            postgres_url_with_timeouts("postgres://h/db?connect_timeout=3", &config),
            "postgres://h/db?connect_timeout=3&tcp_user_timeout=5000"
        );
    }

    #[test]
    fn lifetimes_are_spread_over_two_and_a_half_percent() {
        let manager = ConnectionManager {
            url: DatabaseUrl::parse("unused.sqlite3").expect("valid"),
            config: PoolConfig::default(),
        };
        let now = Instant::now();
        let lifetime = manager.config.max_lifetime;
        let retirements: Vec<Duration> = (0..200)
            .map(|_| manager.retire_at(now).expect("lifetime set") - now)
            .collect();
        assert!(
            retirements
                .iter()
                .all(|d| *d <= lifetime && *d >= lifetime - lifetime / 40)
        );
        let distinct: std::collections::HashSet<_> = retirements.iter().collect();
        assert!(distinct.len() > 150, "jitter should make lifetimes differ");
    }
}
