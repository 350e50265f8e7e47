//! The in-process tier (moka): the whole cache in the embedded default, and a short-lived
//! L1 in front of Redis otherwise.
//!
//! Besides entries it keeps invalidation marks, so that an insert made from data read
//! before an invalidation cannot bring the old value back. Every invalidation takes the
//! next number of a sequence and marks its key with it; a [`Ticket`] is the sequence's
//! value when a read of the data began; an insert with a ticket is dropped if the key was
//! marked after it. docs/cache.md ("Generations") has the whole scheme.

use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::notification::RemovalCause;

use crate::entry::Entry;

/// A value of any group: the tier is shared by every group of a cache, each of which
/// keeps values of its own type, and takes them back out with a downcast. Keys never
/// collide between groups (each has its own prefix), so a downcast only fails for two
/// groups given one name.
pub(crate) type Erased = Arc<dyn Any + Send + Sync>;

/// An entry and how long this tier keeps it.
#[derive(Clone)]
struct Held {
    entry: Entry<Erased>,
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

/// The sequence number of a key's latest invalidation, and how long it is remembered.
#[derive(Debug, Clone, Copy)]
struct Mark {
    sequence: u64,
    life: Duration,
}

struct MarkLife;

impl Expiry<String, Mark> for MarkLife {
    fn expire_after_create(&self, _key: &String, mark: &Mark, _now: Instant) -> Option<Duration> {
        Some(mark.life)
    }

    fn expire_after_update(
        &self,
        _key: &String,
        mark: &Mark,
        _now: Instant,
        _remaining: Option<Duration>,
    ) -> Option<Duration> {
        Some(mark.life)
    }
}

/// Where the invalidation sequence stood when a read of the data began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket(u64);

#[derive(Debug, Default)]
struct Sequence {
    /// The number of the latest invalidation.
    latest: AtomicU64,
    /// Tickets up to this one are refused: set by `clear`, and when a mark is dropped for
    /// room before its time (a lost mark must refuse, never admit, what it guarded).
    refused_up_to: AtomicU64,
    /// How long a mark is kept: the longest any group asked for.
    mark_life_ms: AtomicU64,
}

#[derive(Clone)]
pub(crate) struct LocalTier {
    entries: moka::sync::Cache<String, Held>,
    /// Values an eviction took out, kept for the group's stale grace: what a load that fails
    /// right after a write may serve instead of an error (never a hit).
    retired: moka::sync::Cache<String, Held>,
    marks: moka::sync::Cache<String, Mark>,
    sequence: Arc<Sequence>,
    /// Taken by every write (insert, invalidation, clear), never by a read: an insert
    /// checks the marks and then inserts, and an invalidation landing between the two
    /// would be undone.
    writes: Arc<Mutex<()>>,
}

impl std::fmt::Debug for LocalTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalTier")
            .field("entries", &self.entries.entry_count())
            .field("marks", &self.marks.entry_count())
            .finish()
    }
}

impl LocalTier {
    /// A tier of at most `capacity` entries, and as many marks.
    pub fn new(capacity: u64) -> Self {
        let sequence = Arc::new(Sequence::default());
        let marks = {
            let sequence = sequence.clone();
            moka::sync::Cache::builder()
                .max_capacity(capacity)
                .expire_after(MarkLife)
                .eviction_listener(move |_key, mark: Mark, cause| {
                    if cause == RemovalCause::Size {
                        sequence
                            .refused_up_to
                            .fetch_max(mark.sequence, Ordering::SeqCst);
                    }
                })
                .build()
        };
        let held = || {
            moka::sync::Cache::builder()
                .max_capacity(capacity)
                .expire_after(HoldFor)
                .build()
        };
        Self {
            entries: held(),
            retired: held(),
            marks,
            sequence,
            writes: Arc::new(Mutex::new(())),
        }
    }

    pub fn get(&self, key: &str) -> Option<Entry<Erased>> {
        self.entries.get(key).map(|held| held.entry)
    }

    /// Take it before reading the data that an insert will be made from.
    pub fn ticket(&self) -> Ticket {
        Ticket(self.sequence.latest.load(Ordering::SeqCst))
    }

    /// Keeps marks for at least `life` from now on (the longest any caller asks for).
    pub fn keep_marks_for(&self, life: Duration) {
        let life_ms = u64::try_from(life.as_millis()).unwrap_or(u64::MAX);
        self.sequence
            .mark_life_ms
            .fetch_max(life_ms, Ordering::SeqCst);
    }

    /// Keeps `entry` for `hold` (not for the entry's own TTL: the L1 of a two-tier cache
    /// holds entries for a short time only), unless `key` was invalidated or the tier
    /// cleared since `ticket` was taken. `false` if it was not kept for that reason.
    ///
    /// A caller must not hold a ticket for longer than marks live (it checks its age):
    /// after that the mark that would refuse it may be gone.
    pub fn insert(&self, key: &str, entry: Entry<Erased>, hold: Duration, ticket: Ticket) -> bool {
        let _writes = self.lock_writes();
        if self.invalidated_since(key, ticket) {
            return false;
        }
        self.keep(key, entry, hold);
        true
    }

