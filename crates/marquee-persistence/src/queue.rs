//! [`DieselQueue`]: the waiting room's durable truth on the database.
//!
//! One `queue_entries` row per user and concert, in the order of `seq`, a number the
//! database hands out at the insert and never reuses. `UNIQUE (concert_id, user_id)` makes
//! one place per user whatever the retries: a second join finds the first one's row.
//!
//! Every admission decision of a concert, whether a join admitted at once or an admission
//! round, is taken in one write transaction that first locks the concert's `queue_gates`
//! row (`SELECT ... FOR UPDATE` on PostgreSQL; on SQLite the immediate transaction already
//! holds the database's one write lock), then takes the time, then counts the live
//! admissions and the admissions of the current one-second window that the gate row
//! records. Instances deciding at once therefore decide one after the other, each seeing the
//! last one's admissions, and together never exceed `active_limit` or `admit_per_second`.
//!
//! Joins take the gate too, so that the order of `seq` is the order admissions see: a join
//! that may be admitted at once (nobody was waiting) takes it exclusively; a join behind a
//! line can never be admitted at once, and takes it shared, so such joins run side by side
//! and only wait for an admission decision in progress. Every `seq` is handed out under the
//! gate, so when an admission holds it every smaller `seq` is committed and visible: nobody
//! can be admitted ahead of an earlier joiner whose insert had not committed yet.
//!
//! Joins are written in batches, as a database groups commits: the first join to arrive
//! while none is being written starts a writer task, which writes every join waiting at that
//! moment in one transaction (up to [`JOINS_PER_BATCH`]), then the ones that arrived
//! meanwhile, until none is left. At a ticket opening joins arrive by the thousand a second;
//! one transaction each would hold a pool connection and a commit per join, and queue the
//! bookings behind them. Behind a line, a batch's joins of one concert are one multi-row
//! insert in arrival order; on a quiet concert each is decided in turn, inside the batch's
//! transaction, as it would be alone.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{NaiveDateTime, SubsecRound};
use diesel::prelude::*;
use marquee_domain::{
    AdmissionRound, ConcertId, QueueEntry, QueueError, QueueRepository, QueueRules, UserId,
};

use crate::abort::corrupt_row;
use crate::booking::decision_time;
use crate::connection::{DbConnection, on_concrete_connection, write_transaction};
use crate::error::PersistenceError;
use crate::pool::DbPool;
use crate::schema::{concerts, queue_entries, queue_gates};
use crate::status::QueueEntryState;
use tokio::sync::oneshot;

/// The waiting room's rows through a [`DbPool`].
#[derive(Debug, Clone)]
pub struct DieselQueue {
    pool: DbPool,
    joins: Arc<JoinBatches>,
}

/// The most joins written in one transaction: large enough that a thousand joins a second
/// take a handful of transactions, small enough that one batch's statements stay short.
pub const JOINS_PER_BATCH: usize = 256;

/// A join's request, as a batch writes it.
#[derive(Debug, Clone, Copy)]
struct Join {
    concert: ConcertId,
    user: UserId,
    rules: QueueRules,
}

type JoinAnswer = Result<(QueueEntry, bool), QueueError>;

/// A join waiting to be written, and where its answer goes.
#[derive(Debug)]
struct PendingJoin {
    join: Join,
    answer: oneshot::Sender<JoinAnswer>,
}

/// The joins waiting for the writer, and whether a writer task is running.
#[derive(Debug, Default)]
struct JoinBatches {
    state: Mutex<BatchState>,
}

#[derive(Debug, Default)]
struct BatchState {
    pending: Vec<PendingJoin>,
    writing: bool,
}

impl JoinBatches {
    /// Queues a join; `true` when no writer is running and the caller must start one.
    fn push(&self, pending: PendingJoin) -> bool {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.pending.push(pending);
        !std::mem::replace(&mut state.writing, true)
    }

    /// The next batch, in arrival order; `None` (and the writer is done) when none waits.
    fn next_batch(&self) -> Option<Vec<PendingJoin>> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if state.pending.is_empty() {
            state.writing = false;
            return None;
        }
        let take = state.pending.len().min(JOINS_PER_BATCH);
        Some(state.pending.drain(..take).collect())
    }
}

/// The writer task's claim on [`BatchState::writing`]. A writer that ends without having
/// found the queue empty (its task was dropped as the runtime shut down) gives the claim up
/// and drops the joins still waiting, whose callers then get an error instead of waiting
/// for a writer that will never come.
struct Writer {
    joins: Arc<JoinBatches>,
    finished: bool,
}

impl Drop for Writer {
    fn drop(&mut self) {
        if !self.finished {
            let mut state = self.joins.state.lock().unwrap_or_else(|p| p.into_inner());
            state.writing = false;
            state.pending.clear();
        }
    }
}

impl DieselQueue {
    pub fn new(pool: DbPool) -> Self {
        Self {
            pool,
            joins: Arc::default(),
        }
    }

