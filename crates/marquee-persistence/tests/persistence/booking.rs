//! Bookings under contention, on both backends: the database decides every race.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{TimeDelta, Utc};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};
use marquee_domain::{
    Answered, BookingError, BookingRepository, HoldRules, IdempotencyKey, Money, PaymentReceipt,
    RecordedResponse, Reservation, ReservationId, ReservationStatus, SeatId, UserId, Wallet,
};
use marquee_persistence::{Backend, DbPool, DieselBooking, PoolConfig, SeedPlan};

use crate::{instance_for, on_each_backend, pool_on};

const MAX_BALANCE: i64 = 1_000_000_000_000;

fn rules() -> HoldRules {
    HoldRules {
        hold_for: TimeDelta::minutes(5),
        max_holds_per_schedule: 4,
        max_holds_per_user: 10,
        require_admission: false,
    }
}

/// Records an outcome as its debug text, which says which value or refusal it was; the
/// API records the HTTP response instead.
fn render<T: std::fmt::Debug>(outcome: &Result<T, BookingError>) -> RecordedResponse {
    RecordedResponse {
        status: if outcome.is_ok() { 200 } else { 409 },
        body: said(outcome),
    }
}

fn said<T: std::fmt::Debug>(outcome: &Result<T, BookingError>) -> String {
    format!("{outcome:?}")
}

/// The value of an operation this call performed; panics on a refusal or a replay.
fn performed<T: std::fmt::Debug>(answered: Answered<T>) -> T {
    match answered.performed {
        Some(value) => value,
        None => panic!("not performed: {:?}", answered.response),
    }
}

fn user(id: i64) -> UserId {
    UserId::new(id).unwrap()
}

fn key(text: &str) -> IdempotencyKey {
    IdempotencyKey::new(text).unwrap()
}

/// `u`'s attempt to hold `seat` under [`rules`].
async fn try_hold(booking: &DieselBooking, u: i64, seat: i64) -> Result<Reservation, BookingError> {
    booking
        .hold_seat(user(u), SeatId::new(seat).unwrap(), rules())
        .await
}

/// `u`'s hold of `seat` under [`rules`], which must be granted.
async fn hold(booking: &DieselBooking, u: i64, seat: i64) -> Reservation {
    try_hold(booking, u, seat).await.unwrap()
}

/// `u`'s charge of `amount` with the key `k`: its answer, performed, refused or replayed.
async fn charge(booking: &DieselBooking, u: i64, amount: Money, k: &str) -> Answered<Wallet> {
    booking
        .charge(user(u), amount, key(k), render)
        .await
        .unwrap()
}

/// `u`'s payment of `id` with the key `k`: its answer, performed, refused or replayed.
async fn pay(
    booking: &DieselBooking,
    u: i64,
    id: ReservationId,
    k: &str,
) -> Answered<PaymentReceipt> {
    booking.pay(user(u), id, key(k), render).await.unwrap()
}

/// `u`'s reservation `id`, which must be `u`'s.
async fn reservation(booking: &DieselBooking, u: i64, id: ReservationId) -> Reservation {
    booking.reservation(user(u), id).await.unwrap().unwrap()
}

fn config() -> PoolConfig {
    PoolConfig {
        maximum_pool_size: 8,
        connection_timeout: std::time::Duration::from_secs(20),
        ..PoolConfig::default()
    }
}

/// A booking repository on the demo catalogue (schedule 1 is open; seat 1 costs 15000).
async fn booking(
    backend: Backend,
) -> (
    marquee_persistence::test_support::TestDatabase,
    DbPool,
    Arc<DieselBooking>,
) {
    let (db, pool) = pool_on(backend, config());
    pool.seed(SeedPlan::DEMO).await.unwrap();
    let booking = Arc::new(DieselBooking::new(pool.clone(), MAX_BALANCE));
    (db, pool, booking)
}

async fn one_seat_two_hundred_users(backend: Backend) {
    let (_db, _pool, booking) = booking(backend).await;
    let seat = SeatId::new(1).unwrap();
    let attempts: Vec<_> = (1..=200)
        .map(|u| {
            let booking = booking.clone();
            tokio::spawn(async move { booking.hold_seat(user(u), seat, rules()).await })
        })
        .collect();
    let mut won = 0;
    let mut taken = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(reservation) => {
                won += 1;
                assert_eq!(reservation.status, ReservationStatus::Held);
            }
            Err(BookingError::SeatTaken(_)) => taken += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((won, taken), (1, 199));
}

