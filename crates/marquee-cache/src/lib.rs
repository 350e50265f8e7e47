#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod breaker;
mod bump;
mod cache;
mod codec;
mod config;
mod entry;
mod error;
mod flight;
mod group;
mod local;
mod metrics;
mod policy;
#[cfg(feature = "redis")]
mod remote;
#[cfg(not(feature = "redis"))]
#[path = "remote_off.rs"]
mod remote;
mod shared;

pub use breaker::{BreakerConfig, BreakerState};
pub use cache::{Cache, GroupBuilder};
pub use codec::{Codec, CodecError, Json, Raw};
pub use config::{CacheConfig, RefreshConfig};
pub use error::{BuildError, CacheError, ConfigError};
pub use group::{CacheGroup, CacheKey, CacheValue};
pub use policy::CachePolicy;
#[cfg(feature = "redis")]
pub use remote::{RedisConfig, RedisError, RedisLink, RedisMode};

/// The target of the crate's timing events: one `TRACE` event per Redis command, with the
/// fields `phase = "redis"` and `micros` (the time it took). An application's
/// slow-request log can sum them per request; nothing else is emitted under this target.
///
/// ```
/// assert_eq!(marquee_cache::TIMING_TARGET, "marquee_cache::timing");
/// ```
pub const TIMING_TARGET: &str = "marquee_cache::timing";
