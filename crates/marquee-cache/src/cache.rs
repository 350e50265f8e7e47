//! [`Cache`] and [`CacheGroup`]: cache-aside with single-flight, leases, early refresh and
//! fail-open.
//!
//! A read goes: in-process tier, then Redis (if configured and its breaker is closed), then
//! the group's loader. Misses of one key share one load per process (single-flight) and,
//! with Redis, one load across processes (a lease taken with `SET NX PX`). Reads shortly
//! before expiry refresh the entry in the background (XFetch), and a refresher keeps the
//! hottest keys loaded. Redis failing or slow never fails a read: the breaker opens, and
//! reads go to the loader, at most `fallback_concurrency` at a time. A load that fails
//! while a stale entry is at hand serves the stale entry. docs/cache.md has the reasoning.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use rand::Rng;
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::breaker::{BreakerState, CircuitBreaker};
use crate::config::{CacheConfig, CacheConfigError};
use crate::entry::{Entry, millis, now_ms};
use crate::flight::{self, Flights, Role};
use crate::local::LocalTier;
use crate::metrics;
use crate::policy::{CachePolicy, CachePolicyError};
use crate::redis_link::RedisLink;

/// What a loader returns: the value, `None` if the key does not exist, or the source's
/// error.
pub type LoadFuture<E> = Pin<Box<dyn Future<Output = Result<Option<Bytes>, E>> + Send>>;

/// Computes the value of a key from the source (a database, usually).
pub type Loader<E> = Arc<dyn Fn(String) -> LoadFuture<E> + Send + Sync>;

/// Why a read could not be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheError<E: std::error::Error> {
    /// The loader failed and no stale value was at hand.
    #[error(transparent)]
    Load(E),
    /// The load task ended without an answer (it panicked).
    #[error("the load for this key stopped without an answer")]
    LoadAborted,
}

/// The cache engine: the tiers, the breaker and the budgets that its groups share.
#[derive(Clone, Debug)]
pub struct Cache {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    config: CacheConfig,
    local: LocalTier,
    redis: Option<RedisLink>,
    breaker: CircuitBreaker,
    fallback: Semaphore,
    channel: String,
    listener: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(listener) = &self.listener {
            listener.abort();
        }
    }
}

/// Which tier answered, for the hit metric.
const TIER_LOCAL: &str = "local";
const TIER_L1: &str = "l1";
const TIER_REDIS: &str = "redis";

impl Cache {
    /// An in-process cache: the embedded default, and a cache for a single instance.
    pub fn local(config: CacheConfig) -> Result<Self, CacheConfigError> {
        Self::build(config, None)
    }

    /// A cache on Redis, with an in-process L1 in front when `l1_ttl` is not zero. Call it
    /// inside a tokio runtime: it starts the task that applies other instances'
    /// invalidations to this one's L1.
    pub fn redis(config: CacheConfig, redis: RedisLink) -> Result<Self, CacheConfigError> {
        Self::build(config, Some(redis))
    }

