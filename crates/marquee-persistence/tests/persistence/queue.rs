//! The waiting room's rows, on both backends: order, one place per user, both limits under
//! two instances, expiry, idle drop, leaving, and the gate on holds and payments.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use marquee_domain::{
    AdmissionRound, BookingError, BookingRepository, ConcertId, HoldRules, IdempotencyKey,
    QueueEntry, QueueError, QueueRepository, QueueRules, QueueStatus, RecordedResponse, SeatId,
    UserId,
};
use marquee_persistence::test_support::TestDatabase;
use marquee_persistence::{Backend, DbPool, DieselBooking, DieselQueue, PoolConfig, SeedPlan};

use crate::{instance_for, on_each_backend, pool_on};

fn user(id: i64) -> UserId {
    UserId::new(id).unwrap()
}

/// The demo catalogue's concert 1, whose schedule 1 is open for booking.
fn concert() -> ConcertId {
    ConcertId::new(1).unwrap()
}

fn rules(active_limit: u32, admit_per_second: u32) -> QueueRules {
    QueueRules {
        admit_per_second,
        active_limit,
        active_ttl: TimeDelta::minutes(10),
        idle_timeout: TimeDelta::minutes(1),
    }
}

fn config() -> PoolConfig {
    PoolConfig {
        maximum_pool_size: 8,
        connection_timeout: Duration::from_secs(20),
        ..PoolConfig::default()
    }
}

/// A queue on the demo catalogue.
async fn queue(backend: Backend) -> (TestDatabase, DbPool, Arc<DieselQueue>) {
    let (db, pool) = pool_on(backend, config());
    pool.seed(SeedPlan::DEMO).await.unwrap();
    let queue = Arc::new(DieselQueue::new(pool.clone()));
    (db, pool, queue)
}

/// A second instance: its own pool on the same database.
fn second_instance(db: &TestDatabase) -> Arc<DieselQueue> {
    Arc::new(DieselQueue::new(
        DbPool::build(db.url(), &config()).unwrap(),
    ))
}

async fn join(queue: &DieselQueue, u: i64, rules: QueueRules) -> QueueEntry {
    queue.join(concert(), user(u), rules).await.unwrap().0
}

/// The user's live entry in concert 1's queue, if any.
async fn entry_of(queue: &DieselQueue, u: i64) -> Option<QueueEntry> {
    queue.entry(concert(), user(u)).await.unwrap()
}

/// The users a round admitted, in the order it admitted them.
fn admitted(round: &AdmissionRound) -> Vec<UserId> {
    round.admitted.iter().map(|e| e.user).collect()
}

fn actives(entries: &[QueueEntry]) -> usize {
    entries
        .iter()
        .filter(|e| e.status == QueueStatus::Active)
        .count()
}