/// 1,000 users race for the 50 seats of one schedule through two pools (two instances).
async fn a_thousand_users_fifty_seats_two_instances(backend: Backend) {
    let (db, pool, first) = booking(backend).await;
    let second = Arc::new(DieselBooking::new(
        DbPool::build(db.url(), &config()).unwrap(),
        MAX_BALANCE,
    ));
    let attempts: Vec<_> = (1..=1000)
        .map(|u| {
            let booking = instance_for(u, &first, &second);
            // Seats 1..=50 are schedule 1's.
            let seat = SeatId::new(1 + (u * 7) % 50).unwrap();
            tokio::spawn(async move { booking.hold_seat(user(u), seat, rules()).await })
        })
        .collect();
    let mut won = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(_) => won += 1,
            Err(BookingError::SeatTaken(_)) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(won, 50);
    let (held_seats, live_reservations, distinct_seats) = pool
        .run(|conn| {
            use marquee_persistence::schema::{reservations, seats};
            use marquee_persistence::status::{ReservationState, SeatState};
            let held: i64 = seats::table
                .filter(seats::schedule_id.eq(1))
                .filter(seats::status.eq(SeatState::Held))
                .count()
                .get_result(conn)?;
            let live: Vec<i64> = reservations::table
                .filter(reservations::status.eq(ReservationState::Held))
                .select(reservations::seat_id)
                .load(conn)?;
            let distinct: HashSet<i64> = live.iter().copied().collect();
            Ok((held, live.len(), distinct.len()))
        })
        .await
        .unwrap();
    assert_eq!(held_seats, 50);
    assert_eq!(live_reservations, 50, "one reservation per held seat");
    assert_eq!(distinct_seats, 50, "no seat held twice");
}

async fn concurrent_charges_all_apply_and_keys_charge_once(backend: Backend) {
    let (_db, _pool, booking) = booking(backend).await;
    let charges: Vec<_> = (0..100)
        .map(|i| {
            let booking = booking.clone();
            tokio::spawn(async move {
                booking
                    .charge(user(7), 10, key(&format!("c{i}")), render)
                    .await
            })
        })
        .collect();
    for charge in charges {
        performed(charge.await.unwrap().unwrap());
    }
    assert_eq!(booking.wallet(user(7)).await.unwrap().balance, 1_000);

    let replays: Vec<_> = (0..10)
        .map(|_| {
            let booking = booking.clone();
            tokio::spawn(async move { booking.charge(user(7), 10, key("same"), render).await })
        })
        .collect();
    let mut answers = HashSet::new();
    let mut first = 0;
    for replay in replays {
        let answered = replay.await.unwrap().unwrap();
        first += usize::from(!answered.replayed);
        answers.insert(answered.response.body);
    }
    assert_eq!(first, 1, "one request performs the charge");
    assert_eq!(answers.len(), 1, "every replay gets the first answer");
    assert_eq!(booking.wallet(user(7)).await.unwrap().balance, 1_010);
    assert_eq!(
        booking.charge(user(7), 20, key("same"), render).await,
        Err(BookingError::IdempotencyKeyReused)
    );
    let refused = charge(&booking, 7, MAX_BALANCE, "too-much").await;
    assert_eq!(
        refused.response.body,
        said::<Wallet>(&Err(BookingError::BalanceLimit { limit: MAX_BALANCE }))
    );
    assert_eq!(refused.performed, None);
    // A first charge is held to the limit too: above it nothing is written, at it the wallet
    // is created with the whole amount.
    let refused = charge(&booking, 8, MAX_BALANCE + 1, "first-too-much").await;
    assert_eq!(refused.performed, None);
    assert_eq!(booking.wallet(user(8)).await.unwrap().balance, 0);
    let full = performed(charge(&booking, 8, MAX_BALANCE, "first-full").await);
    assert_eq!(full.balance, MAX_BALANCE);
}

