//! [`Cache`] and [`CacheGroup`]: cache-aside with single-flight, leases, early refresh and
//! fail-open.
//!
//! A read goes: in-process tier, then Redis (if configured and its breaker is closed), then
//! the group's loader. Misses of one key share one load per process (single-flight) and,
//! with Redis, one load across processes (a lease taken with `SET NX PX`). Reads shortly
//! before expiry refresh the entry in the background (XFetch), and a refresher keeps the
//! hottest keys loaded. Redis failing or slow never fails a read: the breaker opens, and
//! reads go to the loader, at most `fallback_concurrency` at a time. A load that fails
//! while a stale entry is at hand serves the stale entry. Entries read from Redis are
//! checked against the group's policy, and stores are conditional on the key's generation,
//! so that neither a forged entry nor a load that raced a write can pin an old value.
//! docs/cache.md has the reasoning.

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
use crate::generation::{Ticket, generation_key};
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
        self.shared.local.keep_marks_for(mark_life(&policy));
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

    /// How many entries the in-process tier holds now (the whole cache without Redis, the
    /// L1 with it).
    pub fn local_entry_count(&self) -> u64 {
        self.shared.local.entry_count()
    }
}

/// How long a generation (and an in-process invalidation mark) is kept after its last
/// bump: twice the group's longest entry life, so that a store sent just before a load
/// reaches that life, and delayed on its way, still meets the mark.
fn mark_life(policy: &CachePolicy) -> Duration {
    policy.longest_life().saturating_mul(2)
}

