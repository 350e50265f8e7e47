//! The waiting room: join, poll and leave a concert's queue, and the admission rounds that
//! let the next in line book.
//!
//! Two parts keep a queue. The database holds the truth ([`QueueRepository`]): the entries
//! in join order, every admission, and the rate gate; nothing is lost when Redis restarts.
//! The view ([`QueueView`], in process or in Redis) answers polls, the request a queue gets
//! most, without a database read and in at most one Redis round trip. Every change goes to
//! the database first and is then mirrored into the view; an admission round on each
//! instance rebuilds a view that was lost (a poll found it unknown) or that may have missed a
//! mirror (every [`RECONCILE_EVERY`]), so the view is never wrong for longer than that.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{HttpResponse, web};
use chrono::{DateTime, SubsecRound, Utc};
use marquee_domain::{
    ConcertId, QueueEntry, QueueError, QueueRepository, QueueRules, QueueStatus, UserId,
};
use marquee_queue::{Poll, QueueView};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::caller::Caller;
use crate::error::{
    ApiError, DatabaseBusyAnswer, InvalidIdAnswer, PROBLEM_JSON, Problem, UnauthorizedAnswer,
};

/// How often each instance runs an admission round for every open queue: a freed slot goes
/// to the next in line within a tenth of a second. Admissions are counted per one-second
/// window, so with free slots the first round of a second may admit that second's whole
/// budget at once; the count per window is exact, the spread within it is not.
pub const ROUND_EVERY: Duration = Duration::from_millis(100);

/// How often an instance rebuilds a queue's view from the database even when nothing says
/// it is wrong: the bound on how long a mirror write lost between the database and Redis (an
/// instance dying between the two) can show a user the wrong status. Not shorter: a rebuild
/// reads every row of the queue and, on Redis, writes and swaps the whole line, 160–170 ms
/// for 20,000 members on the 2-core test machine
/// (`cargo run --release -p marquee-queue --example rebuild`), beside every poll.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(30);

/// The longest `pollAfterSeconds` by default (`queue.max_poll_interval`).
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(5);

/// The waiting room's parts and rules.
pub struct WaitingRoom {
    pub rules: QueueRules,
    /// The longest wait between polls the room tells a client ([`MAX_POLL_INTERVAL`] unless
    /// set with [`WaitingRoom::max_poll_interval`]); a third of `idle_timeout` caps it.
    max_poll_interval: Duration,
    pub repository: Arc<dyn QueueRepository>,
    pub view: QueueView,
    /// When this instance last rebuilt each queue's view; a queue a poll found unknown is
    /// taken out so that the next round rebuilds it.
    rebuilt: Mutex<HashMap<ConcertId, Instant>>,
    /// Queues that had gauges last round, so that a queue that empties reads 0, not its
    /// last count.
    gauged: Mutex<HashSet<ConcertId>>,
}

impl std::fmt::Debug for WaitingRoom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitingRoom")
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

impl WaitingRoom {
    pub fn new(rules: QueueRules, repository: Arc<dyn QueueRepository>, view: QueueView) -> Self {
        Self {
            rules,
            max_poll_interval: MAX_POLL_INTERVAL,
            repository,
            view,
            rebuilt: Mutex::new(HashMap::new()),
            gauged: Mutex::new(HashSet::new()),
        }
    }

    /// The longest wait between polls to tell a client far back in line: with a line of
    /// `n` users and polls every `t` seconds, the line costs `n / t` polls a second, all on
    /// one Redis shard (a queue's keys share a hash tag). Longer waits carry longer lines.
    #[must_use]
    pub fn max_poll_interval(mut self, longest: Duration) -> Self {
        self.max_poll_interval = longest;
        self
    }

    /// Marks a queue's view for rebuilding in the next round.
    fn view_lost(&self, concert: ConcertId) {
        if let Ok(mut rebuilt) = self.rebuilt.lock() {
            rebuilt.remove(&concert);
        }
    }

    fn due_for_rebuild(&self, concert: ConcertId) -> bool {
        self.rebuilt.lock().map_or(true, |rebuilt| {
            rebuilt
                .get(&concert)
                .is_none_or(|at| at.elapsed() >= RECONCILE_EVERY)
        })
    }

    /// Mirrors an entry the database just wrote into the view. A failure is not the
    /// client's: the view is rebuilt in the next round, and polls ask the database meanwhile.
    async fn mirror(&self, entry: &QueueEntry) {
        let (queue, member) = ids(entry.concert, entry.user);
        let mirrored = match (entry.status, entry.expires_at) {
            (QueueStatus::Active, Some(expires)) => {
                self.view
                    .activate(queue, &[(member, expires.timestamp_millis())])
                    .await
            }
            _ => {
                self.view
                    .add_waiting(queue, member, entry.seq, now_ms())
                    .await
            }
        };
        if let Err(error) = mirrored {
            tracing::debug!(%error, concert = %entry.concert, "queue view not updated");
            self.view_lost(entry.concert);
        }
    }