async fn one_payment_whatever_the_retries(backend: Backend) {
    let (db, pool, booking) = booking(backend).await;
    let held = hold(&booking, 3, 2).await;
    let short = said::<PaymentReceipt>(&Err(BookingError::InsufficientBalance {
        balance: 0,
        needed: held.price,
    }));
    let refused = pay(&booking, 3, held.id, "p1").await;
    assert_eq!(
        (refused.response.body.as_str(), refused.replayed),
        (short.as_str(), false)
    );
    // The refusal rolled the sale back but kept the key and its answer.
    assert_eq!(
        db.count("SELECT count(*) AS n FROM seats WHERE id = 2 AND status = 'HELD'"),
        1
    );
    charge(&booking, 3, 50_000, "top-up").await;
    // After the top-up the same key still answers the refusal: it is the outcome of that
    // request. A new attempt takes a new key.
    let retried = pay(&booking, 3, held.id, "p1").await;
    assert_eq!(
        (retried.response.body.as_str(), retried.replayed),
        (short.as_str(), true)
    );
    let retries: Vec<_> = (0..20)
        .map(|_| {
            let booking = booking.clone();
            tokio::spawn(async move { booking.pay(user(3), held.id, key("p2"), render).await })
        })
        .collect();
    let mut receipts = HashSet::new();
    for retry in retries {
        receipts.insert(retry.await.unwrap().unwrap().response.body);
    }
    assert_eq!(receipts.len(), 1, "20 identical answers");
    assert!(
        receipts.iter().all(|r| r.starts_with("Ok(")),
        "{receipts:?}"
    );
    assert_eq!(
        booking.wallet(user(3)).await.unwrap().balance,
        50_000 - held.price,
        "one debit"
    );
    let again = pay(&booking, 3, held.id, "p3").await;
    assert_eq!(
        again.response.body,
        said::<PaymentReceipt>(&Err(BookingError::AlreadyPaid(held.id)))
    );
    let paid = reservation(&booking, 3, held.id).await;
    assert_eq!(paid.status, ReservationStatus::Confirmed);
    let payments: i64 = pool
        .run(|conn| {
            use marquee_persistence::schema::payments;
            Ok(payments::table.count().get_result(conn)?)
        })
        .await
        .unwrap();
    assert_eq!(payments, 1);
}

/// Reservations and receipts say which schedule and concert their seat is in, read in the
/// same transaction, so that the caller can drop those listings without another read. Demo
/// seat 201 is the first of concert 2's first schedule (5); seat 3 is in concert 1's first.
async fn reservations_carry_their_schedule_and_concert(backend: Backend) {
    let (_db, _pool, booking) = booking(backend).await;
    let where_ = |r: &Reservation| (r.schedule_id.get(), r.concert_id.get());
    let held = hold(&booking, 4, 201).await;
    assert_eq!(where_(&held), (5, 2));
    let read = reservation(&booking, 4, held.id).await;
    assert_eq!(where_(&read), (5, 2));
    let other = hold(&booking, 4, 3).await;
    let listed: Vec<_> = booking.reservations(user(4)).await.unwrap();
    assert_eq!(
        listed.iter().map(where_).collect::<Vec<_>>(),
        [(1, 1), (5, 2)]
    );
    assert_eq!(
        where_(&booking.cancel(user(4), other.id).await.unwrap()),
        (1, 1)
    );
    charge(&booking, 4, 100_000, "funds").await;
    let receipt = performed(pay(&booking, 4, held.id, "pay").await);
    assert_eq!(
        (
            receipt.seat_id.get(),
            receipt.schedule_id.get(),
            receipt.concert_id.get()
        ),
        (201, 5, 2)
    );
}