    /// Writes the waiting joins, batch after batch, until none is left.
    async fn write_joins(self) {
        let mut writer = Writer {
            joins: Arc::clone(&self.joins),
            finished: false,
        };
        while let Some(batch) = self.joins.next_batch() {
            let joins: Vec<Join> = batch.iter().map(|pending| pending.join).collect();
            let written = self
                .run(move |conn| write_transaction!(conn, |c| join_batch_in(c, &joins)))
                .await;
            match written {
                Ok(answers) => {
                    for (pending, answer) in batch.into_iter().zip(answers) {
                        // A caller that gave up (its request was cancelled) is not waiting.
                        let _ = pending.answer.send(answer);
                    }
                }
                Err(error) => {
                    for pending in batch {
                        let _ = pending.answer.send(Err(error.clone()));
                    }
                }
            }
        }
        writer.finished = true;
    }

    /// Runs `work` on a pooled connection; a refusal it returns is the caller's answer, a
    /// database error a `QueueError::Repository`.
    async fn run<T, F>(&self, work: F) -> Result<T, QueueError>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, Abort> + Send + 'static,
        T: Send + 'static,
    {
        self.pool.run_as(work).await.map_err(|abort| match abort {
            Abort::Refused(refusal) => refusal,
            Abort::Database(error) => QueueError::Repository(PersistenceError::Query(error).into()),
            Abort::Pool(error) => QueueError::Repository(PersistenceError::Pool(error).into()),
        })
    }
}

/// A queue operation's way out.
type Abort = crate::abort::Abort<QueueError>;

#[derive(Queryable, Selectable, Debug)]
#[diesel(table_name = queue_entries)]
struct EntryRow {
    seq: i64,
    concert_id: i64,
    user_id: i64,
    status: QueueEntryState,
    joined_at: NaiveDateTime,
    admitted_at: Option<NaiveDateTime>,
    expires_at: Option<NaiveDateTime>,
}

impl EntryRow {
    fn is_waiting(&self) -> bool {
        self.status == QueueEntryState::Waiting
    }

    /// Waiting, or admitted and not run out at `now`. An admission that ran out counts as
    /// gone, before any round removes its row.
    fn is_live(&self, now: NaiveDateTime) -> bool {
        self.is_waiting() || self.expires_at.is_some_and(|until| until > now)
    }

    fn into_domain(self, ahead: u64) -> QueryResult<QueueEntry> {
        Ok(QueueEntry {
            concert: ConcertId::new(self.concert_id).map_err(|e| corrupt_row(e.to_string()))?,
            user: user_id(self.user_id)?,
            seq: self.seq,
            status: self.status.into(),
            joined_at: self.joined_at.and_utc(),
            admitted_at: self.admitted_at.map(|at| at.and_utc()),
            expires_at: self.expires_at.map(|at| at.and_utc()),
            ahead,
        })
    }
}

fn user_id(id: i64) -> QueryResult<UserId> {
    UserId::new(id).map_err(|e| corrupt_row(e.to_string()))
}

fn count(rows: i64) -> u64 {
    u64::try_from(rows).unwrap_or(0)
}

/// A concert's rate limiter: the admissions given in the one-second window that starts at
/// `window_start`.
#[derive(Queryable, QueryableByName, Selectable, Debug, Clone, Copy)]
#[diesel(table_name = queue_gates)]
struct Gate {
    window_start: NaiveDateTime,
    admitted: i32,
}

impl Gate {
    /// The window `now` falls in, and the admissions already given in it. Fixed windows of
    /// whole seconds need one row and no history: a sliding window would have to keep every
    /// admission time of the last second.
    fn window(self, now: NaiveDateTime) -> (NaiveDateTime, u32) {
        let current = now.trunc_subsecs(0);
        if self.window_start >= current {
            // The same window; or one ahead of this instance's clock, which another
            // instance opened, and whose count must not be ignored.
            (self.window_start, u32::try_from(self.admitted).unwrap_or(0))
        } else {
            (current, 0)
        }
    }
}

/// How a transaction holds the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GateLock {
    /// Joins that stay waiting, side by side.
    Shared,
    /// Admission decisions, one at a time.
    Exclusive,
}

/// The gate's lock, the one statement whose form differs between the backends.
trait GateLocks {
    /// Reads the concert's gate row (which must exist), locked as `mode` says until the
    /// transaction ends.
    fn lock_gate(&mut self, concert: i64, mode: GateLock) -> QueryResult<Gate>;
}

impl GateLocks for diesel::PgConnection {
    fn lock_gate(&mut self, concert: i64, mode: GateLock) -> QueryResult<Gate> {
        let gate = queue_gates::table.find(concert).select(Gate::as_select());
        match mode {
            GateLock::Exclusive => gate.for_update().first(self),
            GateLock::Shared => gate.for_share().first(self),
        }
    }
}