    /// Ends `user`'s admission to `concert` in the view (the database ended it with the
    /// payment).
    pub async fn admission_used(&self, concert: ConcertId, user: UserId) {
        let (queue, member) = ids(concert, user);
        if let Err(error) = self.view.remove(queue, &[member]).await {
            tracing::debug!(%error, %concert, "queue view not updated");
            self.view_lost(concert);
        }
    }

    /// Seconds a client should wait before polling again: see [`poll_after`].
    fn poll_after(&self, status: QueueStatus, position: Option<u64>) -> u32 {
        poll_after(
            status,
            position,
            self.rules.admit_per_second,
            self.max_poll_interval,
            self.rules.idle_timeout,
        )
    }

    fn body(&self, entry: &QueueEntry) -> QueueEntryBody {
        self.answer(
            entry.concert,
            entry.status,
            entry.position(),
            entry.admitted_at,
            entry.expires_at,
        )
    }

    fn answer(
        &self,
        concert: ConcertId,
        status: QueueStatus,
        position: Option<u64>,
        admitted_at: Option<DateTime<Utc>>,
        expires_at: Option<DateTime<Utc>>,
    ) -> QueueEntryBody {
        QueueEntryBody {
            concert_id: concert.get(),
            status: status.as_str(),
            position,
            admitted_at,
            expires_at,
            poll_after_seconds: self.poll_after(status, position),
        }
    }
}

/// The view's ids for a concert's queue and one of its users. Ids are positive, so both fit.
fn ids(concert: ConcertId, user: UserId) -> (u64, u64) {
    (queue_id(concert), user.get().unsigned_abs())
}

fn queue_id(concert: ConcertId) -> u64 {
    concert.get().unsigned_abs()
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// A user's place in a concert's queue.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueEntryBody {
    pub concert_id: i64,
    /// `WAITING` or `ACTIVE`. Only an ACTIVE user may hold seats of the concert.
    #[schema(pattern = "^(WAITING|ACTIVE)$")]
    pub status: &'static str,
    /// 1-based: the users ahead, plus one. `null` while ACTIVE.
    #[schema(minimum = 1)]
    pub position: Option<u64>,
    /// When the user was admitted; `null` while WAITING.
    pub admitted_at: Option<DateTime<Utc>>,
    /// When the admission runs out (a payment ends it early); `null` while WAITING, and
    /// while the waiting room is off.
    pub expires_at: Option<DateTime<Utc>>,
    /// How long to wait before polling again.
    #[schema(minimum = 1)]
    pub poll_after_seconds: u32,
}

/// The answer while the waiting room is off, for a concert that exists: everyone is
/// admitted, and nothing is stored.
async fn open_door(
    state: &AppState,
    concert: ConcertId,
    answer: HttpResponse,
) -> Result<HttpResponse, ApiError> {
    if crate::catalogue::concert_exists(state, concert).await? {
        Ok(answer)
    } else {
        Err(ApiError::ConcertNotFound(concert))
    }
}

/// The entry every user has while the waiting room is off.
fn door(concert: ConcertId) -> QueueEntryBody {
    QueueEntryBody {
        concert_id: concert.get(),
        status: QueueStatus::Active.as_str(),
        position: None,
        admitted_at: Some(Utc::now().trunc_subsecs(3)),
        expires_at: None,
        poll_after_seconds: 5,
    }
}

impl From<QueueError> for ApiError {
    fn from(error: QueueError) -> Self {
        match error {
            QueueError::ConcertNotFound(concert) => Self::ConcertNotFound(concert),
            QueueError::EntryNotFound(concert) => Self::QueueEntryNotFound(concert),
            QueueError::Repository(error) => Self::Repository(error),
        }
    }
}

/// The `{concertId}` of a queue route, as written: [`Self::id`] parses it, so that a bad one
/// answers `invalid-id`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ConcertPath {
    #[serde(rename = "concertId")]
    #[param(value_type = i64, minimum = 1, maximum = 9223372036854775807_i64)]
    concert_id: String,
}

impl ConcertPath {
    fn id(&self) -> Result<ConcertId, ApiError> {
        ApiError::parse_id(&self.concert_id, "concertId")
    }
}

