//! The persistence crate's one error type, and how it maps onto the domain's.

use std::time::Duration;

use marquee_domain::RepositoryError;

#[derive(Debug, thiserror::Error)]
pub enum PersistenceError {
    /// The pool config is out of range.
    #[error("invalid pool setting {0}")]
    Config(#[from] crate::config::PoolConfigError),
    /// The database URL is unusable.
    #[error("invalid database url: {0}")]
    Url(#[from] crate::connection::DatabaseUrlError),
    /// Every connection stayed busy for the whole connection timeout.
    #[error("no database connection became free within {waited:?}")]
    Busy { waited: Duration },
    /// No connection could be opened.
    #[error("the database is unavailable: {reason}")]
    Unavailable { reason: String },
    #[error("database query failed: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("invalid seed plan: {0}")]
    Seed(String),
    /// A booking operation refused the request (the seat is taken, the balance short...).
    /// Carried through the pool's error type; unwrapped by the booking repository.
    #[error(transparent)]
    Refused(Box<marquee_domain::BookingError>),
    /// A stored value breaks an invariant the schema should have enforced.
    #[error("corrupt row: {0}")]
    Corrupt(String),
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
}

impl From<PersistenceError> for RepositoryError {
    fn from(error: PersistenceError) -> Self {
        if error.is_connection_lost() {
            return RepositoryError::Unavailable {
                reason: error.to_string(),
            };
        }
        match error {
            PersistenceError::Busy { waited } => RepositoryError::Busy { waited },
            PersistenceError::Unavailable { reason } => RepositoryError::Unavailable { reason },
            other => RepositoryError::Query {
                reason: other.to_string(),
            },
        }
    }
}
