//! A counting source, and caches with their own key namespace per test.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use marquee_cache::{
    Cache, CacheConfig, CacheError, CacheGroup, CachePolicy, Raw, RedisConfig, RedisLink,
};
// Test modules name them `crate::support::...`.
pub use marquee_testkit::{RedisCluster, Tier, redis_url};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the source failed")]
pub struct SourceDown;

/// The groups of these tests: string keys, the values as bytes.
pub type Group = CacheGroup<String, Bytes, SourceDown>;

/// What the tests' loaders return.
pub type Load = Pin<Box<dyn Future<Output = Result<Option<Bytes>, SourceDown>> + Send>>;

/// A key of a test group.
pub fn k(key: &str) -> String {
    key.to_owned()
}

/// A read of `key` in a task of its own.
pub fn spawn_get(
    group: &Group,
    key: impl Into<String>,
) -> tokio::task::JoinHandle<Result<Option<Bytes>, CacheError<SourceDown>>> {
    let (group, key) = (group.clone(), key.into());
    tokio::spawn(async move { group.get(&key).await })
}

/// Asserts that a read failed with the source's own error (and no stale value was at hand).
pub fn assert_source_down(read: Result<Option<Bytes>, CacheError<SourceDown>>) {
    assert!(
        matches!(&read, Err(CacheError::Load(error)) if **error == SourceDown),
        "{read:?}"
    );
}

/// The group `g` of `cache`, loading with `loader`.
pub fn build_group(
    cache: &Cache,
    policy: CachePolicy,
    loader: impl Fn(String) -> Load + Send + Sync + 'static,
) -> Group {
    cache
        .group::<String, Bytes>("g")
        .policy(policy)
        .codec(Raw)
        .build(loader)
        .unwrap()
}

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

    pub fn loader(self: &Arc<Self>) -> impl Fn(String) -> Load + Send + Sync + 'static {
        let source = self.clone();
        move |key: String| -> Load {
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
        }
    }
}

/// A namespace no other test (or earlier run) uses.
pub fn namespace() -> String {
    marquee_testkit::unique_namespace("marquee:v1:test")
}

pub fn config(namespace: &str) -> CacheConfig {
    let mut config = CacheConfig::default();
    config.namespace = namespace.to_owned();
    config.refresh.enabled = false;
    config
}

pub fn link(url: &str) -> RedisLink {
    let mut config = RedisConfig::new(url);
    // Generous: on a loaded machine a slow reply would count as a Redis failure and fail
    // open into loads the tests do not expect. The outage test sets its own bounds.
    config.response_timeout = Duration::from_secs(2);
    RedisLink::open(config).unwrap()
}

/// A link to `tier`'s Redis: the one server, or the test binary's shared cluster.
///
/// # Panics
/// For [`Tier::Local`], which has no Redis; and, like [`redis_url`] and
/// [`RedisCluster::shared`], when the tier's variable is unset.
pub fn link_for(tier: Tier) -> RedisLink {
    match tier {
        Tier::Local => panic!("the local tier has no Redis"),
        Tier::Redis => link(&redis_url()),
        Tier::Cluster => {
            let mut config = RedisConfig::cluster(RedisCluster::shared().url());
            config.response_timeout = Duration::from_secs(2);
            RedisLink::open(config).unwrap()
        }
    }
}

/// A cache of `tier` with one group `g` on `source`.
pub fn group(
    tier: Tier,
    config: CacheConfig,
    policy: CachePolicy,
    source: &Arc<Source>,
) -> (Cache, CacheGroup<String, Bytes, SourceDown>) {
    let cache = match tier {
        Tier::Local => Cache::local(config).unwrap(),
        Tier::Redis | Tier::Cluster => Cache::redis(config, link_for(tier)).unwrap(),
    };
    let group = build_group(&cache, policy, source.loader());
    (cache, group)
}