async fn others_cannot_touch_a_reservation(backend: Backend) {
    let (_db, _pool, booking) = booking(backend).await;
    let held = hold(&booking, 1, 3).await;
    charge(&booking, 2, 100_000, "k").await;
    assert_eq!(booking.reservation(user(2), held.id).await.unwrap(), None);
    assert!(booking.reservations(user(2)).await.unwrap().is_empty());
    assert_eq!(
        booking.cancel(user(2), held.id).await,
        Err(BookingError::ReservationNotFound(held.id))
    );
    let stolen = pay(&booking, 2, held.id, "steal").await;
    assert_eq!(
        stolen.response.body,
        said::<PaymentReceipt>(&Err(BookingError::ReservationNotFound(held.id)))
    );
    let cancelled = booking.cancel(user(1), held.id).await.unwrap();
    assert_eq!(cancelled.status, ReservationStatus::Cancelled);
    // A cancelled hold can be neither cancelled again nor paid: both say it is not held.
    let not_held = BookingError::NotHeld {
        id: held.id,
        status: ReservationStatus::Cancelled,
    };
    assert_eq!(
        booking.cancel(user(1), held.id).await,
        Err(not_held.clone())
    );
    charge(&booking, 1, 100_000, "k").await;
    let late = pay(&booking, 1, held.id, "after-cancel").await;
    assert_eq!(late.response.body, said::<PaymentReceipt>(&Err(not_held)));
    // The seat is free again.
    hold(&booking, 2, 3).await;
}

async fn an_expired_hold_frees_the_seat_at_once(backend: Backend) {
    let (_db, _pool, booking) = booking(backend).await;
    let seat = SeatId::new(4).unwrap();
    let short = HoldRules {
        hold_for: TimeDelta::milliseconds(300),
        ..rules()
    };
    let first = booking.hold_seat(user(1), seat, short).await.unwrap();
    assert!(matches!(
        booking.hold_seat(user(2), seat, short).await,
        Err(BookingError::SeatTaken(_))
    ));
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    // Before any sweep: the seat is free, and the old hold can no longer be paid.
    let second = booking.hold_seat(user(2), seat, rules()).await.unwrap();
    charge(&booking, 1, 100_000, "k").await;
    let late = pay(&booking, 1, first.id, "late").await;
    assert_eq!(
        late.response.body,
        said::<PaymentReceipt>(&Err(BookingError::HoldExpired(first.id)))
    );
    let swept = booking.expire_holds(Utc::now()).await.unwrap();
    assert!(swept.is_empty(), "the seat was re-held, nothing to free");
    let old = reservation(&booking, 1, first.id).await;
    assert_eq!(old.status, ReservationStatus::Expired);
    assert_eq!(
        reservation(&booking, 2, second.id).await.status,
        ReservationStatus::Held
    );
}

async fn windows_and_limits_are_enforced(backend: Backend) {
    let (_db, _pool, booking) = booking(backend).await;
    // Schedule 4 of concert 1 (seats 151..=200) opens in a week.
    assert!(matches!(
        try_hold(&booking, 1, 151).await,
        Err(BookingError::BookingClosed { .. })
    ));
    assert!(matches!(
        try_hold(&booking, 1, 999_999).await,
        Err(BookingError::SeatNotFound(_))
    ));
    for seat in 10..14 {
        hold(&booking, 1, seat).await;
    }
    assert_eq!(
        try_hold(&booking, 1, 14).await,
        Err(BookingError::HoldLimitReached { limit: 4 })
    );
    // Another schedule has its own limit...
    for seat in [51, 52, 53, 54, 101, 102] {
        hold(&booking, 1, seat).await;
    }
    // ...but not the user: ten live holds in all, on any schedules, are the most.
    assert_eq!(
        try_hold(&booking, 1, 201).await,
        Err(BookingError::UserHoldLimitReached { limit: 10 })
    );
    // Another user is not affected.
    hold(&booking, 2, 201).await;
}

/// Idempotency keys older than the retention are purged; younger ones stay.
async fn old_idempotency_keys_are_purged(backend: Backend) {
    let (db, _pool, booking) = booking(backend).await;
    performed(charge(&booking, 5, 100, "old").await);
    let cutoff = Utc::now() + TimeDelta::milliseconds(5);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    performed(charge(&booking, 5, 100, "young").await);
    assert_eq!(booking.purge_idempotency_keys(cutoff).await.unwrap(), 1);
    assert_eq!(
        db.count("SELECT count(*) AS n FROM idempotency_keys WHERE idem_key = 'young'"),
        1
    );
    // The purged key is a new request now; the young one still replays.
    performed(charge(&booking, 5, 100, "old").await);
    assert!(charge(&booking, 5, 100, "young").await.replayed);
    assert_eq!(booking.wallet(user(5)).await.unwrap().balance, 300);
}