/// `concert-not-found` for a concert that does not exist, else `queue-entry-not-found`.
async fn not_in_queue(state: &AppState, concert: ConcertId) -> ApiError {
    match crate::catalogue::concert_exists(state, concert).await {
        Ok(true) => ApiError::QueueEntryNotFound(concert),
        Ok(false) => ApiError::ConcertNotFound(concert),
        Err(error) => error,
    }
}

/// Joins the concert's queue; joining again returns the same entry.
#[utoipa::path(post, path = "/api/v1/concerts/{concertId}/queue", tag = "queue", security(("bearer" = [])),
    params(ConcertPath),
    responses(
        (status = 201, description = "Joined: a new entry, ACTIVE at once when the concert is quiet", body = QueueEntryBody),
        (status = 200, description = "Already in the queue: the same entry (or, with the waiting room off, an open door)", body = QueueEntryBody),
        InvalidIdAnswer,
        UnauthorizedAnswer,
        (status = 404, description = "`concert-not-found`", body = Problem, content_type = PROBLEM_JSON),
        DatabaseBusyAnswer,
    ))]
pub async fn join(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<ConcertPath>,
) -> Result<HttpResponse, ApiError> {
    let concert = path.id()?;
    let Some(room) = &state.queue else {
        return open_door(&state, concert, HttpResponse::Ok().json(door(concert))).await;
    };
    let (mut entry, new) = room.repository.join(concert, caller.0, room.rules).await?;
    if new {
        room.mirror(&entry).await;
        if entry.status == QueueStatus::Active {
            metrics::counter!(ADMITTED).increment(1);
        }
    }
    if entry.status == QueueStatus::Waiting {
        // The join does not count the line (see `QueueRepository::join`): the view gives
        // the position in one lookup, and the database only when the view cannot.
        let (queue, member) = ids(concert, caller.0);
        match room.view.poll(queue, member, now_ms()).await {
            Ok(Poll::Waiting { position }) => entry.ahead = position.saturating_sub(1),
            _ => {
                if let Some(counted) = room.repository.entry(concert, caller.0).await? {
                    entry = counted;
                }
            }
        }
    }
    let body = room.body(&entry);
    Ok(if new {
        HttpResponse::Created().json(body)
    } else {
        HttpResponse::Ok().json(body)
    })
}

/// The caller's entry: its status and position. Answered from the queue's view, without a
/// database read, whenever the view can.
#[utoipa::path(get, path = "/api/v1/concerts/{concertId}/queue", tag = "queue", security(("bearer" = [])),
    params(ConcertPath),
    responses(
        (status = 200, description = "The entry", body = QueueEntryBody),
        InvalidIdAnswer,
        UnauthorizedAnswer,
        (status = 404, description = "`queue-entry-not-found` (not in the queue, or the admission ran out), `concert-not-found`", body = Problem, content_type = PROBLEM_JSON),
        DatabaseBusyAnswer,
    ))]
pub async fn poll(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<ConcertPath>,
) -> Result<HttpResponse, ApiError> {
    let concert = path.id()?;
    let Some(room) = &state.queue else {
        return open_door(&state, concert, HttpResponse::Ok().json(door(concert))).await;
    };
    let (queue, member) = ids(concert, caller.0);
    let seen = room.view.poll(queue, member, now_ms()).await;
    let body = match seen {
        Ok(Poll::Waiting { position }) => {
            room.answer(concert, QueueStatus::Waiting, Some(position), None, None)
        }
        Ok(Poll::Active { expires_ms }) => {
            let expires_at = DateTime::from_timestamp_millis(expires_ms);
            // The view keeps only the expiry; an admission lasts `active_ttl` from its start.
            let admitted_at =
                expires_at.and_then(|at| at.checked_sub_signed(room.rules.active_ttl));
            room.answer(concert, QueueStatus::Active, None, admitted_at, expires_at)
        }
        // The view cannot answer (lost in a Redis restart, or Redis is down), or does not
        // know the user, which a join that raced a rebuild can cause: the database decides,
        // and a view that missed an entry is rebuilt in the next round. The cost falls on
        // polls of users who are not in the queue, which well-behaved clients do not send.
        Ok(Poll::Absent | Poll::Unknown) | Err(_) => {
            if let Err(error) = &seen {
                tracing::debug!(%error, %concert, "queue view unavailable; asking the database");
            }
            match room.repository.entry(concert, caller.0).await? {
                Some(entry) => {
                    if matches!(seen, Ok(Poll::Absent)) {
                        // The view is there but missed this entry: put it in, so that the
                        // next poll is answered by the view. A whole rebuild for one entry
                        // would cost a read of every row while the line is at its longest.
                        room.mirror(&entry).await;
                    } else {
                        room.view_lost(concert);
                    }
                    room.body(&entry)
                }
                None => {
                    if !matches!(seen, Ok(Poll::Absent)) {
                        room.view_lost(concert);
                    }
                    return Err(not_in_queue(&state, concert).await);
                }
            }
        }
    };
    Ok(HttpResponse::Ok().json(body))
}