    fn build(config: CacheConfig, redis: Option<RedisLink>) -> Result<Self, CacheConfigError> {
        config.validate()?;
        let local = LocalTier::new(config.local_capacity);
        let channel = format!("{}:invalidate", config.namespace);
        let listener = match (&redis, config.l1_ttl.is_zero()) {
            (Some(redis), false) => tokio::runtime::Handle::try_current().ok().map(|runtime| {
                runtime.spawn(listen_for_invalidations(
                    redis.clone(),
                    channel.clone(),
                    local.clone(),
                ))
            }),
            _ => None,
        };
        metrics::breaker(BreakerState::Closed);
        let on_change = {
            let local = local.clone();
            move |state| {
                metrics::breaker(state);
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
                breaker: CircuitBreaker::new(config.breaker, Box::new(on_change)),
                fallback: Semaphore::new(config.fallback_concurrency),
                local,
                redis,
                channel,
                listener,
                config,
            }),
        })
    }

    /// A key group: keys under `{namespace}:{name}:`, living by `policy`, loaded by
    /// `loader`. Starts the group's hot-key refresher when that is enabled (inside a tokio
    /// runtime); it stops when the last handle on the group is dropped.
    pub fn group<E>(
        &self,
        name: &'static str,
        policy: CachePolicy,
        loader: Loader<E>,
    ) -> Result<CacheGroup<E>, CachePolicyError>
    where
        E: std::error::Error + Clone + Send + Sync + 'static,
    {
        policy.validate()?;
        metrics::register_group(name, self.shared.redis.is_some());
        let inner = Arc::new(GroupInner {
            shared: self.shared.clone(),
            name,
            prefix: format!("{}:{name}:", self.shared.config.namespace),
            policy,
            loader,
            flights: Flights::new(),
            hot: HotKeys::default(),
        });
        let refresh = self.shared.config.refresh;
        if refresh.enabled
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(refresh_hot_keys(Arc::downgrade(&inner)));
        }
        Ok(CacheGroup { inner })
    }

    pub fn breaker_state(&self) -> BreakerState {
        self.shared.breaker.state()
    }

    pub fn uses_redis(&self) -> bool {
        self.shared.redis.is_some()
    }
}

/// One key group of a [`Cache`]. Cheap to clone.
pub struct CacheGroup<E: std::error::Error> {
    inner: Arc<GroupInner<E>>,
}

impl<E: std::error::Error> Clone for CacheGroup<E> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<E: std::error::Error> std::fmt::Debug for CacheGroup<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheGroup")
            .field("name", &self.inner.name)
            .field("policy", &self.inner.policy)
            .finish_non_exhaustive()
    }
}

struct GroupInner<E: std::error::Error> {
    shared: Arc<Shared>,
    name: &'static str,
    prefix: String,
    policy: CachePolicy,
    loader: Loader<E>,
    flights: Flights<Outcome<E>>,
    hot: HotKeys,
}

type Outcome<E> = Result<Entry, CacheError<E>>;