/// `down`: reverts `conn`'s migrations to just before the recorded responses, later ones
/// first, and writes `old_rows` as the schema then kept them; else migrates it back up.
/// `migrations` is called for each use, since each use consumes the embedded set.
fn migrate_around_recorded_responses<B: diesel::backend::Backend>(
    conn: &mut (impl MigrationHarness<B> + SimpleConnection),
    migrations: fn() -> EmbeddedMigrations,
    down: bool,
    old_rows: &str,
) {
    /// The version of `2026-12-03-000003_recorded_responses`.
    const RECORDED_RESPONSES: &str = "20261203000003";
    if down {
        while conn
            .revert_last_migration(migrations())
            .unwrap()
            .to_string()
            != RECORDED_RESPONSES
        {}
        conn.batch_execute(old_rows).unwrap();
    } else {
        conn.run_pending_migrations(migrations()).unwrap();
    }
}

/// The migration to recorded responses keeps the answers of keys written before it, so a
/// retry with such a key still replays instead of charging or paying again; and its down
/// migration restores them.
async fn earlier_idempotency_answers_survive_the_migration(backend: Backend) {
    let (db, pool, booking) = booking(backend).await;
    let old_rows = "INSERT INTO idempotency_keys (user_id, idem_key, request, response, created_at) \
         VALUES (5, 'c', 'charge:100', '100', '2026-12-01 10:00:00'), \
                (5, 'p', 'pay:7', '3:15000', '2026-12-01 10:00:00')";
    let url = db.url().as_str().to_owned();
    let step = move |down: bool| match backend {
        Backend::Postgres => migrate_around_recorded_responses(
            &mut diesel::PgConnection::establish(&url).unwrap(),
            || marquee_persistence::migrations::POSTGRES,
            down,
            old_rows,
        ),
        Backend::Sqlite => migrate_around_recorded_responses(
            &mut diesel::SqliteConnection::establish(&url).unwrap(),
            || marquee_persistence::migrations::SQLITE,
            down,
            old_rows,
        ),
        Backend::Mysql => migrate_around_recorded_responses(
            &mut diesel::MysqlConnection::establish(&url).unwrap(),
            || marquee_persistence::migrations::MYSQL,
            down,
            old_rows,
        ),
    };
    // A key recorded now with a refusal has no compact form: the down migration drops it.
    let refused = booking
        .pay(
            user(6),
            ReservationId::new(99).unwrap(),
            key("refused"),
            render,
        )
        .await
        .unwrap();
    assert_eq!(refused.response.status, 409);
    drop(pool);
    step(true);
    assert_eq!(db.count("SELECT count(*) AS n FROM idempotency_keys"), 2);
    step(false);
    let charged = charge(&booking, 5, 100, "c").await;
    assert!(charged.replayed);
    assert_eq!(
        charged.response,
        RecordedResponse {
            status: 200,
            body: r#"{"userId":5,"balance":100}"#.into()
        }
    );
    let paid = booking
        .pay(user(5), ReservationId::new(7).unwrap(), key("p"), render)
        .await
        .unwrap();
    assert!(paid.replayed);
    assert_eq!(
        paid.response.body,
        r#"{"paymentId":3,"reservationId":7,"amount":15000,"status":"CONFIRMED"}"#
    );
    assert_eq!(
        booking.wallet(user(5)).await.unwrap().balance,
        0,
        "nothing ran again"
    );
}

