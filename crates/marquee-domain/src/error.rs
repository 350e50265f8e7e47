//! Why a port could not answer: the failures every repository shares, whatever stores it.
//!
//! The refusals of one use case live with it ([`crate::BookingError`], [`crate::QueueError`]);
//! each wraps a [`RepositoryError`] for the failures that decided nothing.

use std::time::Duration;

/// Why a repository could not answer. No variant is the caller's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepositoryError {
    /// The database was too busy to answer in time; `cause` says what the request waited
    /// for. Retrying shortly is reasonable: contention is transient by nature.
    #[error("the database is busy: {cause}")]
    Busy { cause: BusyCause },
    /// The database cannot be reached or refused the connection.
    #[error("the database is unavailable: {reason}")]
    Unavailable { reason: String },
    /// A query failed for a reason a retry will not fix.
    #[error("database query failed: {reason}")]
    Query { reason: String },
}

/// What a request waited for until it gave up on a busy database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BusyCause {
    /// Every connection of the pool stayed in use for this long.
    #[error("no database connection became free within {waited:?}")]
    ConnectionWait { waited: Duration },
    /// A lock held by other work (another transaction, process or instance) was not released
    /// within the database's lock timeout.
    #[error("a lock held by other work was not released in time")]
    LockWait,
    /// The database cancelled the statement: it ran past the statement timeout, or an
    /// operator cancelled it.
    #[error("the statement was cancelled after running too long")]
    StatementCancelled,
}
