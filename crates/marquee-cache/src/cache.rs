//! [`Cache`]: the engine its key groups share (the tiers, the breaker, the fallback bound),
//! and [`GroupBuilder`], which makes a typed [`CacheGroup`] of it.

use std::future::Future;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::breaker::{BreakerState, CircuitBreaker, OnChange};
use crate::codec::{Codec, Json};
use crate::config::CacheConfig;
use crate::error::{BuildError, ConfigError};
use crate::group::CacheGroup;
use crate::local::LocalTier;
use crate::metrics::Names;
use crate::policy::CachePolicy;
use crate::remote::RedisLink;
use crate::shared::Shared;

/// The cache engine: the in-process tier, Redis if there is one, the circuit breaker in
/// front of it and the fallback bound. Its key groups ([`Cache::group`]) share all of
/// these. Cheap to clone.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use marquee_cache::{Cache, CacheConfig};
///
/// let cache = Cache::local(CacheConfig::default())?;
/// let squares = cache
///     .group::<u64, u64>("squares")
///     .build(|n: u64| async move { Ok::<_, std::io::Error>(Some(n * n)) })?;
///
/// assert_eq!(squares.get(&12).await?, Some(144));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Cache {
    pub(crate) shared: Arc<Shared>,
}

impl Cache {
    /// An in-process cache: for a single instance, and for tests.
    ///
    /// # Errors
    ///
    /// [`BuildError::Config`] for a setting out of range.
    pub fn local(config: CacheConfig) -> Result<Self, BuildError> {
        Self::build(config, None)
    }

    /// A cache on Redis, with an in-process L1 in front when `l1_ttl` is not zero. With an
    /// L1, it starts a task that applies other instances' invalidations to this one's L1.
    ///
    /// # Errors
    ///
    /// [`BuildError::Config`] for a setting out of range, and [`BuildError::NoRuntime`]
    /// when built outside a tokio runtime with an L1 (whose listener needs one).
    #[cfg(feature = "redis")]
    pub fn redis(config: CacheConfig, redis: RedisLink) -> Result<Self, BuildError> {
        Self::build(config, Some(redis))
    }

    fn build(config: CacheConfig, redis: Option<RedisLink>) -> Result<Self, BuildError> {
        config.validate()?;
        let local = LocalTier::new(config.local_capacity);
        let channel = format!("{}:invalidate", config.namespace);
        let listener = listen(&config, redis.as_ref(), &channel, &local)?;
        let names = Names::describe(&config.metrics_prefix);
        let gauge = names.breaker(&config.name);
        gauge.set(BreakerState::Closed);
        let on_change = {
            let local = local.clone();
            move |state| {
                gauge.set(state);
                // Back on Redis: drop what this instance cached on its own during the outage
                // (invalidations published meanwhile could not reach it), and read the shared
                // copies again.
                if state == BreakerState::Closed {
                    local.clear();
                }
            }
        };
        Ok(Self {
            shared: Arc::new(Shared {
                breaker: CircuitBreaker::new(config.breaker, OnChange(Box::new(on_change))),
                fallback: Semaphore::new(config.fallback_concurrency),
                local,
                redis,
                channel,
                names,
                listener,
                config,
            }),
        })
    }

    /// Starts describing a key group called `name`: its keys are `K`, its values `V`.
    /// Keys live under `{namespace}:{name}:{{key}}`, the key written with its `Display` inside
    /// a hash tag ([`CacheGroup::full_key`]), and
    /// `name` is the `group` label of the group's metrics. Give each group of a cache its
    /// own name.
    pub fn group<K, V>(&self, name: &'static str) -> GroupBuilder<'_, K, V> {
        GroupBuilder {
            cache: self,
            name,
            policy: CachePolicy::default(),
            codec: Json,
            types: PhantomData,
        }
    }

    /// The state of the breaker in front of Redis (always closed without Redis).
    pub fn breaker_state(&self) -> BreakerState {
        self.shared.breaker.state()
    }

    /// Whether this cache is on Redis.
    pub fn uses_redis(&self) -> bool {
        self.shared.redis.is_some()
    }

    /// How many entries the in-process tier holds now (the whole cache without Redis, the
    /// L1 with it).
    pub fn local_entry_count(&self) -> u64 {
        self.shared.local.entry_count()
    }
}

/// The invalidation listener of a cache on Redis with an L1 (none without the `redis`
/// feature, where `redis` is always `None`).
fn listen(
    config: &CacheConfig,
    redis: Option<&RedisLink>,
    channel: &str,
    local: &LocalTier,
) -> Result<Option<tokio::task::JoinHandle<()>>, BuildError> {
    let Some(redis) = redis.filter(|_| !config.l1_ttl.is_zero()) else {
        return Ok(None);
    };
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|_| BuildError::NoRuntime("invalidation listener"))?;
    Ok(Some(runtime.spawn(
        crate::remote::listen_for_invalidations(redis, channel.to_owned(), local.clone()),
    )))
}

/// A key group being described: its policy and codec, then its loader
/// ([`GroupBuilder::build`]).
#[must_use = "a group is made by `build`"]
pub struct GroupBuilder<'a, K, V, C = Json> {
    cache: &'a Cache,
    name: &'static str,
    policy: CachePolicy,
    codec: C,
    types: PhantomData<fn(K) -> V>,
}

impl<K, V, C> std::fmt::Debug for GroupBuilder<'_, K, V, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupBuilder")
            .field("name", &self.name)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl<'a, K, V, C> GroupBuilder<'a, K, V, C> {
    /// How the group's entries live; [`CachePolicy::default`] if not set.
    pub fn policy(self, policy: CachePolicy) -> Self {
        Self { policy, ..self }
    }

    /// How values are stored in Redis; [`Json`] if not set.
    pub fn codec<D: Codec<V>>(self, codec: D) -> GroupBuilder<'a, K, V, D> {
        GroupBuilder {
            cache: self.cache,
            name: self.name,
            policy: self.policy,
            codec,
            types: PhantomData,
        }
    }

    /// The group, loading a missing key with `loader`: `Ok(Some(value))`, `Ok(None)` when
    /// the key does not exist (remembered for the policy's `negative_ttl`), or the source's
    /// error, of any type. The loader gets the key by value. With the refresher enabled,
    /// it starts the group's refresher, which stops when the last handle on the group is
    /// dropped.
    ///
    /// # Errors
    ///
    /// [`BuildError::Config`] for a policy out of range or a group name with a brace, and
    /// [`BuildError::NoRuntime`] when
    /// built outside a tokio runtime with the refresher enabled.
    pub fn build<E, F, Fut>(self, loader: F) -> Result<CacheGroup<K, V, E>, BuildError>
    where
        K: Clone + Eq + Hash + std::fmt::Display + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
        C: Codec<V>,
        E: std::error::Error + Send + Sync + 'static,
        F: Fn(K) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Option<V>, E>> + Send + 'static,
    {
        self.policy.validate()?;
        // Each key's braces are its Redis Cluster hash tag, and Redis takes the first pair.
        if self.name.contains(['{', '}']) {
            return Err(ConfigError::new("group", "a group's name must contain no braces").into());
        }
        CacheGroup::start(
            self.cache.shared.clone(),
            self.name,
            self.policy,
            Arc::new(self.codec),
            Arc::new(move |key| Box::pin(loader(key))),
        )
    }
}
