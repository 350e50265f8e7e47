//! Writes: `evict` and `update`, which bump the key's generation so that a load that read
//! the source before them cannot store what it read, and tell every instance's L1.

use std::time::Duration;

use super::ticket::{generation_key, lease_key, mark_life, retired_key};
use super::{CacheGroup, CacheKey, CacheValue, erase};
use crate::bump::AfterBump;
use crate::entry::{Entry, millis, now_ms};
use crate::metrics::Operation;
use crate::remote::RedisLink;

impl<K, V, E> CacheGroup<K, V, E>
where
    K: CacheKey,
    V: CacheValue,
    E: std::error::Error + Send + Sync + 'static,
{
    /// Drops `key` from every tier and tells the other instances to drop it from their L1.
    /// It also bumps the key's generation, so that a load that read the source before this
    /// eviction does not store what it read, and detaches this instance's load of the key
    /// in progress, so that a read from now on does not join it. If Redis cannot be
    /// reached, its copy lives out its TTL.
    ///
    /// The value it drops is kept for the policy's `stale_grace` (in Redis under
    /// `{key}:retired`), never as a hit: a read whose load fails serves it as a stale value
    /// rather than an error.
    pub async fn evict(&self, key: &K) {
        let full = self.full_key(key);
        let grace = self.inner.policy.stale_grace;
        self.inner.shared.local.invalidate_and_retire(&full, grace);
        self.inner.flights.forget(&full);
        if let Some(redis) = self.redis_if_closed() {
            // The lease goes too: its holder's store will be refused, and a reader must not
            // wait `lease_wait` for a value that will not come.
            let lease = lease_key(&full);
            let retired = retired_key(&full);
            // The announcement is part of the script, after the eviction, never before: an
            // instance that drops its L1 copy on the message and reads Redis again must not
            // find the old value there.
            let evicted = redis
                .bump_generation(
                    &generation_key(&full),
                    millis(mark_life(&self.inner.policy)),
                    &full,
                    AfterBump::Delete {
                        lease: &lease,
                        retired: &retired,
                        retired_ms: millis(grace),
                    },
                    self.announce_on(),
                )
                .await;
            self.report(evicted.is_ok(), Operation::Evict);
            if evicted.is_err() {
                // The script did not run; the other instances' L1 copies may still be told.
                self.announce(redis, &full).await;
            }
        }
    }

    /// Replaces `key`'s value in every tier (`None`: remember that it does not exist), and
    /// tells the other instances to drop their L1 copy. Like [`CacheGroup::evict`], it bumps
    /// the key's generation and detaches a load in progress, so a load that read the
    /// source before it cannot overwrite the new value.
    pub async fn update(&self, key: &K, value: Option<V>) {
        let shared = &self.inner.shared;
        let full = self.full_key(key);
        let ttl = self.ttl_for(value.is_some());
        let now = now_ms();
        let entry = Entry::new(value, ttl, Duration::ZERO, now);
        self.inner.flights.forget(&full);
        let keep = self.physical_ttl(&entry, now);
        if let Some(redis) = self.redis_if_closed() {
            let written = match self.encode(&full, &entry) {
                Some(encoded) => redis
                    .bump_generation(
                        &generation_key(&full),
                        millis(mark_life(&self.inner.policy)),
                        &full,
                        AfterBump::Set {
                            value: &encoded,
                            ttl_ms: millis(keep),
                        },
                        self.announce_on(),
                    )
                    .await
                    .is_ok(),
                // Not storable: evict instead, so no instance serves the old value.
                None => {
                    self.evict(key).await;
                    return;
                }
            };
            self.report(written, Operation::Set);
            if written {
                // The script announced it.
                let hold = self.l1_hold(&entry, now);
                shared.local.replace(&full, erase(&entry), hold);
                return;
            }
        }
        shared.local.replace(&full, erase(&entry), keep);
        if let Some(redis) = self.redis_if_closed() {
            self.announce(redis, &full).await;
        }
    }

    /// The channel a write's script announces the key on: none when no instance keeps an
    /// L1 (`l1_ttl` 0), so there is no copy to drop.
    fn announce_on(&self) -> &str {
        let shared = &self.inner.shared;
        if shared.config.l1_ttl.is_zero() {
            ""
        } else {
            &shared.channel
        }
    }

    /// Tells every instance to drop `full` from its L1, on its own: after a write whose
    /// script (which announces too) did not run.
    async fn announce(&self, redis: &RedisLink, full: &str) {
        let channel = self.announce_on();
        if channel.is_empty() {
            return;
        }
        let published = redis.publish(channel, full).await;
        self.report(published.is_ok(), Operation::Publish);
    }
}