impl<E> CacheGroup<E>
where
    E: std::error::Error + Clone + Send + Sync + 'static,
{
    pub fn name(&self) -> &'static str {
        self.inner.name
    }

    pub fn policy(&self) -> &CachePolicy {
        &self.inner.policy
    }

    /// The key as stored: `{namespace}:{group}:{key}`.
    pub fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.inner.prefix)
    }

    /// The value of `key`: from a tier if fresh there, else loaded. `Ok(None)` means the
    /// loader said the key does not exist (remembered for `negative_ttl`).
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, CacheError<E>> {
        let inner = &self.inner;
        let shared = &inner.shared;
        let full = self.full_key(key);
        let now = now_ms();
        if shared.config.refresh.enabled {
            inner.hot.touch(key);
        }

        let mut stale = None;
        if let Some(entry) = shared.local.get(&full) {
            if entry.is_fresh(now) {
                let tier = if shared.redis.is_some() {
                    TIER_L1
                } else {
                    TIER_LOCAL
                };
                metrics::hit(inner.name, tier);
                self.refresh_early_if_due(key, &full, &entry, now);
                return Ok(entry.value);
            }
            stale = Some(entry);
        }

        if let Some(redis) = self.redis_if_closed() {
            match redis.get(&full).await {
                Ok(raw) => {
                    shared.breaker.success();
                    if let Some(entry) = raw.and_then(|raw| Entry::decode(Bytes::from(raw))) {
                        if entry.is_fresh(now) {
                            metrics::hit(inner.name, TIER_REDIS);
                            self.keep_in_l1(&full, &entry, now);
                            self.refresh_early_if_due(key, &full, &entry, now);
                            return Ok(entry.value);
                        }
                        stale = newer(stale, entry);
                    }
                }
                Err(_) => {
                    shared.breaker.failure();
                    metrics::error(inner.name, "get");
                }
            }
        }

        metrics::miss(inner.name);
        let outcome = if shared.config.single_flight {
            self.load_shared(key, &full, stale.clone()).await
        } else {
            self.load_and_store(key, &full, stale.clone()).await
        };
        match outcome {
            Ok(entry) => Ok(entry.value),
            Err(error) => match stale.filter(|entry| self.within_grace(entry, now_ms())) {
                Some(entry) => {
                    metrics::stale_served(inner.name);
                    Ok(entry.value)
                }
                None => Err(error),
            },
        }
    }

    /// Drops `key` from every tier and tells the other instances to drop it from their L1.
    /// If Redis cannot be reached, its copy lives out its TTL.
    pub async fn evict(&self, key: &str) {
        let full = self.full_key(key);
        self.inner.shared.local.remove(&full);
        if let Some(redis) = self.redis_if_closed() {
            let deleted = redis.delete(&full).await;
            self.report(deleted.is_ok(), "evict");
            self.announce(redis, &full).await;
        }
    }

    /// Replaces `key`'s value in every tier (`None`: remember that it does not exist), and
    /// tells the other instances to drop their L1 copy.
    pub async fn update(&self, key: &str, value: Option<Bytes>) {
        let full = self.full_key(key);
        let ttl = self.ttl_for(value.is_some());
        let entry = Entry::new(value, ttl, Duration::ZERO, now_ms());
        self.store(&full, &entry).await;
        if let Some(redis) = self.redis_if_closed() {
            self.announce(redis, &full).await;
        }
    }

    /// Runs one shared load for `full`: the first caller leads (in its own task, so that
    /// its cancellation cancels nobody's answer); the others wait for its outcome.
    async fn load_shared(&self, key: &str, full: &str, stale: Option<Entry>) -> Outcome<E> {
        match self.inner.flights.join(full) {
            Role::Leader(leader) => {
                // A flight that finished between this reader's miss and its joining has
                // stored its value already (store, then finish): check again rather than
                // load twice.
                if let Some(entry) = self
                    .inner
                    .shared
                    .local
                    .get(full)
                    .filter(|entry| entry.is_fresh(now_ms()))
                {
                    leader.finish(Ok(entry.clone()));
                    return Ok(entry);
                }
                let group = self.clone();
                let (key, full) = (key.to_owned(), full.to_owned());
                // The load stays in the leader's span: its log lines and timings belong to
                // the request that started it.
                let task = tokio::spawn(
                    async move {
                        let outcome = group.load_and_store(&key, &full, stale).await;
                        leader.finish(outcome.clone());
                        outcome
                    }
                    .instrument(tracing::Span::current()),
                );
                task.await.unwrap_or(Err(CacheError::LoadAborted))
            }
            Role::Follower(waiting) => {
                metrics::coalesced(self.inner.name);
                flight::wait(waiting)
                    .await
                    .unwrap_or(Err(CacheError::LoadAborted))
            }
        }
    }

    /// Loads `key` and stores it, coordinating with other instances through a Redis lease
    /// when Redis is there. `current` is the entry at hand, if any (stale, or still fresh
    /// when this is an early refresh): it is served if another instance holds the lease.
    async fn load_and_store(&self, key: &str, full: &str, current: Option<Entry>) -> Outcome<E> {
        let inner = &self.inner;
        let shared = &inner.shared;
        if shared.config.single_flight
            && let Some(redis) = self.redis_if_closed()
        {
            let lease = format!("{full}:lease");
            let token = format!("{:016x}", rand::rng().random::<u64>());
            match redis
                .set_nx_px(&lease, &token, millis(shared.config.lease_ttl))
                .await
            {
                Ok(true) => {
                    shared.breaker.success();
                    // Another instance may have loaded, stored and released the lease between
                    // this reader's miss and its taking the lease: check again, so that a
                    // fleet loads a key once, not once per instance that lost that race.
                    if let Some(entry) = self.stored_newer_than(redis, full, current.as_ref()).await
                    {
                        let released = redis.delete_if_equals(&lease, &token).await;
                        self.report(released.is_ok(), "lease");
                        return Ok(entry);
                    }
                    let outcome = self.load_from_source(key).await;
                    if let Ok(entry) = &outcome {
                        self.store(full, entry).await;
                    }
                    let released = redis.delete_if_equals(&lease, &token).await;
                    self.report(released.is_ok(), "lease");
                    return outcome;
                }
                Ok(false) => {
                    shared.breaker.success();
                    metrics::lease_wait(inner.name);
                    if let Some(entry) = current.filter(|e| self.within_grace(e, now_ms())) {
                        return Ok(entry);
                    }
                    if let Some(entry) = self.wait_for_holder(redis, full).await {
                        return Ok(entry);
                    }
                    // The holder crashed or is slow: load without the lease. Its TTL bounds
                    // how long anyone defers to a dead holder.
                    let outcome = self.load_from_source(key).await;
                    if let Ok(entry) = &outcome {
                        self.store(full, entry).await;
                    }
                    return outcome;
                }
                Err(_) => {
                    shared.breaker.failure();
                    metrics::error(inner.name, "lease");
                }
            }
        }

        // No Redis, Redis unavailable, or single-flight off for an experiment. While Redis is
        // unavailable every read has become a load: bound how many run at once so the
        // database pool is not exhausted.
        let redis_unavailable =
            shared.redis.is_some() && shared.breaker.state() != BreakerState::Closed;
        let _permit = if redis_unavailable {
            if shared.fallback.available_permits() == 0 {
                metrics::fallback_wait(inner.name);
            }
            shared.fallback.acquire().await.ok()
        } else {
            None
        };
        let outcome = self.load_from_source(key).await;
        if let Ok(entry) = &outcome {
            self.store(full, entry).await;
        }
        outcome
    }

    /// A fresh entry in Redis that is newer than `current` (any fresh entry if there is no
    /// `current`): the result of a load that finished elsewhere.
    async fn stored_newer_than(
        &self,
        redis: &RedisLink,
        full: &str,
        current: Option<&Entry>,
    ) -> Option<Entry> {
        let raw = redis.get(full).await.ok()??;
        let entry = Entry::decode(Bytes::from(raw))?;
        let now = now_ms();
        let newer = current.is_none_or(|current| entry.expires_at > current.expires_at);
        (entry.is_fresh(now) && newer).then(|| {
            self.keep_in_l1(full, &entry, now);
            entry
        })
    }

    /// Polls Redis for the value the lease holder is loading, up to `lease_wait`.
    async fn wait_for_holder(&self, redis: &RedisLink, full: &str) -> Option<Entry> {
        let deadline = Instant::now() + self.inner.shared.config.lease_wait;
        let mut pause = Duration::from_millis(2);
        while Instant::now() < deadline {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
            match redis.get(full).await {
                Ok(Some(raw)) => {
                    if let Some(entry) = Entry::decode(Bytes::from(raw)) {
                        let now = now_ms();
                        if entry.is_fresh(now) {
                            self.keep_in_l1(full, &entry, now);
                            return Some(entry);
                        }
                    }
                }
                Ok(None) => {}
                Err(_) => {
                    self.inner.shared.breaker.failure();
                    return None;
                }
            }
        }
        None
    }

    async fn load_from_source(&self, key: &str) -> Outcome<E> {
        let started = Instant::now();
        let result = (self.inner.loader)(key.to_owned()).await;
        let took = started.elapsed();
        match result {
            Ok(value) => {
                let found = value.is_some();
                metrics::load(
                    self.inner.name,
                    if found { "found" } else { "not_found" },
                    took,
                );
                Ok(Entry::new(value, self.ttl_for(found), took, now_ms()))
            }
            Err(error) => {
                metrics::load(self.inner.name, "error", took);
                Err(CacheError::Load(error))
            }
        }
    }

    /// Writes `entry` to Redis (with the stale grace on top of its TTL) and to the
    /// in-process tier. With Redis out of reach, the in-process tier keeps it for its whole
    /// life instead of the short L1 time, so the outage does not multiply loads.
    async fn store(&self, full: &str, entry: &Entry) {
        let shared = &self.inner.shared;
        let now = now_ms();
        let keep = self.physical_ttl(entry, now);
        if let Some(redis) = self.redis_if_closed() {
            let written = redis.set_px(full, &entry.encode(), millis(keep)).await;
            self.report(written.is_ok(), "set");
            if written.is_ok() {
                self.keep_in_l1(full, entry, now);
                return;
            }
        }
        shared.local.insert(full, entry.clone(), keep);
    }

    /// How long the stores keep an entry: its TTL plus the stale grace (values), or the
    /// negative TTL (absence).
    fn physical_ttl(&self, entry: &Entry, now: u64) -> Duration {
        let remaining = Duration::from_millis(entry.expires_at.saturating_sub(now));
        if entry.value.is_some() {
            remaining + self.inner.policy.stale_grace
        } else {
            remaining
        }
    }

    fn ttl_for(&self, found: bool) -> Duration {
        if found {
            self.inner.policy.ttl()
        } else {
            self.inner.policy.negative_ttl
        }
    }

    fn within_grace(&self, entry: &Entry, now: u64) -> bool {
        entry.is_fresh(now)
            || (entry.value.is_some()
                && now
                    < entry
                        .expires_at
                        .saturating_add(millis(self.inner.policy.stale_grace)))
    }

    /// Keeps `entry` in the in-process tier: for its whole life without Redis, for at most
    /// `l1_ttl` (and never past its expiry) in front of Redis.
    fn keep_in_l1(&self, full: &str, entry: &Entry, now: u64) {
        let shared = &self.inner.shared;
        if shared.redis.is_none() {
            shared
                .local
                .insert(full, entry.clone(), self.physical_ttl(entry, now));
            return;
        }
        let remaining = Duration::from_millis(entry.expires_at.saturating_sub(now));
        shared
            .local
            .insert(full, entry.clone(), shared.config.l1_ttl.min(remaining));
    }

    fn refresh_early_if_due(&self, key: &str, full: &str, entry: &Entry, now: u64) {
        if entry.should_refresh_early(now, self.inner.policy.early_refresh_beta) {
            self.spawn_refresh(key, full, entry.clone(), "xfetch");
        }
    }

    /// Reloads `key` in the background, unless a load of it is already running.
    fn spawn_refresh(&self, key: &str, full: &str, current: Entry, trigger: &'static str) {
        let Role::Leader(leader) = self.inner.flights.join(full) else {
            return;
        };
        metrics::early_refresh(self.inner.name, trigger);
        let group = self.clone();
        let (key, full) = (key.to_owned(), full.to_owned());
        tokio::spawn(async move {
            let outcome = group.load_and_store(&key, &full, Some(current)).await;
            leader.finish(outcome);
        });
    }

    /// The entry for `key` from the nearest tier, fresh or not.
    async fn peek(&self, full: &str) -> Option<Entry> {
        if let Some(entry) = self.inner.shared.local.get(full) {
            return Some(entry);
        }
        let redis = self.redis_if_closed()?;
        match redis.get(full).await {
            Ok(raw) => raw.and_then(|raw| Entry::decode(Bytes::from(raw))),
            Err(_) => None,
        }
    }

    fn redis_if_closed(&self) -> Option<&RedisLink> {
        let shared = &self.inner.shared;
        shared.redis.as_ref().filter(|_| shared.breaker.allow())
    }

    fn report(&self, ok: bool, operation: &'static str) {
        let breaker = &self.inner.shared.breaker;
        if ok {
            breaker.success();
        } else {
            breaker.failure();
            metrics::error(self.inner.name, operation);
        }
    }

    async fn announce(&self, redis: &RedisLink, full: &str) {
        if self.inner.shared.config.l1_ttl.is_zero() {
            return;
        }
        let published = redis.publish(&self.inner.shared.channel, full).await;
        self.report(published.is_ok(), "publish");
    }
}