fn lease_key(full: &str) -> String {
    format!("{full}:lease")
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
            let ticket = self.l1_ticket();
            match redis.get(&full).await {
                Ok(raw) => {
                    shared.breaker.success();
                    if let Some(entry) = raw.and_then(|raw| self.decode_trusted(&full, raw)) {
                        if entry.is_fresh(now) {
                            metrics::hit(inner.name, TIER_REDIS);
                            self.keep_in_l1(&full, &entry, now, ticket);
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
    /// It also bumps the key's generation, so that a load that read the source before this
    /// eviction does not store what it read, and detaches this instance's load of the key
    /// in progress, so that a read from now on does not join it. If Redis cannot be
    /// reached, its copy lives out its TTL.
    pub async fn evict(&self, key: &str) {
        let full = self.full_key(key);
        self.inner.shared.local.invalidate(&full);
        self.inner.flights.forget(&full);
        if let Some(redis) = self.redis_if_closed() {
            // The lease goes too: its holder's store will be refused, and a reader must not
            // wait `lease_wait` for a value that will not come.
            let evicted = redis
                .bump_generation_and_delete(
                    &generation_key(&full),
                    millis(mark_life(&self.inner.policy)),
                    &full,
                    &lease_key(&full),
                )
                .await;
            self.report(evicted.is_ok(), "evict");
            // After the eviction, never before: an instance that drops its L1 copy on this
            // message and reads Redis again must not find the old value there.
            self.announce(redis, &full).await;
        }
    }

    /// Replaces `key`'s value in every tier (`None`: remember that it does not exist), and
    /// tells the other instances to drop their L1 copy. Like [`CacheGroup::evict`], it bumps
    /// the key's generation and detaches a load in progress, so a load that read the
    /// source before it cannot overwrite the new value.
    pub async fn update(&self, key: &str, value: Option<Bytes>) {
        let shared = &self.inner.shared;
        let full = self.full_key(key);
        let ttl = self.ttl_for(value.is_some());
        let now = now_ms();
        let entry = Entry::new(value, ttl, Duration::ZERO, now);
        self.inner.flights.forget(&full);
        let keep = self.physical_ttl(&entry, now);
        if let Some(redis) = self.redis_if_closed() {
            let written = redis
                .bump_generation_and_set(
                    &generation_key(&full),
                    millis(mark_life(&self.inner.policy)),
                    &full,
                    &entry.encode(),
                    millis(keep),
                )
                .await;
            self.report(written.is_ok(), "set");
            if written.is_ok() {
                let hold = self.l1_hold(&entry, now);
                shared.local.replace(&full, entry, hold);
                self.announce(redis, &full).await;
                return;
            }
        }
        shared.local.replace(&full, entry, keep);
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
        // Whether Redis failed this read's lease: its load is then a fallback load, whatever
        // the breaker says yet (it opens only after `failure_threshold` failures).
        let mut lease_failed = false;
        if shared.config.single_flight
            && let Some(redis) = self.redis_if_closed()
        {
            let lease = lease_key(full);
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
                    let (stored, ticket) =
                        self.stored_newer_than(redis, full, current.as_ref()).await;
                    if let Some(entry) = stored {
                        let released = redis.delete_if_equals(&lease, &token).await;
                        self.report(released.is_ok(), "lease");
                        return Ok(entry);
                    }
                    let outcome = self.load_then_store(key, full, ticket).await;
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
                    let ticket = self.ticket(full).await;
                    return self.load_then_store(key, full, ticket).await;
                }
                Err(_) => {
                    shared.breaker.failure();
                    metrics::error(inner.name, "lease");
                    lease_failed = true;
                }
            }
        }

        // No Redis, Redis unavailable, or single-flight off for an experiment. While Redis is
        // unavailable every read has become a load: bound how many run at once so the
        // database pool is not exhausted. That includes the reads whose lease failed before
        // the breaker opened, at the start of an outage.
        let redis_unavailable = shared.redis.is_some()
            && (lease_failed || shared.breaker.state() != BreakerState::Closed);
        let _permit = if redis_unavailable {
            if shared.fallback.available_permits() == 0 {
                metrics::fallback_wait(inner.name);
            }
            shared.fallback.acquire().await.ok()
        } else {
            None
        };
        let ticket = self.ticket(full).await;
        self.load_then_store(key, full, ticket).await
    }

    /// A fresh entry in Redis that is newer than `current` (any fresh entry if there is no
    /// `current`): the result of a load that finished elsewhere. The same round trip reads
    /// the key's generation, for the ticket of the load that follows if there is none.
    async fn stored_newer_than(
        &self,
        redis: &RedisLink,
        full: &str,
        current: Option<&Entry>,
    ) -> (Option<Entry>, Ticket) {
        let mut ticket = self.l1_ticket();
        let read = redis.get_with_generation(full, &generation_key(full)).await;
        self.report(read.is_ok(), "get");
        let Ok((raw, generation)) = read else {
            return (None, ticket);
        };
        ticket.redis = Some(generation);
        let Some(entry) = raw.and_then(|raw| self.decode_trusted(full, raw)) else {
            return (None, ticket);
        };
        let now = now_ms();
        let newer = current.is_none_or(|current| entry.expires_at > current.expires_at);
        let found = (entry.is_fresh(now) && newer).then(|| {
            self.keep_in_l1(full, &entry, now, ticket);
            entry
        });
        (found, ticket)
    }

    /// Polls Redis for the value the lease holder is loading, up to `lease_wait`.
    async fn wait_for_holder(&self, redis: &RedisLink, full: &str) -> Option<Entry> {
        let deadline = Instant::now() + self.inner.shared.config.lease_wait;
        let mut pause = Duration::from_millis(2);
        while Instant::now() < deadline {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
            let ticket = self.l1_ticket();
            match redis.get(full).await {
                Ok(Some(raw)) => {
                    if let Some(entry) = self.decode_trusted(full, raw) {
                        let now = now_ms();
                        if entry.is_fresh(now) {
                            self.keep_in_l1(full, &entry, now, ticket);
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

    /// Loads `key` from the source and stores the result, unless a write evicted or
    /// replaced the key after `ticket` was taken (before this call, so before the source
    /// is read): the result then answers only the reads that were waiting for it.
    async fn load_then_store(&self, key: &str, full: &str, ticket: Ticket) -> Outcome<E> {
        let outcome = self.load_from_source(key).await;
        if let Ok(entry) = &outcome {
            self.store(full, entry, ticket).await;
        }
        outcome
    }

    /// A ticket for a load of `full` that is about to read the source: with Redis, it
    /// carries the key's generation (one GET per load; hits pay nothing).
    async fn ticket(&self, full: &str) -> Ticket {
        let taken = Instant::now();
        let local = self.inner.shared.local.ticket();
        let redis = match self.redis_if_closed() {
            Some(redis) => {
                let generation = redis.generation(&generation_key(full)).await;
                self.report(generation.is_ok(), "get");
                generation.ok()
            }
            None => None,
        };
        Ticket {
            local,
            redis,
            taken,
        }
    }

    /// A ticket for an L1 copy of what is about to be read from Redis: an invalidation
    /// that arrives between the read and the copy must win.
    fn l1_ticket(&self) -> Ticket {
        Ticket {
            taken: Instant::now(),
            local: self.inner.shared.local.ticket(),
            redis: None,
        }
    }

    /// Decodes an entry read from Redis, unless it expires later than any entry of this
    /// group can: written now, an entry expires within its longest TTL. One further out
    /// was not written under this policy (it is forged or corrupt, or an older deployment
    /// wrote it with longer TTLs), and served, it would live as long as it claims; it is a
    /// miss instead, and the load replaces it. The stale grace is allowed on top, for
    /// clocks that differ between instances.
    fn decode_trusted(&self, full: &str, raw: Vec<u8>) -> Option<Entry> {
        let entry = Entry::decode(Bytes::from(raw))?;
        let policy = &self.inner.policy;
        let longest_ttl = if entry.value.is_some() {
            policy.window().1
        } else {
            policy.negative_ttl
        };
        let now = now_ms();
        let latest = now.saturating_add(millis(longest_ttl.saturating_add(policy.stale_grace)));
        if entry.expires_at > latest {
            tracing::warn!(
                group = self.inner.name,
                key = full,
                expires_in_ms = entry.expires_at.saturating_sub(now),
                "an entry in Redis expires later than this group's policy allows; read as a miss"
            );
            return None;
        }
        Some(entry)
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
    /// in-process tier, unless the key was evicted or replaced since `ticket` was taken.
    /// With Redis out of reach, the in-process tier keeps it for its whole life instead of
    /// the short L1 time, so the outage does not multiply loads.
    async fn store(&self, full: &str, entry: &Entry, ticket: Ticket) {
        let shared = &self.inner.shared;
        if !ticket.is_younger_than(self.inner.policy.longest_life()) {
            // The marks that would tell whether a write came after this load began may be
            // gone; a value this old is not worth keeping anyway.
            tracing::debug!(
                group = self.inner.name,
                key = full,
                "a load too slow to store"
            );
            return;
        }
        let now = now_ms();
        let keep = self.physical_ttl(entry, now);
        if let (Some(generation), Some(redis)) = (ticket.redis, self.redis_if_closed()) {
            let stored = redis
                .set_px_if_generation(
                    &generation_key(full),
                    generation,
                    full,
                    &entry.encode(),
                    millis(keep),
                )
                .await;
            self.report(stored.is_ok(), "set");
            match stored {
                Ok(true) => {
                    self.keep_in_l1(full, entry, now, ticket);
                    return;
                }
                Ok(false) => {
                    tracing::debug!(
                        group = self.inner.name,
                        key = full,
                        "the key was written during its load; the load's value is not stored"
                    );
                    return;
                }
                Err(_) => {}
            }
        }
        shared.local.insert(full, entry.clone(), keep, ticket.local);
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

    /// Keeps `entry` in the in-process tier (for its whole life without Redis, for at most
    /// `l1_ttl` and never past its expiry in front of Redis), unless the key was
    /// invalidated since `ticket` was taken.
    fn keep_in_l1(&self, full: &str, entry: &Entry, now: u64, ticket: Ticket) {
        if ticket.is_younger_than(self.inner.policy.longest_life()) {
            let hold = self.l1_hold(entry, now);
            self.inner
                .shared
                .local
                .insert(full, entry.clone(), hold, ticket.local);
        }
    }

    fn l1_hold(&self, entry: &Entry, now: u64) -> Duration {
        let shared = &self.inner.shared;
        if shared.redis.is_none() {
            return self.physical_ttl(entry, now);
        }
        let remaining = Duration::from_millis(entry.expires_at.saturating_sub(now));
        shared.config.l1_ttl.min(remaining)
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
            Ok(raw) => raw.and_then(|raw| self.decode_trusted(full, raw)),
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
                    local.invalidate(&key);
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
            let current = group.peek(&full).await;
            let due = current
                .as_ref()
                .is_none_or(|entry| entry.expires_at.saturating_sub(now) <= millis(config.ahead));
            if due && let Role::Leader(leader) = group.inner.flights.join(&full) {
                metrics::early_refresh(group.inner.name, "hot_key");
                let outcome = group.load_and_store(&key, &full, current).await;
                leader.finish(outcome);
            }
        }
    }
}
