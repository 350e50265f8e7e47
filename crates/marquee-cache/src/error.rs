//! The crate's errors: [`ConfigError`] for settings out of range, [`BuildError`] for a cache
//! or group that cannot start, and [`CacheError`] for a read that cannot be answered.

use std::sync::Arc;

/// A setting that is out of range; `field` names it as it is spelled in the configuration
/// (`lease_ttl`, `breaker.open_for`, `base_ttl`, `url`, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ConfigError {
    /// The setting, as spelled in the configuration.
    pub field: &'static str,
    /// What is wrong with its value.
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

/// Why a [`Cache`](crate::Cache) or a [`CacheGroup`](crate::CacheGroup) could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A setting is out of range.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The cache needs a background task (the named one) and was built outside a tokio
    /// runtime. Build it inside one (in `#[tokio::main]`, or within `Runtime::enter`), or
    /// turn the task off (`refresh.enabled = false`; `l1_ttl = 0` for the invalidation
    /// listener).
    #[error(
        "the cache's {0} runs on tokio, and no tokio runtime is running here: build the \
         cache inside one, or turn the {0} off"
    )]
    NoRuntime(&'static str),
}

/// Why a read could not be answered.
///
/// The loader's error is shared by every read that waited for the same load, so it comes
/// in an [`Arc`]: the error type needs neither `Clone` nor any other bound beyond
/// [`std::error::Error`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError<E> {
    /// The loader failed and no stale value was at hand.
    #[error(transparent)]
    Load(Arc<E>),
    /// The load ended without an answer (the loader panicked).
    #[error("the load for this key stopped without an answer")]
    LoadAborted,
}

impl<E> Clone for CacheError<E> {
    fn clone(&self) -> Self {
        match self {
            Self::Load(error) => Self::Load(error.clone()),
            Self::LoadAborted => Self::LoadAborted,
        }
    }
}
