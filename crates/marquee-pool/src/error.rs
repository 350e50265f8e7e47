//! [`PoolError`]: why the pool could not run a unit of work.
//!
//! Callers do not return it as it is: [`Pool::run`](crate::Pool::run) is generic over the
//! caller's error type, which converts from it (`E: From<PoolError>`). The caller's own
//! refusals then travel in the caller's type, and the pool's failures become one variant of it.

use std::time::Duration;

use crate::config::PoolConfigError;

/// Why the pool could not build, or could not run a unit of work.
///
/// [`Busy`](Self::Busy) and [`Unavailable`](Self::Unavailable) are the two a service answers
/// with 503 and `Retry-After`: the first says the pool was saturated, the second that the
/// database could not be reached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// The [`PoolConfig`](crate::PoolConfig) is out of range; returned by
    /// [`Pool::build`](crate::Pool::build) before any connection is opened.
    #[error("invalid pool setting {0}")]
    Config(#[from] PoolConfigError),
    /// Every connection stayed in use for the whole `connection_timeout`, and no attempt to
    /// open one failed meanwhile: the pool is saturated, the database is not down.
    #[error("no database connection became free within {waited:?}")]
    Busy {
        /// How long the caller waited.
        waited: Duration,
    },
    /// No connection could be had because opening one failed: at build time, or while the
    /// caller waited. `reason` is the last such failure, as the [`Connector`](crate::Connector)
    /// reported it.
    #[error("the database is unavailable: {reason}")]
    Unavailable {
        /// The connector's error, as text.
        reason: String,
    },
    /// The unit of work panicked. The panic is caught so that it does not take the caller
    /// down with it; the connection it held is discarded.
    #[error("database task failed: {message}")]
    Panicked {
        /// The runtime's description of the panic.
        message: String,
    },
}
