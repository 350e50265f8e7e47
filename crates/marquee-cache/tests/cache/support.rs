//! A counting source, and caches with their own key namespace per test.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use marquee_cache::{Cache, CacheConfig, CacheGroup, CachePolicy, Loader, RedisConfig, RedisLink};
// Test modules name them `crate::support::...`.
pub use marquee_testkit::{Tier, redis_url};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the source failed")]
pub struct SourceDown;

/// A source whose loads are counted, with a delay, a switch to fail, and a version that
/// changes the values it returns. Keys starting with `missing` do not exist.
#[derive(Debug, Default)]
pub struct Source {
    pub loads: AtomicUsize,
    in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
    pub delay_ms: AtomicU64,
    pub failing: AtomicBool,
    pub version: AtomicU64,
}

impl Source {
    pub fn with_delay(delay: Duration) -> Arc<Self> {
        let source = Self::default();
        source
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
        Arc::new(source)
    }

    pub fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }

    pub fn loader(self: &Arc<Self>) -> Loader<SourceDown> {
        let source = self.clone();
        Arc::new(move |key: String| {
            let source = source.clone();
            Box::pin(async move {
                source.loads.fetch_add(1, Ordering::SeqCst);
                let now = source.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                source.max_in_flight.fetch_max(now, Ordering::SeqCst);
                let delay = source.delay_ms.load(Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(delay)).await;
                source.in_flight.fetch_sub(1, Ordering::SeqCst);
                if source.failing.load(Ordering::SeqCst) {
                    return Err(SourceDown);
                }
                if key.starts_with("missing") {
                    return Ok(None);
                }
                let version = source.version.load(Ordering::SeqCst);
                Ok(Some(Bytes::from(format!(
                    "{{\"key\":\"{key}\",\"v\":{version}}}"
                ))))
            })
        })
    }
}

/// A namespace no other test (or earlier run) uses.
pub fn namespace() -> String {
    marquee_testkit::unique_namespace("marquee:v1:test")
}

pub fn config(namespace: &str) -> CacheConfig {
    CacheConfig {
        namespace: namespace.to_owned(),
        refresh: marquee_cache::RefreshConfig {
            enabled: false,
            ..Default::default()
        },
        ..CacheConfig::default()
    }
}

pub fn link(url: &str) -> RedisLink {
    RedisLink::open(RedisConfig {
        // Generous: on a loaded machine a slow reply would count as a Redis failure and fail
        // open into loads the tests do not expect. The outage test sets its own bounds.
        response_timeout: Duration::from_secs(2),
        ..RedisConfig::new(url)
    })
    .unwrap()
}

/// A cache of `tier` with one group `g` on `source`.
pub fn group(
    tier: Tier,
    config: CacheConfig,
    policy: CachePolicy,
    source: &Arc<Source>,
) -> (Cache, CacheGroup<SourceDown>) {
    let cache = match tier {
        Tier::Local => Cache::local(config).unwrap(),
        Tier::Redis => Cache::redis(config, link(&redis_url())).unwrap(),
    };
    let group = cache.group("g", policy, source.loader()).unwrap();
    (cache, group)
}