impl GateLocks for diesel::MysqlConnection {
    fn lock_gate(&mut self, concert: i64, mode: GateLock) -> QueryResult<Gate> {
        match mode {
            GateLock::Exclusive => queue_gates::table
                .find(concert)
                .select(Gate::as_select())
                .for_update()
                .first(self),
            // MariaDB has no `FOR SHARE` (diesel's form): the older spelling, which MySQL 8
            // still takes.
            GateLock::Shared => diesel::sql_query(
                "SELECT window_start, admitted FROM queue_gates WHERE concert_id = ? \
                 LOCK IN SHARE MODE",
            )
            .bind::<diesel::sql_types::BigInt, _>(concert)
            .get_result(self),
        }
    }
}

impl GateLocks for diesel::SqliteConnection {
    fn lock_gate(&mut self, concert: i64, _mode: GateLock) -> QueryResult<Gate> {
        // The immediate transaction holds the write lock: nothing else runs until it ends.
        queue_gates::table
            .find(concert)
            .select(Gate::as_select())
            .first(self)
    }
}

/// The statements the queue's transactions are made of, written once and compiled for each
/// concrete connection (the transactions run on those, see `write_transaction!`).
trait QueueStatements: GateLocks {
    fn concert_exists(&mut self, concert: i64) -> QueryResult<bool>;
    /// Creates the concert's gate row if it has none.
    fn ensure_gate(&mut self, concert: i64, now: NaiveDateTime) -> QueryResult<()>;
    fn anyone_waiting(&mut self, concert: i64) -> QueryResult<bool>;
    fn find_entry(&mut self, concert: i64, user: i64) -> QueryResult<Option<EntryRow>>;
    /// Inserts a waiting entry; `None` if the user has one already.
    fn insert_waiting(
        &mut self,
        concert: i64,
        user: i64,
        now: NaiveDateTime,
    ) -> QueryResult<Option<EntryRow>>;
    /// Inserts waiting entries for `users`, in that order, skipping the users who have one
    /// already; returns the inserted rows in `seq` order.
    fn insert_waiting_many(
        &mut self,
        concert: i64,
        users: &[i64],
        now: NaiveDateTime,
    ) -> QueryResult<Vec<EntryRow>>;
    /// The entries of `users` in the concert's queue.
    fn find_entries(&mut self, concert: i64, users: &[i64]) -> QueryResult<Vec<EntryRow>>;
    fn delete_entry(&mut self, seq: i64) -> QueryResult<usize>;
    /// Waiting entries of the concert with a smaller `seq`.
    fn waiting_ahead(&mut self, concert: i64, seq: i64) -> QueryResult<u64>;
    fn count_waiting(&mut self, concert: i64) -> QueryResult<u64>;
    fn count_live(&mut self, concert: i64, now: NaiveDateTime) -> QueryResult<u64>;
    /// Deletes the admissions that ran out; returns their users.
    fn delete_expired(&mut self, concert: i64, now: NaiveDateTime) -> QueryResult<Vec<i64>>;
    /// Deletes the waiting entries of `users`; returns the users that had one.
    fn delete_waiting_of(&mut self, concert: i64, users: &[i64]) -> QueryResult<Vec<i64>>;
    /// The `seq` of the first `n` waiting entries.
    fn next_in_line(&mut self, concert: i64, n: u32) -> QueryResult<Vec<i64>>;
    /// Admits the waiting entries `seqs` at `now` until `until`; returns them in `seq` order.
    /// Only waiting rows: one that left meanwhile is not admitted, and its slot stays free for
    /// the next round.
    fn activate(
        &mut self,
        seqs: &[i64],
        now: NaiveDateTime,
        until: NaiveDateTime,
    ) -> QueryResult<Vec<EntryRow>> {
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        self.activate_waiting(seqs, now, until)
    }
    /// [`QueueStatements::activate`] for a non-empty `seqs`.
    fn activate_waiting(
        &mut self,
        seqs: &[i64],
        now: NaiveDateTime,
        until: NaiveDateTime,
    ) -> QueryResult<Vec<EntryRow>>;
    fn record_admissions(
        &mut self,
        concert: i64,
        window: NaiveDateTime,
        admitted: u32,
    ) -> QueryResult<()>;
}

/// The concert's entries in `state`.
#[diesel::dsl::auto_type]
fn entries_in(concert: i64, state: QueueEntryState) -> _ {
    queue_entries::table
        .filter(queue_entries::concert_id.eq(concert))
        .filter(queue_entries::status.eq(state))
}

/// A concert's gate as first written: an empty window starting at `now`'s second.
#[diesel::dsl::auto_type]
fn new_gate(concert: i64, now: NaiveDateTime) -> _ {
    let start: NaiveDateTime = now.trunc_subsecs(0);
    let admitted: i32 = 0;
    (
        queue_gates::concert_id.eq(concert),
        queue_gates::window_start.eq(start),
        queue_gates::admitted.eq(admitted),
    )
}

/// Users per `IN (...)` list: far below SQLite's 32,766 bind parameters.
const USERS_PER_STATEMENT: usize = 1_000;

