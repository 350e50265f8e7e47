//! [`Shared`]: what the groups of one cache share, the engine's state.

use tokio::sync::Semaphore;

use crate::breaker::CircuitBreaker;
use crate::config::CacheConfig;
use crate::local::LocalTier;
use crate::metrics::Names;
use crate::remote::RedisLink;

/// The engine's state: its settings, the tiers, the breaker in front of Redis and the
/// fallback bound.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: CacheConfig,
    pub local: LocalTier,
    pub redis: Option<RedisLink>,
    pub breaker: CircuitBreaker,
    pub fallback: Semaphore,
    /// The channel on which instances announce invalidations.
    pub channel: String,
    pub names: Names,
    pub listener: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(listener) = &self.listener {
            listener.abort();
        }
    }
}