/// 50 concurrent joins, then rounds that admit five at a time (the active limit) while the
/// admitted leave: every admission, at join or in a round, is in join order.
async fn admission_is_first_in_first_out(backend: Backend) {
    let (_db, _pool, queue) = queue(backend).await;
    let rules = rules(5, 1_000);
    let joins: Vec<_> = (1..=50)
        .map(|u| {
            let queue = queue.clone();
            tokio::spawn(async move { join(&queue, u, rules).await })
        })
        .collect();
    let mut joined = Vec::new();
    for j in joins {
        joined.push(j.await.unwrap());
    }
    joined.sort_by_key(|e| e.seq);
    let seqs: Vec<i64> = joined.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs.iter().collect::<HashSet<_>>().len(),
        50,
        "one seq each"
    );
    // Admitted at once: a prefix of the line, at most the limit.
    let at_once = actives(&joined);
    assert!((1..=5).contains(&at_once), "{at_once} admitted at once");
    assert!(
        joined[..at_once]
            .iter()
            .all(|e| e.status == QueueStatus::Active)
    );
    for (ahead, entry) in joined[at_once..].iter().enumerate() {
        assert_eq!(entry.status, QueueStatus::Waiting);
        // At its join, an entry counts the joins ahead that had committed; one still in
        // flight is counted by the next read.
        assert!(entry.ahead <= ahead as u64, "{entry:?}");
        let read = queue.entry(concert(), entry.user).await.unwrap().unwrap();
        assert_eq!(read.position(), Some(ahead as u64 + 1), "{read:?}");
    }
    let snapshot = queue.snapshot(concert()).await.unwrap();
    assert_eq!(snapshot.iter().map(|e| e.seq).collect::<Vec<_>>(), seqs);
    assert_eq!(queue.open_queues().await.unwrap(), vec![concert()]);

    let mut order: Vec<i64> = joined[..at_once].iter().map(|e| e.seq).collect();
    let mut admitted: Vec<UserId> = joined[..at_once].iter().map(|e| e.user).collect();
    while order.len() < 50 {
        for u in admitted.drain(..) {
            assert!(queue.leave(concert(), u).await.unwrap());
        }
        let round = queue.admit(concert(), rules, Vec::new()).await.unwrap();
        assert!(!round.admitted.is_empty(), "a freed slot goes to the next");
        assert!(round.admitted.len() <= 5);
        assert_eq!(round.active, round.admitted.len() as u64);
        order.extend(round.admitted.iter().map(|e| e.seq));
        admitted.extend(round.admitted.iter().map(|e| e.user));
        assert_eq!(round.waiting, 50 - order.len() as u64);
    }
    assert_eq!(order, seqs, "admitted strictly in join order");
}

/// Twenty concurrent joins of one user, through two instances: one row, one seq.
async fn one_place_per_user(backend: Backend) {
    let (db, _pool, first) = queue(backend).await;
    let second = second_instance(&db);
    // Somebody ahead, so that the user waits, and is not merely admitted twice.
    join(&first, 1, rules(1, 100)).await;
    let joins: Vec<_> = (0..20)
        .map(|n| {
            let queue = if n % 2 == 0 {
                first.clone()
            } else {
                second.clone()
            };
            tokio::spawn(async move { queue.join(concert(), user(7), rules(1, 100)).await })
        })
        .collect();
    let mut created = 0;
    let mut seqs = HashSet::new();
    for j in joins {
        let (entry, new) = j.await.unwrap().unwrap();
        created += usize::from(new);
        seqs.insert(entry.seq);
        assert_eq!(entry.status, QueueStatus::Waiting);
        assert_eq!(entry.position(), Some(1));
    }
    assert_eq!((created, seqs.len()), (1, 1));
    let snapshot = first.snapshot(concert()).await.unwrap();
    assert_eq!(snapshot.iter().filter(|e| e.user == user(7)).count(), 1);
    // An admitted user who joins again keeps the admission.
    let (again, new) = first.join(concert(), user(1), rules(1, 100)).await.unwrap();
    assert_eq!((again.status, new), (QueueStatus::Active, false));
}