fn newer(current: Option<Entry>, candidate: Entry) -> Option<Entry> {
    match current {
        Some(entry) if entry.expires_at >= candidate.expires_at => Some(entry),
        _ => Some(candidate),
    }
}

/// Applies invalidations published by any instance to this instance's L1, reconnecting
/// with backoff. The L1 is cleared whenever the subscription is (re)established, since
/// messages sent while it was down are lost.
async fn listen_for_invalidations(redis: RedisLink, channel: String, local: LocalTier) {
    let mut backoff = Duration::from_millis(100);
    loop {
        if let Ok(mut subscription) = redis.subscribe(&channel).await {
            local.clear();
            backoff = Duration::from_millis(100);
            let mut messages = subscription.on_message();
            while let Some(message) = messages.next().await {
                if let Ok(key) = message.get_payload::<String>() {
                    local.remove(&key);
                }
            }
            local.clear();
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Read counts per key since the refresher's last round. Counting is best-effort: a read
/// that finds the lock taken is not counted, so the hot path never waits for it.
#[derive(Debug, Default)]
struct HotKeys {
    counts: Mutex<HashMap<String, u32>>,
}

/// Keys tracked per round at most: bounds the memory a scan of many keys can take.
const HOT_KEYS_TRACKED: usize = 10_000;

impl HotKeys {
    fn touch(&self, key: &str) {
        let Ok(mut counts) = self.counts.try_lock() else {
            return;
        };
        if let Some(count) = counts.get_mut(key) {
            *count = count.saturating_add(1);
        } else if counts.len() < HOT_KEYS_TRACKED {
            counts.insert(key.to_owned(), 1);
        }
    }

    /// The `limit` most-read keys with at least `min_reads` reads, and a fresh count.
    fn take_hottest(&self, limit: usize, min_reads: u32) -> Vec<String> {
        let counts = match self.counts.lock() {
            Ok(mut counts) => std::mem::take(&mut *counts),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        let mut hot: Vec<(String, u32)> = counts
            .into_iter()
            .filter(|(_, reads)| *reads >= min_reads)
            .collect();
        hot.sort_unstable_by_key(|(_, reads)| std::cmp::Reverse(*reads));
        hot.into_iter().take(limit).map(|(key, _)| key).collect()
    }
}

/// The hot-key refresher of one group: every `interval`, reload the hottest keys that
/// expire within `ahead`, one at a time (a gentle, steady load rather than a burst).
async fn refresh_hot_keys<E>(group: Weak<GroupInner<E>>)
where
    E: std::error::Error + Clone + Send + Sync + 'static,
{
    loop {
        let Some(interval) = group.upgrade().map(|g| g.shared.config.refresh.interval) else {
            return;
        };
        tokio::time::sleep(interval).await;
        let Some(inner) = group.upgrade() else { return };
        let config = inner.shared.config.refresh;
        let group = CacheGroup { inner };
        for key in group
            .inner
            .hot
            .take_hottest(config.hot_keys, config.min_reads)
        {
            let full = group.full_key(&key);
            let now = now_ms();
            let due = match group.peek(&full).await {
                Some(entry) => entry.expires_at.saturating_sub(now) <= millis(config.ahead),
                None => true,
            };
            if due {
                let current = group.peek(&full).await;
                if let Role::Leader(leader) = group.inner.flights.join(&full) {
                    metrics::early_refresh(group.inner.name, "hot_key");
                    let outcome = group.load_and_store(&key, &full, current).await;
                    leader.finish(outcome);
                }
            }
        }
    }
}