/// The statements that read and write alike on every backend, for each `impl` below.
macro_rules! shared_queue_statements {
    () => {
        fn concert_exists(&mut self, concert: i64) -> QueryResult<bool> {
            diesel::select(diesel::dsl::exists(concerts::table.find(concert))).get_result(self)
        }

        fn anyone_waiting(&mut self, concert: i64) -> QueryResult<bool> {
            diesel::select(diesel::dsl::exists(entries_in(
                concert,
                QueueEntryState::Waiting,
            )))
            .get_result(self)
        }

        fn find_entry(&mut self, concert: i64, user: i64) -> QueryResult<Option<EntryRow>> {
            queue_entries::table
                .filter(queue_entries::concert_id.eq(concert))
                .filter(queue_entries::user_id.eq(user))
                .select(EntryRow::as_select())
                .first(self)
                .optional()
        }

        fn find_entries(&mut self, concert: i64, users: &[i64]) -> QueryResult<Vec<EntryRow>> {
            queue_entries::table
                .filter(queue_entries::concert_id.eq(concert))
                .filter(queue_entries::user_id.eq_any(users))
                .select(EntryRow::as_select())
                .load(self)
        }

        fn delete_entry(&mut self, seq: i64) -> QueryResult<usize> {
            diesel::delete(queue_entries::table.find(seq)).execute(self)
        }

        fn waiting_ahead(&mut self, concert: i64, seq: i64) -> QueryResult<u64> {
            entries_in(concert, QueueEntryState::Waiting)
                .filter(queue_entries::seq.lt(seq))
                .count()
                .get_result(self)
                .map(count)
        }

        fn count_waiting(&mut self, concert: i64) -> QueryResult<u64> {
            entries_in(concert, QueueEntryState::Waiting)
                .count()
                .get_result(self)
                .map(count)
        }

        fn count_live(&mut self, concert: i64, now: NaiveDateTime) -> QueryResult<u64> {
            entries_in(concert, QueueEntryState::Active)
                .filter(queue_entries::expires_at.gt(now))
                .count()
                .get_result(self)
                .map(count)
        }

        fn next_in_line(&mut self, concert: i64, n: u32) -> QueryResult<Vec<i64>> {
            if n == 0 {
                return Ok(Vec::new());
            }
            entries_in(concert, QueueEntryState::Waiting)
                .order(queue_entries::seq)
                .limit(i64::from(n))
                .select(queue_entries::seq)
                .load(self)
        }

        fn record_admissions(
            &mut self,
            concert: i64,
            window: NaiveDateTime,
            admitted: u32,
        ) -> QueryResult<()> {
            diesel::update(queue_gates::table.find(concert))
                .set((
                    queue_gates::window_start.eq(window),
                    queue_gates::admitted.eq(i32::try_from(admitted).unwrap_or(i32::MAX)),
                ))
                .execute(self)
                .map(drop)
        }
    };
}

/// The statements that say what they wrote with `RETURNING`, or skip a duplicate with
/// `ON CONFLICT DO NOTHING` (PostgreSQL, SQLite).
macro_rules! returning_queue_statements {
    ($($conn:ty),*) => {$(
        impl QueueStatements for $conn {
            shared_queue_statements!();

            fn ensure_gate(&mut self, concert: i64, now: NaiveDateTime) -> QueryResult<()> {
                diesel::insert_into(queue_gates::table)
                    .values(new_gate(concert, now))
                    .on_conflict_do_nothing()
                    .execute(self)
                    .map(drop)
            }
            fn insert_waiting(
                &mut self,
                concert: i64,
                user: i64,
                now: NaiveDateTime,
            ) -> QueryResult<Option<EntryRow>> {
                diesel::insert_into(queue_entries::table)
                    .values((
                        queue_entries::concert_id.eq(concert),
                        queue_entries::user_id.eq(user),
                        queue_entries::status.eq(QueueEntryState::Waiting),
                        queue_entries::joined_at.eq(now),
                    ))
                    .on_conflict((queue_entries::concert_id, queue_entries::user_id))
                    .do_nothing()
                    .returning(EntryRow::as_returning())
                    .get_result(self)
                    .optional()
            }

            fn insert_waiting_many(
                &mut self,
                concert: i64,
                users: &[i64],
                now: NaiveDateTime,
            ) -> QueryResult<Vec<EntryRow>> {
                let rows: Vec<_> = users
                    .iter()
                    .map(|user| {
                        (
                            queue_entries::concert_id.eq(concert),
                            queue_entries::user_id.eq(*user),
                            queue_entries::status.eq(QueueEntryState::Waiting),
                            queue_entries::joined_at.eq(now),
                        )
                    })
                    .collect();
                let mut inserted: Vec<EntryRow> = diesel::insert_into(queue_entries::table)
                    .values(&rows)
                    .on_conflict((queue_entries::concert_id, queue_entries::user_id))
                    .do_nothing()
                    .returning(EntryRow::as_returning())
                    .get_results(self)?;
                inserted.sort_by_key(|row| row.seq);
                Ok(inserted)
            }

            fn delete_expired(&mut self, concert: i64, now: NaiveDateTime) -> QueryResult<Vec<i64>> {
                diesel::delete(
                    entries_in(concert, QueueEntryState::Active)
                        .filter(queue_entries::expires_at.le(now)),
                )
                .returning(queue_entries::user_id)
                .get_results(self)
            }

            fn delete_waiting_of(&mut self, concert: i64, users: &[i64]) -> QueryResult<Vec<i64>> {
                let mut dropped = Vec::new();
                for chunk in users.chunks(USERS_PER_STATEMENT) {
                    dropped.extend(
                        diesel::delete(
                            entries_in(concert, QueueEntryState::Waiting)
                                .filter(queue_entries::user_id.eq_any(chunk)),
                        )
                        .returning(queue_entries::user_id)
                        .get_results::<i64>(self)?,
                    );
                }
                Ok(dropped)
            }

            fn activate_waiting(
                &mut self,
                seqs: &[i64],
                now: NaiveDateTime,
                until: NaiveDateTime,
            ) -> QueryResult<Vec<EntryRow>> {
                let mut admitted: Vec<EntryRow> = diesel::update(
                    queue_entries::table
                        .filter(queue_entries::seq.eq_any(seqs))
                        .filter(queue_entries::status.eq(QueueEntryState::Waiting)),
                )
                .set((
                    queue_entries::status.eq(QueueEntryState::Active),
                    queue_entries::admitted_at.eq(Some(now)),
                    queue_entries::expires_at.eq(Some(until)),
                ))
                .returning(EntryRow::as_returning())
                .get_results(self)?;
                admitted.sort_by_key(|row| row.seq);
                Ok(admitted)
            }
        }
    )*};
}