/// 300 joins arriving together behind a line, one user twice and one for an unknown concert
/// among them: they are written in a few batches (a batch's joins share their time), each
/// user gets one place, the repeated user one new entry, and the refusal answers only its
/// own join.
async fn joins_arriving_together_are_written_together(backend: Backend) {
    let (_db, _pool, queue) = queue(backend).await;
    let rules = rules(1, 100);
    join(&queue, 1, rules).await;
    assert_eq!(join(&queue, 2, rules).await.status, QueueStatus::Waiting);
    let nowhere = ConcertId::new(999_999).unwrap();
    let mut joins = Vec::new();
    for u in (100..400).chain([150]) {
        let one = queue.clone();
        joins.push(tokio::spawn(async move {
            one.join(concert(), user(u), rules).await
        }));
        if u == 200 {
            let one = queue.clone();
            joins.push(tokio::spawn(async move {
                one.join(nowhere, user(5), rules).await
            }));
        }
    }
    let mut entries: BTreeMap<UserId, Vec<(QueueEntry, bool)>> = BTreeMap::new();
    let mut refused = 0;
    for j in joins {
        match j.await.unwrap() {
            Ok((entry, new)) => entries.entry(entry.user).or_default().push((entry, new)),
            Err(error) => {
                assert_eq!(error, QueueError::ConcertNotFound(nowhere));
                refused += 1;
            }
        }
    }
    assert_eq!((refused, entries.len()), (1, 300));
    for (u, answers) in &entries {
        assert_eq!(
            answers.iter().filter(|(_, new)| *new).count(),
            1,
            "{u}: {answers:?}"
        );
        assert!(
            answers
                .iter()
                .all(|(e, _)| e.seq == answers[0].0.seq && e.status == QueueStatus::Waiting)
        );
    }
    assert_eq!(entries[&user(150)].len(), 2);
    let times: HashSet<DateTime<Utc>> = entries.values().map(|a| a[0].0.joined_at).collect();
    assert!(
        (2..=300 / 4).contains(&times.len()),
        "300 joins in {} transactions; at most {} fit in one",
        times.len(),
        marquee_persistence::JOINS_PER_BATCH
    );
    let snapshot = queue.snapshot(concert()).await.unwrap();
    assert_eq!(snapshot.len(), 302);
    assert_eq!(
        snapshot
            .iter()
            .map(|e| e.user)
            .collect::<HashSet<_>>()
            .len(),
        302
    );
}

/// A quiet concert admits a joiner at once; a joiner with somebody waiting ahead waits,
/// even when a slot is free.
async fn a_quiet_concert_admits_at_once(backend: Backend) {
    let (_db, _pool, queue) = queue(backend).await;
    let rules = rules(1, 100);
    let before = Utc::now().trunc_subsecs(3);
    let (first, new) = queue.join(concert(), user(1), rules).await.unwrap();
    assert!(new);
    assert_eq!(first.status, QueueStatus::Active);
    assert_eq!(first.position(), None);
    let admitted_at = first.admitted_at.unwrap();
    assert!(admitted_at >= before, "{admitted_at} before {before}");
    assert_eq!(first.expires_at, Some(admitted_at + rules.active_ttl));

    let second = join(&queue, 2, rules).await;
    assert_eq!(
        (second.status, second.position()),
        (QueueStatus::Waiting, Some(1))
    );
    assert_eq!((second.admitted_at, second.expires_at), (None, None));
    join(&queue, 3, rules).await;
    // A join leaves the line uncounted; `entry` counts it.
    let third = entry_of(&queue, 3).await.unwrap();
    assert_eq!(third.position(), Some(2));

    // A slot frees; user 2 waits ahead, so a new joiner does not take it.
    assert!(queue.leave(concert(), user(1)).await.unwrap());
    assert_eq!(join(&queue, 4, rules).await.status, QueueStatus::Waiting);
    let fourth = entry_of(&queue, 4).await.unwrap();
    assert_eq!(fourth.position(), Some(3));
    let round = queue.admit(concert(), rules, Vec::new()).await.unwrap();
    assert_eq!(admitted(&round), vec![user(2)]);
    assert_eq!((round.waiting, round.active), (2, 1));
    let third = entry_of(&queue, 3).await.unwrap();
    assert_eq!(third.position(), Some(1));
}