    /// Drops `key`'s entry and marks the key, so that inserts with earlier tickets are
    /// refused. Another instance's eviction, told by Redis (whose retired copy serves then).
    #[cfg_attr(
        all(not(feature = "redis"), not(test)),
        expect(dead_code, reason = "only Redis tells of other instances' evictions")
    )]
    pub fn invalidate(&self, key: &str) {
        let _writes = self.lock_writes();
        self.mark(key);
    }

    /// [`Self::invalidate`], keeping the entry it drops, if it holds a value, as `key`'s
    /// retired entry for `keep` (nothing is kept for a zero `keep`).
    pub fn invalidate_and_retire(&self, key: &str, keep: Duration) {
        let _writes = self.lock_writes();
        let dropped = self.entries.get(key);
        self.mark(key);
        if let Some(held) = dropped.filter(|held| held.entry.value.is_some() && !keep.is_zero()) {
            self.retired.insert(
                key.to_owned(),
                Held {
                    entry: held.entry,
                    hold: keep,
                },
            );
        }
    }

    /// The entry an eviction of `key` retired, while it is kept.
    pub fn retired(&self, key: &str) -> Option<Entry<Erased>> {
        self.retired.get(key).map(|held| held.entry)
    }

    /// Invalidates `key` and keeps `entry` in its place, in one write: an insert with an
    /// earlier ticket cannot land between the two.
    pub fn replace(&self, key: &str, entry: Entry<Erased>, hold: Duration) {
        let _writes = self.lock_writes();
        self.mark(key);
        self.keep(key, entry, hold);
    }

    /// Drops every entry, and refuses every ticket taken before.
    pub fn clear(&self) {
        let _writes = self.lock_writes();
        let sequence = self.sequence.latest.fetch_add(1, Ordering::SeqCst) + 1;
        self.sequence
            .refused_up_to
            .fetch_max(sequence, Ordering::SeqCst);
        self.entries.invalidate_all();
    }

    /// How many entries the tier holds now.
    pub fn entry_count(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.entry_count()
    }

    fn keep(&self, key: &str, entry: Entry<Erased>, hold: Duration) {
        if !hold.is_zero() {
            self.entries.insert(key.to_owned(), Held { entry, hold });
        }
    }

    fn mark(&self, key: &str) {
        let sequence = self.sequence.latest.fetch_add(1, Ordering::SeqCst) + 1;
        let life = Duration::from_millis(self.sequence.mark_life_ms.load(Ordering::SeqCst));
        self.marks.insert(key.to_owned(), Mark { sequence, life });
        self.entries.invalidate(key);
    }

    fn invalidated_since(&self, key: &str, ticket: Ticket) -> bool {
        self.sequence.refused_up_to.load(Ordering::SeqCst) > ticket.0
            || self
                .marks
                .get(key)
                .is_some_and(|mark| mark.sequence > ticket.0)
    }

    fn lock_writes(&self) -> MutexGuard<'_, ()> {
        match self.writes.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(value: &'static str) -> Entry<Erased> {
        Entry::new(
            Some(Arc::new(value) as Erased),
            Duration::from_secs(60),
            Duration::ZERO,
            crate::entry::now_ms(),
        )
    }

    fn tier() -> LocalTier {
        let tier = LocalTier::new(100);
        tier.keep_marks_for(Duration::from_secs(60));
        tier
    }

    fn value(tier: &LocalTier, key: &str) -> Option<&'static str> {
        tier.get(key)
            .and_then(|entry| entry.value)
            .and_then(|value| value.downcast_ref::<&'static str>().copied())
    }

    const HOLD: Duration = Duration::from_secs(60);

    #[test]
    fn an_insert_read_before_an_invalidation_is_refused() {
        let tier = tier();
        let before = tier.ticket();
        tier.invalidate("k");
        assert!(!tier.insert("k", entry("old"), HOLD, before));
        assert!(tier.get("k").is_none());

        let after = tier.ticket();
        assert!(tier.insert("k", entry("new"), HOLD, after));
        assert_eq!(value(&tier, "k"), Some("new"));
    }

    #[test]
    fn marks_are_per_key() {
        let tier = tier();
        let before = tier.ticket();
        tier.invalidate("other");
        assert!(tier.insert("k", entry("v"), HOLD, before));
    }

    #[test]
    fn a_replacement_is_not_overwritten_by_an_earlier_read() {
        let tier = tier();
        let before = tier.ticket();
        tier.replace("k", entry("new"), HOLD);
        assert!(!tier.insert("k", entry("old"), HOLD, before));
        assert_eq!(value(&tier, "k"), Some("new"));
    }

    #[test]
    fn clearing_refuses_every_earlier_ticket() {
        let tier = tier();
        let before = tier.ticket();
        tier.clear();
        assert!(!tier.insert("k", entry("old"), HOLD, before));
        assert!(tier.insert("k", entry("new"), HOLD, tier.ticket()));
    }

    #[test]
    fn a_mark_dropped_for_room_refuses_what_it_guarded() {
        let tier = LocalTier::new(1);
        tier.keep_marks_for(Duration::from_secs(60));
        let before = tier.ticket();
        for key in 0..50 {
            tier.invalidate(&format!("k{key}"));
        }
        tier.marks.run_pending_tasks();
        assert!(tier.marks.entry_count() <= 1);
        for key in 0..50 {
            assert!(!tier.insert(&format!("k{key}"), entry("old"), HOLD, before));
        }
    }
}