returning_queue_statements!(diesel::PgConnection, diesel::SqliteConnection);

/// MariaDB has no `RETURNING`: each statement finds its rows first (locked), then writes
/// exactly those, and an insert that may meet a duplicate is a plain insert whose
/// duplicate-key error is caught (see `mysql`). One join per statement: a multi-row insert
/// stops at the first duplicate, and which rows a skipping insert wrote could only be
/// guessed from `AUTO_INCREMENT` values. The batch still commits once.
impl QueueStatements for diesel::MysqlConnection {
    shared_queue_statements!();

    fn ensure_gate(&mut self, concert: i64, now: NaiveDateTime) -> QueryResult<()> {
        // Looked for first, with a read that locks nothing: MariaDB's "do nothing" on a
        // duplicate is an update of the row, which would take it exclusively and line every
        // join of the concert up behind each other. (A plain insert whose duplicate-key error
        // is caught is no better: the error leaves a shared lock, which two admission rounds
        // would each hold and then each upgrade, a deadlock.) Only the first use of a gate
        // inserts it, with the exclusive lock the insert takes anyway.
        let exists: bool = diesel::select(diesel::dsl::exists(queue_gates::table.find(concert)))
            .get_result(self)?;
        if !exists {
            diesel::insert_into(queue_gates::table)
                .values(new_gate(concert, now))
                .on_conflict_do_nothing()
                .execute(self)?;
        }
        Ok(())
    }

    fn insert_waiting(
        &mut self,
        concert: i64,
        user: i64,
        now: NaiveDateTime,
    ) -> QueryResult<Option<EntryRow>> {
        let inserted = crate::mysql::inserted(
            diesel::insert_into(queue_entries::table)
                .values((
                    queue_entries::concert_id.eq(concert),
                    queue_entries::user_id.eq(user),
                    queue_entries::status.eq(QueueEntryState::Waiting),
                    queue_entries::joined_at.eq(now),
                ))
                .execute(self),
        )?;
        if !inserted {
            return Ok(None);
        }
        let seq = crate::mysql::inserted_id(self)?;
        queue_entries::table
            .find(seq)
            .select(EntryRow::as_select())
            .first(self)
            .map(Some)
    }

    fn insert_waiting_many(
        &mut self,
        concert: i64,
        users: &[i64],
        now: NaiveDateTime,
    ) -> QueryResult<Vec<EntryRow>> {
        let mut inserted = Vec::with_capacity(users.len());
        for user in users {
            inserted.extend(self.insert_waiting(concert, *user, now)?);
        }
        inserted.sort_by_key(|row| row.seq);
        Ok(inserted)
    }

    fn delete_expired(&mut self, concert: i64, now: NaiveDateTime) -> QueryResult<Vec<i64>> {
        let expired: Vec<(i64, i64)> = entries_in(concert, QueueEntryState::Active)
            .filter(queue_entries::expires_at.le(now))
            .select((queue_entries::seq, queue_entries::user_id))
            .for_update()
            .load(self)?;
        delete_seqs(self, &expired)
    }