/// Two instances run admission rounds in a loop while 60 users join through both: the
/// committed rows never show more than `active_limit` admitted, nor does any round.
async fn the_active_limit_holds_across_instances(backend: Backend) {
    let (db, _pool, first) = queue(backend).await;
    let second = second_instance(&db);
    let rules = rules(3, 1_000);
    let done = Arc::new(AtomicBool::new(false));
    let rounds: Vec<_> = [first.clone(), second.clone()]
        .into_iter()
        .map(|queue| {
            let done = done.clone();
            tokio::spawn(async move {
                let mut most = 0;
                while !done.load(Ordering::Relaxed) {
                    let round = queue.admit(concert(), rules, Vec::new()).await.unwrap();
                    most = most.max(round.active);
                    // Each admitted user leaves after a while, so that slots keep freeing.
                    if let Some(admitted) = round.admitted.first() {
                        queue.leave(concert(), admitted.user).await.unwrap();
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                most
            })
        })
        .collect();
    let watcher = {
        let (queue, done) = (first.clone(), done.clone());
        tokio::spawn(async move {
            let mut most = 0;
            while !done.load(Ordering::Relaxed) {
                let rows = queue.snapshot(concert()).await.unwrap();
                most = most.max(actives(&rows));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            most
        })
    };
    let joins: Vec<_> = (1..=60)
        .map(|u| {
            let queue = instance_for(u, &first, &second);
            tokio::spawn(async move { join(&queue, u, rules).await })
        })
        .collect();
    for j in joins {
        j.await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    done.store(true, Ordering::Relaxed);
    for r in rounds {
        let most = r.await.unwrap();
        assert!(most <= 3, "a round saw {most} active");
    }
    let seen = watcher.await.unwrap();
    assert!(seen <= 3, "{seen} active at once");
    let rows = first.snapshot(concert()).await.unwrap();
    assert!(actives(&rows) <= 3);
    // The rounds kept the slots in use: the limit is reached, not just respected.
    let round = first.admit(concert(), rules, Vec::new()).await.unwrap();
    assert!(round.waiting == 0 || round.active == 3, "{round:?}");
}

/// With `admit_per_second = 5`, two instances running rounds for about three seconds admit
/// at most five per one-second window together, and fill some windows completely.
async fn the_rate_is_fleet_wide(backend: Backend) {
    let (db, _pool, first) = queue(backend).await;
    let second = second_instance(&db);
    // Nobody is admitted at join: the rate is the rounds' to spend.
    for u in 1..=100 {
        join(&first, u, rules(0, 5)).await;
    }
    let rules = rules(1_000, 5);
    let started = Utc::now();
    // Two schedulers per instance, so that rounds overlap at each window's start.
    let rounds: Vec<_> = [&first, &second, &first, &second]
        .into_iter()
        .map(|queue| {
            let queue = queue.clone();
            tokio::spawn(async move {
                let mut admitted = Vec::new();
                while Utc::now() - started < TimeDelta::seconds(3) {
                    let round = queue.admit(concert(), rules, Vec::new()).await.unwrap();
                    admitted.extend(round.admitted);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                admitted
            })
        })
        .collect();
    let mut admitted = Vec::new();
    for r in rounds {
        admitted.extend(r.await.unwrap());
    }
    let ended = Utc::now();
    let mut per_window: BTreeMap<DateTime<Utc>, usize> = BTreeMap::new();
    for entry in &admitted {
        *per_window
            .entry(entry.admitted_at.unwrap().trunc_subsecs(0))
            .or_default() += 1;
    }
    assert!(per_window.values().all(|n| *n <= 5), "{per_window:?}");
    assert!(per_window.values().any(|n| *n == 5), "{per_window:?}");
    let windows = (ended.trunc_subsecs(0) - started.trunc_subsecs(0)).num_seconds() + 1;
    assert!(admitted.len() as i64 <= 5 * windows, "{per_window:?}");
    let mut seqs: Vec<i64> = admitted.iter().map(|e| e.seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), admitted.len(), "nobody admitted twice");
}

/// An admission that ran out counts as gone at once, and the next round removes it and
/// admits the next in line; the user who rejoins goes to the back.
async fn expiry_frees_the_slot(backend: Backend) {
    let (_db, _pool, queue) = queue(backend).await;
    let rules = QueueRules {
        active_ttl: TimeDelta::seconds(1),
        ..rules(1, 100)
    };
    let first = join(&queue, 1, rules).await;
    assert_eq!(first.status, QueueStatus::Active);
    let second = join(&queue, 2, rules).await;
    assert_eq!(second.status, QueueStatus::Waiting);
    let third = join(&queue, 3, rules).await;
    let left = first.expires_at.unwrap() - Utc::now() + TimeDelta::milliseconds(200);
    tokio::time::sleep(left.to_std().unwrap_or_default()).await;
    assert_eq!(entry_of(&queue, 1).await, None);
    let round = queue.admit(concert(), rules, Vec::new()).await.unwrap();
    assert_eq!(round.expired, vec![user(1)]);
    assert_eq!(admitted(&round), vec![user(2)]);
    // User 2's admission runs out too; a rejoin is a new place behind user 3.
    let left = round.admitted[0].expires_at.unwrap() - Utc::now() + TimeDelta::milliseconds(200);
    tokio::time::sleep(left.to_std().unwrap_or_default()).await;
    let (again, new) = queue.join(concert(), user(2), rules).await.unwrap();
    assert!(new);
    assert_eq!(again.status, QueueStatus::Waiting);
    let again = entry_of(&queue, 2).await.unwrap();
    assert_eq!(again.position(), Some(2));
    assert!(again.seq > third.seq);
}

/// The users the view reports idle lose their waiting place; an admitted one named idle
/// keeps the admission.
async fn idle_waiters_are_dropped(backend: Backend) {
    let (_db, _pool, queue) = queue(backend).await;
    let rules = rules(1, 100);
    for u in 1..=4 {
        join(&queue, u, rules).await;
    }
    let round = queue
        .admit(concert(), rules, vec![user(1), user(2), user(4), user(9)])
        .await
        .unwrap();
    let mut dropped = round.dropped_idle.clone();
    dropped.sort();
    assert_eq!(dropped, vec![user(2), user(4)]);
    assert_eq!((round.waiting, round.active), (1, 1));
    assert_eq!(entry_of(&queue, 2).await, None);
    assert_eq!(entry_of(&queue, 3).await.unwrap().position(), Some(1));
    assert_eq!(
        entry_of(&queue, 1).await.unwrap().status,
        QueueStatus::Active
    );
}

/// Leaving removes the entry, waiting or admitted; an admitted one's slot goes to the next.
async fn leaving_frees_the_place(backend: Backend) {
    let (_db, _pool, queue) = queue(backend).await;
    let rules = rules(1, 100);
    for u in 1..=3 {
        join(&queue, u, rules).await;
    }
    assert!(queue.leave(concert(), user(2)).await.unwrap());
    assert!(!queue.leave(concert(), user(2)).await.unwrap());
    assert_eq!(entry_of(&queue, 2).await, None);
    assert_eq!(entry_of(&queue, 3).await.unwrap().position(), Some(1));
    assert!(queue.leave(concert(), user(1)).await.unwrap());
    let round = queue.admit(concert(), rules, Vec::new()).await.unwrap();
    assert_eq!(admitted(&round), vec![user(3)]);
    assert!(queue.leave(concert(), user(3)).await.unwrap());
    assert_eq!(queue.open_queues().await.unwrap(), Vec::<ConcertId>::new());
}

/// Unknown concerts are refused by the operations that write; the others find nothing.
async fn an_unknown_concert_is_refused(backend: Backend) {
    let (_db, _pool, queue) = queue(backend).await;
    let nowhere = ConcertId::new(999_999).unwrap();
    assert_eq!(
        queue.join(nowhere, user(1), rules(1, 1)).await,
        Err(QueueError::ConcertNotFound(nowhere))
    );
    assert_eq!(
        queue.admit(nowhere, rules(1, 1), Vec::new()).await,
        Err(QueueError::ConcertNotFound(nowhere))
    );
    assert_eq!(queue.entry(nowhere, user(1)).await.unwrap(), None);
    assert!(!queue.leave(nowhere, user(1)).await.unwrap());
    assert_eq!(queue.snapshot(nowhere).await.unwrap(), Vec::new());
}

fn hold_rules(require_admission: bool) -> HoldRules {
    HoldRules {
        hold_for: TimeDelta::minutes(5),
        max_holds_per_schedule: 4,
        max_holds_per_user: 10,
        require_admission,
    }
}

fn render<T: std::fmt::Debug>(outcome: &Result<T, BookingError>) -> RecordedResponse {
    RecordedResponse {
        status: if outcome.is_ok() { 200 } else { 409 },
        body: format!("{outcome:?}"),
    }
}

/// With admission required, a hold needs a live admission to the seat's concert; without,
/// nothing changes.
async fn holds_need_an_admission(backend: Backend) {
    let (_db, pool, queue) = queue(backend).await;
    let booking = DieselBooking::new(pool, 1_000_000_000);
    let seat = |n| SeatId::new(n).unwrap();
    let rules = rules(1, 100);
    assert_eq!(
        booking.hold_seat(user(1), seat(1), hold_rules(true)).await,
        Err(BookingError::NotAdmitted(concert()))
    );
    join(&queue, 1, rules).await;
    join(&queue, 2, rules).await;
    assert_eq!(
        booking.hold_seat(user(2), seat(2), hold_rules(true)).await,
        Err(BookingError::NotAdmitted(concert())),
        "waiting is not admitted"
    );
    booking
        .hold_seat(user(1), seat(1), hold_rules(true))
        .await
        .unwrap();
    // Admitted to concert 1 only: seat 201 is concert 2's (4 schedules of 50 seats).
    assert_eq!(
        booking
            .hold_seat(user(1), seat(201), hold_rules(true))
            .await,
        Err(BookingError::NotAdmitted(ConcertId::new(2).unwrap()))
    );
    booking
        .hold_seat(user(3), seat(3), hold_rules(false))
        .await
        .unwrap();
    // An admission that ran out admits nothing.
    let short = QueueRules {
        active_ttl: TimeDelta::milliseconds(300),
        ..rules
    };
    let (entry, _) = queue
        .join(ConcertId::new(2).unwrap(), user(4), short)
        .await
        .unwrap();
    assert_eq!(entry.status, QueueStatus::Active);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        booking
            .hold_seat(user(4), seat(202), hold_rules(true))
            .await,
        Err(BookingError::NotAdmitted(ConcertId::new(2).unwrap()))
    );
}

/// Paying ends the payer's admission, and the next round gives the slot to the next in line;
/// a refused payment keeps it.
async fn payment_ends_the_admission(backend: Backend) {
    let (_db, pool, queue) = queue(backend).await;
    let booking = DieselBooking::new(pool, 1_000_000_000);
    let key = |k: &str| IdempotencyKey::new(k).unwrap();
    let rules = rules(1, 100);
    assert_eq!(join(&queue, 1, rules).await.status, QueueStatus::Active);
    join(&queue, 2, rules).await;
    let held = booking
        .hold_seat(user(1), SeatId::new(1).unwrap(), hold_rules(true))
        .await
        .unwrap();
    let pay = async |k: &str| booking.pay(user(1), held.id, key(k), render).await.unwrap();
    let refused = pay("broke").await;
    assert!(refused.performed.is_none(), "no funds yet");
    assert!(entry_of(&queue, 1).await.is_some());
    booking
        .charge(user(1), 100_000, key("funds"), render)
        .await
        .unwrap();
    let paid = pay("pay").await;
    assert!(paid.performed.is_some(), "{:?}", paid.response);
    assert_eq!(entry_of(&queue, 1).await, None);
    let round = queue.admit(concert(), rules, Vec::new()).await.unwrap();
    assert_eq!(admitted(&round), vec![user(2)]);
}

on_each_backend!(
    admission_is_first_in_first_out,
    one_place_per_user,
    joins_arriving_together_are_written_together,
    a_quiet_concert_admits_at_once,
    the_active_limit_holds_across_instances,
    the_rate_is_fleet_wide,
    expiry_frees_the_slot,
    idle_waiters_are_dropped,
    leaving_frees_the_place,
    an_unknown_concert_is_refused,
    holds_need_an_admission,
    payment_ends_the_admission,
);
