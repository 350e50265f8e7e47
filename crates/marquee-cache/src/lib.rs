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

// At the root: the group and the cache that builds it are both in reach without making
// either module depend on the other.
#[cfg(test)]
mod tests {
    use super::{Cache, CacheConfig};

    #[test]
    fn a_read_carries_the_path_past_l1_boxed() {
        let mut config = CacheConfig::default();
        config.refresh.enabled = false;
        let cache = Cache::local(config).unwrap();
        let group = cache
            .group::<String, String>("g")
            .build(|_: String| async { Ok::<_, std::io::Error>(None) })
            .unwrap();
        let key = "k".to_owned();
        let read = size_of_val(&group.get(&key));
        let past_l1 = size_of_val(&group.get_past_l1(&key, String::new(), None, 0));
        // An in-process hit allocates its handler's future (actix boxes it): the Redis read,
        // the load and the stale fallback must not make that allocation as large as theirs.
        assert!(
            read * 4 <= past_l1,
            "a read's future is {read} bytes, the path past L1's {past_l1}"
        );
    }
}