    fn delete_waiting_of(&mut self, concert: i64, users: &[i64]) -> QueryResult<Vec<i64>> {
        let mut dropped = Vec::new();
        for chunk in users.chunks(USERS_PER_STATEMENT) {
            let waiting: Vec<(i64, i64)> = entries_in(concert, QueueEntryState::Waiting)
                .filter(queue_entries::user_id.eq_any(chunk))
                .select((queue_entries::seq, queue_entries::user_id))
                .for_update()
                .load(self)?;
            dropped.extend(delete_seqs(self, &waiting)?);
        }
        Ok(dropped)
    }

    fn activate_waiting(
        &mut self,
        seqs: &[i64],
        now: NaiveDateTime,
        until: NaiveDateTime,
    ) -> QueryResult<Vec<EntryRow>> {
        let waiting: Vec<i64> = queue_entries::table
            .filter(queue_entries::seq.eq_any(seqs))
            .filter(queue_entries::status.eq(QueueEntryState::Waiting))
            .select(queue_entries::seq)
            .for_update()
            .load(self)?;
        if waiting.is_empty() {
            return Ok(Vec::new());
        }
        diesel::update(queue_entries::table.filter(queue_entries::seq.eq_any(&waiting)))
            .set((
                queue_entries::status.eq(QueueEntryState::Active),
                queue_entries::admitted_at.eq(Some(now)),
                queue_entries::expires_at.eq(Some(until)),
            ))
            .execute(self)?;
        queue_entries::table
            .filter(queue_entries::seq.eq_any(&waiting))
            .order(queue_entries::seq)
            .select(EntryRow::as_select())
            .load(self)
    }
}

/// Deletes the entries `(seq, user)` that MariaDB found (and locked) first; returns their
/// users.
fn delete_seqs(c: &mut diesel::MysqlConnection, rows: &[(i64, i64)]) -> QueryResult<Vec<i64>> {
    for chunk in rows.chunks(crate::mysql::IDS_PER_STATEMENT) {
        let seqs: Vec<i64> = chunk.iter().map(|(seq, _)| *seq).collect();
        diesel::delete(queue_entries::table.filter(queue_entries::seq.eq_any(seqs))).execute(c)?;
    }
    Ok(rows.iter().map(|(_, user)| *user).collect())
}

/// `row` with the users ahead of it counted.
fn counted<C: QueueStatements>(c: &mut C, row: EntryRow) -> QueryResult<QueueEntry> {
    let ahead = if row.is_waiting() {
        c.waiting_ahead(row.concert_id, row.seq)?
    } else {
        0
    };
    row.into_domain(ahead)
}

fn known_concert<C: QueueStatements>(c: &mut C, concert: ConcertId) -> Result<(), Abort> {
    if c.concert_exists(concert.get())? {
        Ok(())
    } else {
        Err(Abort::Refused(QueueError::ConcertNotFound(concert)))
    }
}

/// The gate row of `concert`, created if needed and locked as `mode` says; then the time of
/// the decision, taken after any wait for the lock.
fn enter_gate<C: QueueStatements>(
    c: &mut C,
    concert: i64,
    mode: GateLock,
) -> QueryResult<(Gate, NaiveDateTime)> {
    c.ensure_gate(concert, decision_time().naive_utc())?;
    let gate = c.lock_gate(concert, mode)?;
    Ok((gate, decision_time().naive_utc()))
}

fn join_in<C: QueueStatements>(
    c: &mut C,
    concert: ConcertId,
    user: UserId,
    rules: QueueRules,
) -> Result<(QueueEntry, bool), Abort> {
    known_concert(c, concert)?;
    let (concert_id, user_id) = (concert.get(), user.get());
    // Somebody waiting now will still be ahead when this join commits (the line only moves
    // in admission order), so such a join cannot be admitted at once and need not wait for
    // other joins. If they were all admitted meanwhile, the next round admits this one.
    let mode = if c.anyone_waiting(concert_id)? {
        GateLock::Shared
    } else {
        GateLock::Exclusive
    };
    let (gate, now) = enter_gate(c, concert_id, mode)?;
    let found = c.find_entry(concert_id, user_id)?;
    let (mut entry, new) = place(c, concert_id, user_id, now, found)?;
    if !new {
        return Ok((entry.into_domain(0)?, false));
    }
    if mode == GateLock::Exclusive {
        let (window, used) = gate.window(now);
        let admit = used < rules.admit_per_second
            && c.count_live(concert_id, now)? < u64::from(rules.active_limit)
            && c.waiting_ahead(concert_id, entry.seq)? == 0;
        if admit {
            let until = now + rules.active_ttl;
            entry = c
                .activate(&[entry.seq], now, until)?
                .pop()
                .ok_or_else(|| corrupt_row("a new queue entry could not be admitted".into()))?;
            c.record_admissions(concert_id, window, used + 1)?;
        }
    }
    // `ahead` is not counted here: counting the line is a scan of everyone ahead, and a join
    // at an opening, when the line is longest and joins arrive by the thousand, must not
    // scan it inside its write transaction. The caller asks the view, or `entry`.
    Ok((entry.into_domain(0)?, true))
}