/// A payment and a cancellation of one hold, sent at once: exactly one wins, and the loser
/// always hears the same thing for the same cause: a payment that lost to the cancellation
/// is `reservation-not-held` (never `hold-expired`), a cancellation that lost to the
/// payment is `already-paid`.
async fn pay_and_cancel_races_answer_one_code_each(backend: Backend) {
    let (_db, _pool, booking) = booking(backend).await;
    charge(&booking, 8, 10_000_000, "funds").await;
    let mut outcomes = std::collections::BTreeMap::new();
    for round in 0..3 {
        let holds: Vec<_> = (1..=4)
            .map(|n| SeatId::new(round * 50 + n).unwrap())
            .collect();
        let mut races = Vec::new();
        for seat in holds {
            let held = booking.hold_seat(user(8), seat, rules()).await.unwrap();
            let (a, b) = (booking.clone(), booking.clone());
            let pay = tokio::spawn(async move {
                a.pay(user(8), held.id, key(&format!("pay-{}", held.id)), render)
                    .await
            });
            let cancel = tokio::spawn(async move { b.cancel(user(8), held.id).await });
            races.push((held.id, pay, cancel));
        }
        for (id, pay, cancel) in races {
            let paid = pay.await.unwrap().unwrap();
            let cancelled = cancel.await.unwrap();
            let outcome = match (paid.performed.is_some(), &cancelled) {
                (true, Err(BookingError::AlreadyPaid(_))) => "paid",
                (false, Ok(_)) => {
                    assert_eq!(
                        paid.response.body,
                        said::<PaymentReceipt>(&Err(BookingError::NotHeld {
                            id,
                            status: ReservationStatus::Cancelled
                        }))
                    );
                    "cancelled"
                }
                other => panic!("both or neither won: {other:?} {paid:?}"),
            };
            *outcomes.entry(outcome).or_insert(0) += 1;
        }
    }
    assert_eq!(outcomes.values().sum::<i32>(), 12, "{outcomes:?}");
}

on_each_backend!(
    reservations_carry_their_schedule_and_concert,
    pay_and_cancel_races_answer_one_code_each,
    earlier_idempotency_answers_survive_the_migration,
    one_seat_two_hundred_users,
    a_thousand_users_fifty_seats_two_instances,
    concurrent_charges_all_apply_and_keys_charge_once,
    one_payment_whatever_the_retries,
    others_cannot_touch_a_reservation,
    an_expired_hold_frees_the_seat_at_once,
    windows_and_limits_are_enforced,
    old_idempotency_keys_are_purged,
);

/// A hold, a charge and a payment leave their writes prepared on the connection, once each:
/// the second booking reuses the first one's statements; the hold is one call, and the
/// payment and the charge are one call each with their key's claim. diesel prepares no
/// `UPDATE`, no `INSERT` of a derived `Insertable` and no `sql_query` by itself; written that
/// way, the database would plan each of them again on every call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: set MARQUEE_TEST_DATABASE_URL"]
async fn bookings_reuse_their_prepared_writes() {
    // One connection, so every statement below was prepared on the one that is asked.
    let (_db, pool) = pool_on(
        Backend::Postgres,
        PoolConfig {
            maximum_pool_size: 1,
            ..config()
        },
    );
    pool.seed(SeedPlan::DEMO).await.unwrap();
    let booking = DieselBooking::new(pool.clone(), MAX_BALANCE);
    for (u, seat) in [(41, 5), (42, 6)] {
        let held = hold(&booking, u, seat).await;
        charge(&booking, u, 100_000, &format!("charge-{u}")).await;
        performed(pay(&booking, u, held.id, &format!("pay-{u}")).await);
    }
    let statements = crate::prepared_statements(&pool).await;
    let prepared = |start: &str, table: &str| {
        statements
            .iter()
            .filter(|s| s.starts_with(start) && s.contains(table))
            .count()
    };
    for (start, table, count) in [
        // The hold is one call (marquee_hold); the payment's claim and work are one
        // (marquee_claim_and_pay), and so are the charge's (marquee_claim_and_credit):
        // PL/pgSQL plans and keeps their statements, none of which is sent on its own.
        ("SELECT outcome", "marquee_hold(", 1),
        ("SELECT claimed", "marquee_claim_and_pay(", 1),
        ("SELECT claimed", "marquee_claim_and_credit(", 1),
        ("SELECT pg_advisory_xact_lock", "", 0),
        ("INSERT", "\"reservations\"", 0),
        ("UPDATE", "\"seats\"", 0),
        ("UPDATE", "\"reservations\"", 0),
        ("INSERT", "\"payments\"", 0),
        ("DELETE", "\"queue_entries\"", 0),
        ("INSERT", "wallets", 0),
        ("UPDATE", "\"wallets\"", 0),
        ("UPDATE", "\"idempotency_keys\"", 1), // the recorded answer
        ("INSERT", "idempotency_keys", 0),     // the claims are in the calls
    ] {
        assert_eq!(
            prepared(start, table),
            count,
            "{start} {table}: {statements:#?}"
        );
    }
}
