//! The waiting room: fair, durable admission to a concert's booking at a ticket opening.
//!
//! The database holds the truth: one row per user and concert, ordered by a join sequence
//! the database hands out, so that order survives any restart and ties cannot happen. An
//! admission is decided in one database transaction that counts the concert's live
//! admissions and those of the last second, so instances running the admission step at the
//! same time cannot give one slot out twice or exceed the fleet-wide rate. A fast view of
//! the queue (in process, or in Redis for a fleet) answers polls without touching the
//! database, and is rebuilt from the rows whenever it is lost.

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};

use crate::error::RepositoryError;
use crate::ids::{ConcertId, UserId};

/// How a concert's queue admits users.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueRules {
    /// Admissions per second per concert, for the whole fleet together.
    pub admit_per_second: u32,
    /// The most users admitted (ACTIVE) at once per concert.
    pub active_limit: u32,
    /// How long an admission lasts; a payment ends it early.
    pub active_ttl: TimeDelta,
    /// A waiting user who has not polled for this long is dropped.
    pub idle_timeout: TimeDelta,
}

/// Where a user stands in a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueStatus {
    /// In line.
    Waiting,
    /// Admitted: may hold seats of the concert until `expires_at`.
    Active,
}

impl QueueStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "WAITING",
            Self::Active => "ACTIVE",
        }
    }
}

/// One user's place in one concert's queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEntry {
    pub concert: ConcertId,
    pub user: UserId,
    /// The join order, handed out by the database: admission is in increasing `seq`.
    pub seq: i64,
    pub status: QueueStatus,
    pub joined_at: DateTime<Utc>,
    /// When the user was admitted; `None` while waiting.
    pub admitted_at: Option<DateTime<Utc>>,
    /// When the admission runs out; `None` while waiting.
    pub expires_at: Option<DateTime<Utc>>,
    /// Users waiting ahead of this one (0 while active), as counted when the entry was read.
    pub ahead: u64,
}

impl QueueEntry {
    /// The 1-based position in line, or `None` while active.
    pub fn position(&self) -> Option<u64> {
        (self.status == QueueStatus::Waiting).then_some(self.ahead + 1)
    }
}

/// What one admission round changed in a concert's queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdmissionRound {
    /// Users admitted by this round, in join order.
    pub admitted: Vec<QueueEntry>,
    /// Admissions that ran out, now removed.
    pub expired: Vec<UserId>,
    /// Waiting users dropped for not polling within `idle_timeout`.
    pub dropped_idle: Vec<UserId>,
    /// Users waiting after the round.
    pub waiting: u64,
    /// Users active after the round.
    pub active: u64,
}

/// Why a queue operation was refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("concert {0} does not exist")]
    ConcertNotFound(ConcertId),
    #[error("you are not in the queue of concert {0}")]
    EntryNotFound(ConcertId),
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

/// The queue's durable truth.
#[async_trait]
pub trait QueueRepository: Send + Sync + 'static {
    /// Puts `user` in `concert`'s queue, or finds the entry already there (one place per
    /// user per concert; `true` when the entry is new). A new joiner is admitted at once
    /// when nobody waits ahead, a slot is free and the rate allows, so a quiet concert shows
    /// no queue. The entry's `ahead` is left 0: counting the line inside the join's write
    /// would scan it for every joiner; ask the view or [`QueueRepository::entry`].
    async fn join(
        &self,
        concert: ConcertId,
        user: UserId,
        rules: QueueRules,
    ) -> Result<(QueueEntry, bool), QueueError>;

    /// The user's entry with `ahead` counted, or `None` (also for an admission that ran
    /// out). Polls are answered by the view; this is for when the view cannot answer.
    async fn entry(
        &self,
        concert: ConcertId,
        user: UserId,
    ) -> Result<Option<QueueEntry>, QueueError>;

    /// Removes the user's entry, waiting or active (an active one frees its slot); `false`
    /// when there was none.
    async fn leave(&self, concert: ConcertId, user: UserId) -> Result<bool, QueueError>;

    /// One admission round for `concert`: removes admissions that ran out and the waiting
    /// users in `idle`, then admits the next in line, in join order, while the active limit
    /// and the rate (at most `admit_per_second` admissions in any second, fleet-wide) allow.
    /// Safe to run on every instance at once: the rows decide.
    async fn admit(
        &self,
        concert: ConcertId,
        rules: QueueRules,
        idle: Vec<UserId>,
    ) -> Result<AdmissionRound, QueueError>;

    /// The concerts whose queue has anyone in it.
    async fn open_queues(&self) -> Result<Vec<ConcertId>, QueueError>;

    /// Every entry of a concert's queue, in join order (`ahead` is left 0), for rebuilding
    /// the view.
    async fn snapshot(&self, concert: ConcertId) -> Result<Vec<QueueEntry>, QueueError>;
}