/// The user's one place in the concert's queue, given `found`, the user's entry as just read:
/// that entry while it is live, else a new waiting one (`true` when new).
fn place<C: QueueStatements>(
    c: &mut C,
    concert: i64,
    user: i64,
    now: NaiveDateTime,
    found: Option<EntryRow>,
) -> QueryResult<(EntryRow, bool)> {
    if let Some(found) = found {
        if found.is_live(now) {
            return Ok((found, false));
        }
        // The admission ran out: the user joins again, at the back of the line.
        c.delete_entry(found.seq)?;
    }
    match c.insert_waiting(concert, user, now)? {
        Some(entry) => Ok((entry, true)),
        // A join of the same user committed after the look-up (on PostgreSQL the insert
        // waited for it): its entry is the user's one place.
        None => c
            .find_entry(concert, user)?
            .map(|found| (found, false))
            .ok_or_else(|| {
                corrupt_row("a queue entry that blocked an insert has disappeared".into())
            }),
    }
}

/// One batch of joins in one transaction; an answer per join, in order. A refusal answers
/// its join alone; a database error fails the batch (and rolls it back).
fn join_batch_in<C: QueueStatements>(c: &mut C, joins: &[Join]) -> Result<Vec<JoinAnswer>, Abort> {
    let mut answers: Vec<Option<JoinAnswer>> = vec![None; joins.len()];
    let mut concerts: Vec<ConcertId> = Vec::new();
    for join in joins {
        if !concerts.contains(&join.concert) {
            concerts.push(join.concert);
        }
    }
    for concert in concerts {
        let of_concert: Vec<usize> = (0..joins.len())
            .filter(|&i| joins[i].concert == concert)
            .collect();
        if !c.concert_exists(concert.get())? {
            for i in of_concert {
                answers[i] = Some(Err(QueueError::ConcertNotFound(concert)));
            }
        } else if c.anyone_waiting(concert.get())? {
            join_behind_line(c, concert, joins, &of_concert, &mut answers)?;
        } else {
            // A quiet concert: each join may be admitted at once, so each is decided in
            // turn, as it would be alone; the first that has to wait makes a line for the
            // rest.
            for i in of_concert {
                let join = joins[i];
                answers[i] = Some(match join_in(c, join.concert, join.user, join.rules) {
                    Ok(joined) => Ok(joined),
                    Err(Abort::Refused(refusal)) => Err(refusal),
                    Err(abort) => return Err(abort),
                });
            }
        }
    }
    answers
        .into_iter()
        .map(|answer| {
            answer.ok_or_else(|| Abort::from(corrupt_row("a join left unanswered".into())))
        })
        .collect()
}

/// The joins `of_concert` (indexes into `joins`) of a concert with a line: nobody of them
/// can be admitted at once, so they hold the gate shared and go in with one insert, in
/// arrival order. A user who joins twice in one batch gets the same entry, new to the first.
fn join_behind_line<C: QueueStatements>(
    c: &mut C,
    concert: ConcertId,
    joins: &[Join],
    of_concert: &[usize],
    answers: &mut [Option<JoinAnswer>],
) -> QueryResult<()> {
    let concert_id = concert.get();
    let (_, now) = enter_gate(c, concert_id, GateLock::Shared)?;
    let mut seen = HashSet::new();
    let users: Vec<i64> = of_concert
        .iter()
        .map(|&i| joins[i].user.get())
        .filter(|user| seen.insert(*user))
        .collect();
    let mut placed: HashMap<i64, (EntryRow, bool)> = c
        .insert_waiting_many(concert_id, &users, now)?
        .into_iter()
        .map(|row| (row.user_id, (row, true)))
        .collect();
    let had_one: Vec<i64> = users
        .iter()
        .copied()
        .filter(|user| !placed.contains_key(user))
        .collect();
    if !had_one.is_empty() {
        let mut found: HashMap<i64, EntryRow> = c
            .find_entries(concert_id, &had_one)?
            .into_iter()
            .map(|row| (row.user_id, row))
            .collect();
        for user in had_one {
            let entry = place(c, concert_id, user, now, found.remove(&user))?;
            placed.insert(user, entry);
        }
    }
    let placed: HashMap<i64, (QueueEntry, bool)> = placed
        .into_iter()
        .map(|(user, (row, new))| Ok((user, (row.into_domain(0)?, new))))
        .collect::<QueryResult<_>>()?;
    let mut answered = HashSet::new();
    for &i in of_concert {
        let user = joins[i].user.get();
        let (entry, new) = placed
            .get(&user)
            .ok_or_else(|| corrupt_row("a batch's join was not placed".into()))?;
        // Only the first join of a user in the batch made the entry.
        answers[i] = Some(Ok((entry.clone(), *new && answered.insert(user))));
    }
    Ok(())
}

