//! [`Abort`]: how a repository operation leaves early, shared by the booking and queue
//! repositories, each with its own refusal type.

use marquee_pool::PoolError;

/// An operation's way out: a refusal `R` to report, a database error, or the pool's failure
/// to run it. Inside a transaction, either of the first two rolls back.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Abort<R: std::error::Error + 'static> {
    #[error("refused: {0}")]
    Refused(R),
    #[error("database query failed: {0}")]
    Database(#[source] diesel::result::Error),
    #[error(transparent)]
    Pool(#[from] PoolError),
}

impl<R: std::error::Error + 'static> From<diesel::result::Error> for Abort<R> {
    fn from(error: diesel::result::Error) -> Self {
        Self::Database(error)
    }
}

/// Stored data that breaks an invariant: a value that cannot be read back, or rows that the
/// locks should have kept consistent and did not. A failed query (500), not the caller's
/// fault; the one way the repositories report it. A status column's `FromSql` refuses a text
/// it does not know with the same error (see [`crate::status`]).
pub(crate) fn corrupt_row(reason: String) -> diesel::result::Error {
    diesel::result::Error::DeserializationError(reason.into())
}
