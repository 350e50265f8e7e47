//! The in-process tier (moka): the whole cache in the embedded default, and a short-lived
//! L1 in front of Redis otherwise.

use std::time::{Duration, Instant};

use moka::Expiry;

use crate::entry::Entry;

/// An entry and how long this tier keeps it.
#[derive(Debug, Clone)]
struct Held {
    entry: Entry,
    hold: Duration,
}

struct HoldFor;

impl Expiry<String, Held> for HoldFor {
    fn expire_after_create(&self, _key: &String, held: &Held, _now: Instant) -> Option<Duration> {
        Some(held.hold)
    }

    fn expire_after_update(
        &self,
        _key: &String,
        held: &Held,
        _now: Instant,
        _remaining: Option<Duration>,
    ) -> Option<Duration> {
        Some(held.hold)
    }
}

#[derive(Clone)]
pub(crate) struct LocalTier {
    entries: moka::sync::Cache<String, Held>,
}

impl std::fmt::Debug for LocalTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalTier")
            .field("entries", &self.entries.entry_count())
            .finish()
    }
}

impl LocalTier {
    pub fn new(capacity: u64) -> Self {
        Self {
            entries: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .expire_after(HoldFor)
                .build(),
        }
    }

    pub fn get(&self, key: &str) -> Option<Entry> {
        self.entries.get(key).map(|held| held.entry)
    }

    /// Keeps `entry` for `hold` (not for the entry's own TTL: the L1 of a two-tier cache
    /// holds entries for a short time only).
    pub fn insert(&self, key: &str, entry: Entry, hold: Duration) {
        if !hold.is_zero() {
            self.entries.insert(key.to_owned(), Held { entry, hold });
        }
    }

    pub fn remove(&self, key: &str) {
        self.entries.invalidate(key);
    }

    pub fn clear(&self) {
        self.entries.invalidate_all();
    }
}