fn admit_in<C: QueueStatements>(
    c: &mut C,
    concert: ConcertId,
    rules: QueueRules,
    idle: &[i64],
) -> Result<AdmissionRound, Abort> {
    known_concert(c, concert)?;
    let concert_id = concert.get();
    let (gate, now) = enter_gate(c, concert_id, GateLock::Exclusive)?;
    let expired = c.delete_expired(concert_id, now)?;
    let dropped_idle = c.delete_waiting_of(concert_id, idle)?;
    let live = c.count_live(concert_id, now)?;
    let (window, used) = gate.window(now);
    let free = u64::from(rules.active_limit).saturating_sub(live);
    let room = rules
        .admit_per_second
        .saturating_sub(used)
        .min(u32::try_from(free).unwrap_or(u32::MAX));
    let next = c.next_in_line(concert_id, room)?;
    let admitted = c.activate(&next, now, now + rules.active_ttl)?;
    if !admitted.is_empty() {
        let given = u32::try_from(admitted.len()).unwrap_or(u32::MAX);
        c.record_admissions(concert_id, window, used.saturating_add(given))?;
    }
    let waiting = c.count_waiting(concert_id)?;
    let active = live + admitted.len() as u64;
    Ok(AdmissionRound {
        admitted: admitted
            .into_iter()
            .map(|row| row.into_domain(0))
            .collect::<QueryResult<_>>()?,
        expired: expired
            .into_iter()
            .map(user_id)
            .collect::<QueryResult<_>>()?,
        dropped_idle: dropped_idle
            .into_iter()
            .map(user_id)
            .collect::<QueryResult<_>>()?,
        waiting,
        active,
    })
}

fn entry_in<C: QueueStatements>(
    c: &mut C,
    concert: ConcertId,
    user: UserId,
) -> QueryResult<Option<QueueEntry>> {
    let now = decision_time().naive_utc();
    match c.find_entry(concert.get(), user.get())? {
        Some(row) if row.is_live(now) => counted(c, row).map(Some),
        _ => Ok(None),
    }
}

#[async_trait]
impl QueueRepository for DieselQueue {
    async fn join(
        &self,
        concert: ConcertId,
        user: UserId,
        rules: QueueRules,
    ) -> Result<(QueueEntry, bool), QueueError> {
        let (answer, answered) = oneshot::channel();
        let join = Join {
            concert,
            user,
            rules,
        };
        if self.joins.push(PendingJoin { join, answer }) {
            // The writer runs in its own task, so that a cancelled request strands nobody
            // whose join it carries.
            tokio::spawn(self.clone().write_joins());
        }
        answered.await.unwrap_or_else(|_| {
            Err(QueueError::Repository(
                PersistenceError::Query(corrupt_row(
                    "the join's writer stopped before answering".into(),
                ))
                .into(),
            ))
        })
    }

    async fn entry(
        &self,
        concert: ConcertId,
        user: UserId,
    ) -> Result<Option<QueueEntry>, QueueError> {
        self.run(move |conn| {
            Ok(on_concrete_connection!(conn, |c| entry_in(
                c, concert, user
            ))?)
        })
        .await
    }

    async fn leave(&self, concert: ConcertId, user: UserId) -> Result<bool, QueueError> {
        self.run(move |conn| {
            let deleted = diesel::delete(
                queue_entries::table
                    .filter(queue_entries::concert_id.eq(concert.get()))
                    .filter(queue_entries::user_id.eq(user.get())),
            )
            .execute(conn)?;
            Ok(deleted > 0)
        })
        .await
    }

    async fn admit(
        &self,
        concert: ConcertId,
        rules: QueueRules,
        idle: Vec<UserId>,
    ) -> Result<AdmissionRound, QueueError> {
        let idle: Vec<i64> = idle.into_iter().map(UserId::get).collect();
        self.run(move |conn| write_transaction!(conn, |c| admit_in(c, concert, rules, &idle)))
            .await
    }

    async fn open_queues(&self) -> Result<Vec<ConcertId>, QueueError> {
        self.run(|conn| {
            let concerts: Vec<i64> = queue_entries::table
                .select(queue_entries::concert_id)
                .distinct()
                .order(queue_entries::concert_id)
                .load(conn)?;
            Ok(concerts
                .into_iter()
                .map(|id| ConcertId::new(id).map_err(|e| corrupt_row(e.to_string())))
                .collect::<QueryResult<_>>()?)
        })
        .await
    }

    async fn snapshot(&self, concert: ConcertId) -> Result<Vec<QueueEntry>, QueueError> {
        self.run(move |conn| {
            let rows: Vec<EntryRow> = queue_entries::table
                .filter(queue_entries::concert_id.eq(concert.get()))
                .order(queue_entries::seq)
                .select(EntryRow::as_select())
                .load(conn)?;
            Ok(rows
                .into_iter()
                .map(|row| row.into_domain(0))
                .collect::<QueryResult<_>>()?)
        })
        .await
    }
}
