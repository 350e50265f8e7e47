//! The persistence crate's one error type, and how it maps onto the domain's.

use marquee_domain::{BusyCause, RepositoryError};
use marquee_pool::{PoolConfigError, PoolError};

/// Why a storage operation failed. The repositories return the domain's errors instead
/// (`BookingError`, `QueueError`, `RepositoryError`), into which this converts.
#[derive(Debug, thiserror::Error)]
pub enum PersistenceError {
    /// A `SessionTimeouts` bound is out of range.
    #[error("invalid pool setting {0}")]
    Config(#[from] PoolConfigError),
    /// The database URL is unusable.
    #[error("invalid database url: {0}")]
    Url(#[from] crate::connection::DatabaseUrlError),
    /// The pool could not run the work: `Busy` (every connection stayed in use for the
    /// whole `connection_timeout`), `Unavailable` (no connection could be opened), an
    /// invalid `PoolConfig`, or a panic inside the work.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// A query failed, or read a row that breaks an invariant (`DeserializationError`).
    #[error("database query failed: {0}")]
    Query(#[from] diesel::result::Error),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migration(String),
    /// A read replica that cannot be used as configured (not PostgreSQL), or a lag check
    /// that cannot be made.
    #[error("read replica: {0}")]
    Replica(String),
    /// A seed plan with a count of 0.
    #[error("invalid seed plan: {0}")]
    Seed(String),
}

impl PersistenceError {
    /// Whether the query failed because the link to the database is gone (the server
    /// restarted, the network dropped): the connection must be discarded, and the failure is
    /// an outage, not a bug.
    pub fn is_connection_lost(&self) -> bool {
        matches!(
            self,
            Self::Query(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::ClosedConnection,
                _
            ))
        )
    }

    /// What the work waited for, when it failed because the database was busy with other
    /// work: no free connection, a lock held elsewhere past the lock timeout, or a statement
    /// cancelled for running too long. `None` for every other failure.
    pub fn busy_cause(&self) -> Option<BusyCause> {
        match self {
            Self::Pool(PoolError::Busy { waited }) => {
                Some(BusyCause::ConnectionWait { waited: *waited })
            }
            Self::Query(error) => contention(error),
            _ => None,
        }
    }
}

/// Recognises the database's own "gave up waiting" errors:
///
/// - PostgreSQL: SQLSTATE 55P03 `lock_not_available` (`lock_timeout` ran out, or `NOWAIT`)
///   and 57014 `query_canceled` (`statement_timeout` ran out, or `pg_cancel_backend`);
/// - SQLite: `SQLITE_BUSY` (another connection or process holds the write lock past
///   `busy_timeout`) and `SQLITE_LOCKED` (a table or schema lock inside this process);
/// - MariaDB/MySQL: 1205 (`innodb_lock_wait_timeout` ran out), 1213 (a deadlock: InnoDB rolled
///   the transaction back, which diesel reports as a serialization failure), and 1969, 3024
///   and 1317 (`max_statement_time`, `max_execution_time`, `KILL QUERY`).
///
/// Neither code is reachable through diesel 2.3: its PostgreSQL error keeps the SQLSTATE to
/// itself (it maps a fixed list of codes onto `DatabaseErrorKind` and the rest onto
/// `Unknown`, and `DatabaseErrorInformation` has no accessor for the code), and its SQLite
/// error carries only `sqlite3_errmsg`'s text, and its MariaDB error maps a few numbers and
/// keeps the rest to itself. So the primary message is matched. SQLite's messages are fixed
/// English strings (`sqlite3ErrStr`). PostgreSQL's follow the server's `lc_messages`, and
/// MariaDB's its `lc_messages`; a server that reports in another language gets 500
/// `internal` for these instead of 503 (the persistence tests pin the English text against
/// real servers).
fn contention(error: &diesel::result::Error) -> Option<BusyCause> {
    use diesel::result::{DatabaseErrorKind, Error};
    const LOCK_WAITS: [&str; 6] = [
        // PostgreSQL 55P03.
        "canceling statement due to lock timeout",
        "could not obtain lock on",
        // MariaDB/MySQL 1205.
        "Lock wait timeout exceeded",
        // SQLite SQLITE_BUSY and its extended codes.
        "database is locked",
        // SQLite SQLITE_LOCKED and SQLITE_LOCKED_SHAREDCACHE.
        "database table is locked",
        "database schema is locked",
    ];
    // PostgreSQL 57014.
    const CANCELLED: [&str; 3] = [
        "canceling statement due to statement timeout",
        "canceling statement due to user request",
        // MariaDB 1969, MySQL 3024, and 1317 on both: each starts so.
        "Query execution was interrupted",
    ];
    match error {
        Error::DatabaseError(DatabaseErrorKind::Unknown, info) => {
            let message = info.message();
            if LOCK_WAITS.iter().any(|known| message.starts_with(known)) {
                Some(BusyCause::LockWait)
            } else if CANCELLED.iter().any(|known| message.starts_with(known)) {
                Some(BusyCause::StatementCancelled)
            } else {
                None
            }
        }
        // A deadlock's victim (InnoDB rolled it back; PostgreSQL's 40001 too): to retry.
        Error::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => {
            Some(BusyCause::LockWait)
        }
        // A COMMIT can meet SQLITE_BUSY too (a deferred transaction upgrading its lock).
        Error::RollbackErrorOnCommit { commit_error, .. } => contention(commit_error),
        _ => None,
    }
}

impl From<PersistenceError> for RepositoryError {
    fn from(error: PersistenceError) -> Self {
        if error.is_connection_lost() {
            return RepositoryError::Unavailable {
                reason: error.to_string(),
            };
        }
        if let Some(cause) = error.busy_cause() {
            return RepositoryError::Busy { cause };
        }
        match error {
            PersistenceError::Pool(PoolError::Unavailable { reason }) => {
                RepositoryError::Unavailable { reason }
            }
            other => RepositoryError::Query {
                reason: message_with_causes(&other),
            },
        }
    }
}

/// `error`'s message, followed by each of its causes' that it does not already include.
/// diesel names the cause of a failed read only as the error's source: a stored status no
/// variant names shows as "Error deserializing field 'status'", caused by
/// "unknown seat status \"SOLDOUT\"", and the reason must say which value it was.
fn message_with_causes(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(current) = cause {
        let text = current.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = current.source();
    }
    message
}
