//! Loading a key and storing the result: single-flight in the process, a lease across
//! processes, and the fallback bound while Redis is unavailable.

use std::time::{Duration, Instant};

use rand::Rng;
use tracing::Instrument;

use super::ticket::{Ticket, generation_key, lease_key};
use super::{CacheGroup, CacheKey, CacheValue, Outcome, erase};
use crate::breaker::BreakerState;
use crate::bump::HeldLease;
use crate::entry::{Entry, millis, now_ms};
use crate::error::CacheError;
use crate::flight::{self, Role};
use crate::metrics::Operation;
use crate::remote::RedisLink;

impl<K, V, E> CacheGroup<K, V, E>
where
    K: CacheKey,
    V: CacheValue,
    E: std::error::Error + Send + Sync + 'static,
{
    /// Runs one shared load for `key`: the first caller leads (in its own task, so that
    /// its cancellation cancels nobody's answer); the others wait for its outcome. A miss,
    /// so the full key is written out again here rather than carried from the read.
    pub(super) async fn load_shared(&self, key: &K, stale: Option<Entry<V>>) -> Outcome<V, E> {
        let full = self.full_key(key);
        let full = full.as_str();
        match self.inner.flights.join(full) {
            Role::Leader(leader) => {
                // A flight that finished between this reader's miss and its joining has
                // stored its value already (store, then finish): check again rather than
                // load twice.
                if let Some(entry) = self.local_get(full).filter(|e| e.is_fresh(now_ms())) {
                    leader.finish(Ok(entry.clone()));
                    return Ok(entry);
                }
                let group = self.clone();
                let (key, full) = (key.clone(), full.to_owned());
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
                self.inner.metrics.coalesced();
                flight::wait(waiting)
                    .await
                    .unwrap_or(Err(CacheError::LoadAborted))
            }
        }
    }

    /// Loads `key` and stores it, coordinating with other instances through a Redis lease
    /// when Redis is there. `current` is the entry at hand, if any (stale, or still fresh
    /// when this is an early refresh): it is served if another instance holds the lease.
    pub(super) async fn load_and_store(
        &self,
        key: &K,
        full: &str,
        current: Option<Entry<V>>,
    ) -> Outcome<V, E> {
        // Whether Redis failed this read's lease: its load is then a fallback load, whatever
        // the breaker says yet (it opens only after `failure_threshold` failures).
        let lease_failed = match self.redis_if_closed() {
            Some(redis) => match self.load_under_lease(redis, key, full, current).await {
                Ok(outcome) => return outcome,
                Err(LeaseFailed) => true,
            },
            None => false,
        };
        self.load_within_fallback(key, full, lease_failed).await
    }

    /// Takes the key's lease and loads, or, when another instance holds it, serves
    /// `current` or waits for the holder's value. `Err` when Redis failed to answer.
    async fn load_under_lease(
        &self,
        redis: &RedisLink,
        key: &K,
        full: &str,
        current: Option<Entry<V>>,
    ) -> Result<Outcome<V, E>, LeaseFailed> {
        let lease = lease_key(full);
        let token = format!("{:016x}", rand::rng().random::<u64>());
        let lease_ttl = millis(self.inner.shared.config.lease_ttl);
        // Taken before the read that comes with the lease: an invalidation that arrives
        // between that read and an L1 copy of it must win.
        let l1_ticket = self.l1_ticket();
        let taken = redis
            .lease_and_read(&lease, &token, lease_ttl, full, &generation_key(full))
            .await;
        self.report(taken.is_ok(), Operation::Lease);
        match taken {
            Ok(Some(read)) => {
                // Another instance may have loaded, stored and released the lease between
                // this reader's miss and its taking the lease: the script read the key
                // after taking it, so that a fleet loads a key once, not once per instance
                // that lost that race.
                let (stored, ticket) =
                    self.stored_newer_than(full, read, l1_ticket, current.as_ref());
                let held = HeldLease {
                    key: &lease,
                    token: &token,
                };
                let (outcome, released) = match stored {
                    Some(entry) => (Ok(entry), false),
                    None => self.load_then_store(key, full, ticket, Some(held)).await,
                };
                if !released {
                    let released = redis.delete_if_equals(&lease, &token).await;
                    self.report(released.is_ok(), Operation::Lease);
                }
                Ok(outcome)
            }
            Ok(None) => {
                self.inner.metrics.lease_wait();
                if let Some(entry) = current.filter(|e| self.within_grace(e, now_ms())) {
                    return Ok(Ok(entry));
                }
                if let Some(entry) = self.wait_for_holder(redis, full).await {
                    return Ok(Ok(entry));
                }
                // The holder crashed or is slow: load without the lease. Its TTL bounds how
                // long anyone defers to a dead holder.
                let ticket = self.ticket(full).await;
                Ok(self.load_then_store(key, full, ticket, None).await.0)
            }
            Err(_) => Err(LeaseFailed),
        }
    }

    /// Loads without a lease: without Redis, or while it is unavailable. Then every read
    /// has become a load: at most `fallback_concurrency` run at once, so the database pool
    /// is not exhausted. That includes the reads whose lease failed before the breaker
    /// opened, at the start of an outage.
    async fn load_within_fallback(&self, key: &K, full: &str, lease_failed: bool) -> Outcome<V, E> {
        let shared = &self.inner.shared;
        let redis_unavailable = shared.redis.is_some()
            && (lease_failed || shared.breaker.state() != BreakerState::Closed);
        let _permit = if redis_unavailable {
            if shared.fallback.available_permits() == 0 {
                self.inner.metrics.fallback_wait();
            }
            shared.fallback.acquire().await.ok()
        } else {
            None
        };
        let ticket = self.ticket(full).await;
        self.load_then_store(key, full, ticket, None).await.0
    }

    /// The fresh entry in `read` (an entry and its generation, read with the lease) if it is
    /// newer than `current` (any fresh entry if there is no `current`): the result of a load
    /// that finished elsewhere. The generation goes into the ticket of the load that follows
    /// if there is none; `l1_ticket` was taken before the read.
    fn stored_newer_than(
        &self,
        full: &str,
        read: (Option<Vec<u8>>, u64),
        mut ticket: Ticket,
        current: Option<&Entry<V>>,
    ) -> (Option<Entry<V>>, Ticket) {
        let (raw, generation) = read;
        ticket.redis = Some(generation);
        let now = now_ms();
        let found = self.accept(full, raw, ticket, now).filter(|entry| {
            entry.is_fresh(now)
                && current.is_none_or(|current| entry.expires_at > current.expires_at)
        });
        (found, ticket)
    }

    /// Polls Redis for the value the lease holder is loading, up to `lease_wait`.
    async fn wait_for_holder(&self, redis: &RedisLink, full: &str) -> Option<Entry<V>> {
        let deadline = Instant::now() + self.inner.shared.config.lease_wait;
        let mut pause = Duration::from_millis(2);
        while Instant::now() < deadline {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
            let ticket = self.l1_ticket();
            let read = redis.get(full).await;
            self.report(read.is_ok(), Operation::Get);
            let now = now_ms();
            match read {
                Ok(raw) => {
                    if let Some(entry) = self
                        .accept(full, raw, ticket, now)
                        .filter(|entry| entry.is_fresh(now))
                    {
                        return Some(entry);
                    }
                }
                Err(_) => return None,
            }
        }
        None
    }

    /// Loads `key` from the source and stores the result, unless a write evicted or
    /// replaced the key after `ticket` was taken (before this call, so before the source
    /// is read): the result then answers only the reads that were waiting for it. With
    /// `lease`, the store releases it in the same round trip; the second value says whether
    /// it did (if not, the caller releases it).
    async fn load_then_store(
        &self,
        key: &K,
        full: &str,
        ticket: Ticket,
        lease: Option<HeldLease<'_>>,
    ) -> (Outcome<V, E>, bool) {
        let outcome = self.load_from_source(key).await;
        let released = match &outcome {
            Ok(entry) => self.store(full, entry, ticket, lease).await,
            Err(_) => false,
        };
        (outcome, released)
    }

    /// A ticket for a load of `full` that is about to read the source: with Redis, it
    /// carries the key's generation (one GET per load; hits pay nothing).
    async fn ticket(&self, full: &str) -> Ticket {
        let taken = Instant::now();
        let local = self.inner.shared.local.ticket();
        let redis = match self.redis_if_closed() {
            Some(redis) => {
                let generation = redis.generation(&generation_key(full)).await;
                self.report(generation.is_ok(), Operation::Get);
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
    pub(super) fn l1_ticket(&self) -> Ticket {
        Ticket {
            taken: Instant::now(),
            local: self.inner.shared.local.ticket(),
            redis: None,
        }
    }

    async fn load_from_source(&self, key: &K) -> Outcome<V, E> {
        let started = Instant::now();
        let result = (self.inner.loader)(key.clone()).await;
        let took = started.elapsed();
        match result {
            Ok(value) => {
                let found = value.is_some();
                self.inner.metrics.load(Some(found), took);
                Ok(Entry::new(value, self.ttl_for(found), took, now_ms()))
            }
            Err(error) => {
                self.inner.metrics.load(None, took);
                Err(CacheError::Load(error.into()))
            }
        }
    }

    /// Writes `entry` to Redis (with the stale grace on top of its TTL) and to the
    /// in-process tier, unless the key was evicted or replaced since `ticket` was taken.
    /// With Redis out of reach, the in-process tier keeps it for its whole life instead of
    /// the short L1 time, so the outage does not multiply loads.
    ///
    /// With `lease`, the Redis store releases it in the same script; returns whether it was
    /// released that way.
    async fn store(
        &self,
        full: &str,
        entry: &Entry<V>,
        ticket: Ticket,
        lease: Option<HeldLease<'_>>,
    ) -> bool {
        let name = self.inner.name;
        if !ticket.is_younger_than(self.inner.policy.longest_life()) {
            // The marks that would tell whether a write came after this load began may be
            // gone; a value this old is not worth keeping anyway.
            tracing::debug!(group = name, key = full, "a load too slow to store");
            return false;
        }
        let now = now_ms();
        let keep = self.physical_ttl(entry, now);
        if let (Some(generation), Some(redis)) = (ticket.redis, self.redis_if_closed()) {
            let Some(encoded) = self.encode(full, entry) else {
                return false;
            };
            let stored = redis
                .set_px_if_generation(
                    &generation_key(full),
                    generation,
                    full,
                    &encoded,
                    millis(keep),
                    lease,
                )
                .await;
            // One round trip, so one report to the breaker; a failed one that was also to
            // release the lease counts as a lease error too.
            self.report(stored.is_ok(), Operation::Set);
            if lease.is_some() && stored.is_err() {
                self.inner.metrics.error(Operation::Lease);
            }
            match stored {
                Ok(true) => {
                    self.keep_in_l1(full, entry, now, ticket);
                    return lease.is_some();
                }
                Ok(false) => {
                    tracing::debug!(
                        group = name,
                        key = full,
                        "the key was written during its load; the load's value is not stored"
                    );
                    return lease.is_some();
                }
                Err(_) => {}
            }
        }
        self.inner
            .shared
            .local
            .insert(full, erase(entry), keep, ticket.local);
        false
    }

    /// The entry's wire form; `None` (logged and counted) when the codec cannot encode the
    /// value: it is then served, but not cached.
    pub(super) fn encode(&self, full: &str, entry: &Entry<V>) -> Option<bytes::Bytes> {
        match entry.encode(self.inner.codec.as_ref()) {
            Ok(encoded) => Some(encoded),
            Err(error) => {
                tracing::warn!(group = self.inner.name, key = full, %error, "a value the codec cannot encode is not cached");
                self.inner.metrics.error(Operation::Encode);
                None
            }
        }
    }

    pub(super) fn ttl_for(&self, found: bool) -> Duration {
        if found {
            self.inner.policy.ttl()
        } else {
            self.inner.policy.negative_ttl
        }
    }
}

/// Redis did not answer the lease.
struct LeaseFailed;
