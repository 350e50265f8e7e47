//! Refreshing before expiry: XFetch on reads, and the hot-key refresher.

use std::collections::HashMap;
use std::sync::{Mutex, Weak};

use super::{CacheGroup, CacheKey, CacheValue, GroupInner};
use crate::entry::{Entry, millis, now_ms};
use crate::flight::Role;
use crate::metrics::{Operation, Trigger};

impl<K, V, E> CacheGroup<K, V, E>
where
    K: CacheKey,
    V: CacheValue,
    E: std::error::Error + Send + Sync + 'static,
{
    /// Starts a background reload when XFetch says this read should.
    pub(super) fn refresh_early_if_due(&self, key: &K, full: &str, entry: &Entry<V>, now: u64) {
        if entry.should_refresh_early(now, self.inner.policy.early_refresh_beta) {
            self.spawn_refresh(key, full, entry.clone());
        }
    }

    /// Reloads `key` in the background, unless a load of it is already running.
    fn spawn_refresh(&self, key: &K, full: &str, current: Entry<V>) {
        let Role::Leader(leader) = self.inner.flights.join(full) else {
            return;
        };
        self.inner.metrics.early_refresh(Trigger::Xfetch);
        let group = self.clone();
        let (key, full) = (key.clone(), full.to_owned());
        tokio::spawn(async move {
            let outcome = group.load_and_store(&key, &full, Some(current)).await;
            leader.finish(outcome);
        });
    }

    /// The entry for `full` from the nearest tier, fresh or not.
    async fn peek(&self, full: &str) -> Option<Entry<V>> {
        if let Some(entry) = self.local_get(full) {
            return Some(entry);
        }
        let redis = self.redis_if_closed()?;
        let read = redis.get(full).await;
        self.report(read.is_ok(), Operation::Get);
        read.ok()?.and_then(|raw| self.decode_trusted(full, raw))
    }
}

/// Read counts per key since the refresher's last round. Counting is best-effort: a read
/// that finds the lock taken is not counted, so the hot path never waits for it.
pub(super) struct HotKeys<K> {
    counts: Mutex<HashMap<K, u32>>,
}

impl<K> Default for HotKeys<K> {
    fn default() -> Self {
        Self {
            counts: Mutex::new(HashMap::new()),
        }
    }
}

/// Keys tracked per round at most: bounds the memory a scan of many keys can take.
const HOT_KEYS_TRACKED: usize = 10_000;

impl<K: CacheKey> HotKeys<K> {
    pub fn touch(&self, key: &K) {
        let Ok(mut counts) = self.counts.try_lock() else {
            return;
        };
        if let Some(count) = counts.get_mut(key) {
            *count = count.saturating_add(1);
        } else if counts.len() < HOT_KEYS_TRACKED {
            counts.insert(key.clone(), 1);
        }
    }

    /// The `limit` most-read keys with at least `min_reads` reads, and a fresh count.
    fn take_hottest(&self, limit: usize, min_reads: u32) -> Vec<K> {
        let counts = match self.counts.lock() {
            Ok(mut counts) => std::mem::take(&mut *counts),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        let mut hot: Vec<(K, u32)> = counts
            .into_iter()
            .filter(|(_, reads)| *reads >= min_reads)
            .collect();
        hot.sort_unstable_by_key(|(_, reads)| std::cmp::Reverse(*reads));
        hot.into_iter().take(limit).map(|(key, _)| key).collect()
    }
}

/// The hot-key refresher of one group: every `interval`, reload the hottest keys that
/// expire within `ahead`, one at a time (a gentle, steady load rather than a burst). Each
/// key is looked up once (`peek`), and that entry is what the reload replaces.
pub(super) async fn refresh_hot_keys<K, V, E>(group: Weak<GroupInner<K, V, E>>)
where
    K: CacheKey,
    V: CacheValue,
    E: std::error::Error + Send + Sync + 'static,
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
                group.inner.metrics.early_refresh(Trigger::HotKey);
                let outcome = group.load_and_store(&key, &full, current).await;
                leader.finish(outcome);
            }
        }
    }
}