/// Leaves the concert's queue, waiting or admitted (an admission's slot goes to the next in
/// line).
#[utoipa::path(delete, path = "/api/v1/concerts/{concertId}/queue", tag = "queue", security(("bearer" = [])),
    params(ConcertPath),
    responses(
        (status = 204, description = "Left"),
        InvalidIdAnswer,
        UnauthorizedAnswer,
        (status = 404, description = "`queue-entry-not-found`, `concert-not-found`", body = Problem, content_type = PROBLEM_JSON),
        DatabaseBusyAnswer,
    ))]
pub async fn leave(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<ConcertPath>,
) -> Result<HttpResponse, ApiError> {
    let concert = path.id()?;
    let Some(room) = &state.queue else {
        return open_door(&state, concert, HttpResponse::NoContent().finish()).await;
    };
    if !room.repository.leave(concert, caller.0).await? {
        return Err(not_in_queue(&state, concert).await);
    }
    metrics::counter!(DROPPED, "reason" => "left").increment(1);
    room.admission_used(concert, caller.0).await;
    Ok(HttpResponse::NoContent().finish())
}

/// One admission round over every open queue: rebuilds views that are lost or due, drops
/// idle waiters and run-out admissions, admits the next in line, mirrors it all into the
/// view, and sets the gauges. Every instance runs rounds; the database keeps them from
/// admitting beyond the limits together.
pub async fn admission_round(room: &WaitingRoom) -> Result<(), QueueError> {
    let concerts = room.repository.open_queues().await?;
    let open: HashSet<ConcertId> = concerts.iter().copied().collect();
    // A queue whose round fails (a lock held elsewhere, say) must not hold up the others:
    // each goes on, and the first failure is reported after all had their turn.
    let mut failed = None;
    for concert in concerts {
        if let Err(error) = concert_round(room, concert).await {
            failed.get_or_insert(error);
        }
    }
    if let Ok(mut rebuilt) = room.rebuilt.lock() {
        rebuilt.retain(|concert, _| open.contains(concert));
    }
    if let Ok(mut gauged) = room.gauged.lock() {
        for closed in gauged.difference(&open) {
            let label = closed.to_string();
            metrics::gauge!(WAITING, "concert" => label.clone()).set(0.0);
            metrics::gauge!(ACTIVE, "concert" => label).set(0.0);
        }
        *gauged = open;
    }
    failed.map_or(Ok(()), Err)
}

/// One concert's part of an admission round.
async fn concert_round(room: &WaitingRoom, concert: ConcertId) -> Result<(), QueueError> {
    let queue = queue_id(concert);
    if room.due_for_rebuild(concert) {
        rebuild(room, concert).await?;
    }
    let idle_since = Utc::now() - room.rules.idle_timeout;
    let idle = match room.view.idle(queue, idle_since.timestamp_millis()).await {
        Ok(members) => members
            .into_iter()
            .filter_map(|member| UserId::new(i64::try_from(member).ok()?).ok())
            .collect(),
        // Without the view nobody's last poll is known: nobody is dropped.
        Err(_) => Vec::new(),
    };
    let round = room.repository.admit(concert, room.rules, idle).await?;
    let gone: Vec<u64> = round
        .expired
        .iter()
        .chain(&round.dropped_idle)
        .map(|user| ids(concert, *user).1)
        .collect();
    let admitted: Vec<(u64, i64)> = round
        .admitted
        .iter()
        .filter_map(|entry| {
            Some((
                ids(concert, entry.user).1,
                entry.expires_at?.timestamp_millis(),
            ))
        })
        .collect();
    let mirrored = async {
        if !gone.is_empty() {
            room.view.remove(queue, &gone).await?;
        }
        if !admitted.is_empty() {
            room.view.activate(queue, &admitted).await?;
        }
        Ok::<_, marquee_queue::ViewError>(())
    };
    if mirrored.await.is_err() {
        room.view_lost(concert);
    }
    metrics::counter!(ADMITTED).increment(round.admitted.len() as u64);
    metrics::counter!(DROPPED, "reason" => "idle").increment(round.dropped_idle.len() as u64);
    metrics::counter!(DROPPED, "reason" => "expired").increment(round.expired.len() as u64);
    let label = concert.to_string();
    metrics::gauge!(WAITING, "concert" => label.clone()).set(round.waiting as f64);
    metrics::gauge!(ACTIVE, "concert" => label).set(round.active as f64);
    Ok(())
}

/// Replaces a queue's view with the database's rows.
async fn rebuild(room: &WaitingRoom, concert: ConcertId) -> Result<(), QueueError> {
    let entries = room.repository.snapshot(concert).await?;
    let now = Utc::now();
    let mut waiting = Vec::new();
    let mut active = Vec::new();
    for entry in &entries {
        let member = ids(concert, entry.user).1;
        match (entry.status, entry.expires_at) {
            (QueueStatus::Active, Some(expires)) if expires > now => {
                active.push((member, expires.timestamp_millis()));
            }
            (QueueStatus::Waiting, _) => waiting.push((member, entry.seq)),
            _ => {}
        }
    }
    let queue = queue_id(concert);
    match room
        .view
        .rebuild(queue, &waiting, &active, now.timestamp_millis())
        .await
    {
        Ok(()) => {
            if let Ok(mut rebuilt) = room.rebuilt.lock() {
                rebuilt.insert(concert, Instant::now());
            }
        }
        Err(error) => tracing::debug!(%error, %concert, "queue view not rebuilt"),
    }
    Ok(())
}

/// Seconds a client should wait before polling again: 1 s within a second's admissions of
/// the front, then one more second for each second's admissions ahead, up to `longest`
/// further back, where a poll can only say the line moved (a line of 20,000 polled every 5 s
/// is 4,000 polls a second). Never more than a third of `idle_timeout`, so that a client that
/// polls as told is not dropped as idle when a poll or two is lost; never less than 1 s.
fn poll_after(
    status: QueueStatus,
    position: Option<u64>,
    admit_per_second: u32,
    longest: Duration,
    idle_timeout: chrono::TimeDelta,
) -> u32 {
    let third = u64::try_from(idle_timeout.num_seconds() / 3).unwrap_or(1);
    let longest = longest.as_secs().min(third).max(1);
    let seconds = match (status, position) {
        (QueueStatus::Waiting, Some(position)) => position / u64::from(admit_per_second.max(1)),
        _ => longest,
    };
    u32::try_from(seconds.clamp(1, longest)).unwrap_or(u32::MAX)
}

/// Users waiting in a concert's queue.
pub const WAITING: &str = "marquee_queue_waiting";
/// Users admitted to a concert now.
pub const ACTIVE: &str = "marquee_queue_active";
/// Admissions given, by joins on a quiet concert and by rounds.
pub const ADMITTED: &str = "marquee_queue_admitted_total";
/// Entries removed without being used, by `reason`: `idle`, `left`, `expired`.
pub const DROPPED: &str = "marquee_queue_dropped_total";

/// Describes the queue's metrics and registers the counters at zero, so that dashboards and
/// alerts see them before the first ticket opening.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge};
    describe_gauge!(WAITING, "Users waiting in a concert's queue.");
    describe_gauge!(ACTIVE, "Users admitted to book a concert now.");
    describe_counter!(ADMITTED, "Admissions to book, given by the waiting room.");
    describe_counter!(
        DROPPED,
        "Queue entries removed without booking, by reason (idle, left, expired)."
    );
    metrics::counter!(ADMITTED).increment(0);
    for reason in ["idle", "left", "expired"] {
        metrics::counter!(DROPPED, "reason" => reason).increment(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(position: Option<u64>, longest: u64, idle: i64) -> u32 {
        let status = if position.is_some() {
            QueueStatus::Waiting
        } else {
            QueueStatus::Active
        };
        poll_after(
            status,
            position,
            100,
            Duration::from_secs(longest),
            chrono::TimeDelta::seconds(idle),
        )
    }

    #[test]
    fn the_front_polls_every_second_and_the_back_as_long_as_allowed() {
        assert_eq!(after(Some(1), 5, 30), 1);
        assert_eq!(after(Some(350), 5, 30), 3);
        assert_eq!(after(Some(20_000), 5, 30), 5);
        assert_eq!(
            after(None, 5, 30),
            5,
            "an admitted user polls at the longest"
        );
        // A longer interval for a long line, within a third of the idle timeout.
        assert_eq!(after(Some(1_000_000), 40, 180), 40);
        assert_eq!(after(Some(1_000_000), 40, 90), 30);
        assert_eq!(after(Some(1_000_000), 40, 3), 1);
        assert_eq!(after(Some(1_000_000), 0, 30), 1, "never less than a second");
    }
}
