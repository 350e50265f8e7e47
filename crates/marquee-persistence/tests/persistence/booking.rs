//! Bookings under contention, on both backends: the database decides every race.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{TimeDelta, Utc};
use diesel::prelude::*;
use marquee_domain::{
    BookingError, BookingRepository, HoldRules, IdempotencyKey, ReservationStatus, SeatId, UserId,
};
use marquee_persistence::{Backend, DbPool, DieselBooking, PoolConfig, SeedPlan};

use crate::{on_each_backend, pool_on};

const MAX_BALANCE: i64 = 1_000_000_000_000;

fn rules() -> HoldRules {
    HoldRules {
        hold_for: TimeDelta::minutes(5),
        max_holds_per_schedule: 4,
    }
}

fn user(id: i64) -> UserId {
    UserId::new(id).unwrap()
}

fn key(text: &str) -> IdempotencyKey {
    IdempotencyKey::new(text).unwrap()
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
            tokio::spawn(async move { booking.hold_seat(user(u), seat, rules(), Utc::now()).await })
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
            let booking = if u % 2 == 0 {
                first.clone()
            } else {
                second.clone()
            };
            // Seats 1..=50 are schedule 1's.
            let seat = SeatId::new(1 + (u * 7) % 50).unwrap();
            tokio::spawn(async move { booking.hold_seat(user(u), seat, rules(), Utc::now()).await })
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
            let held: i64 = seats::table
                .filter(seats::schedule_id.eq(1))
                .filter(seats::status.eq("HELD"))
                .count()
                .get_result(conn)?;
            let live: Vec<i64> = reservations::table
                .filter(reservations::status.eq("HELD"))
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
            tokio::spawn(async move { booking.charge(user(7), 10, key(&format!("c{i}"))).await })
        })
        .collect();
    for charge in charges {
        charge.await.unwrap().unwrap();
    }
    assert_eq!(booking.wallet(user(7)).await.unwrap().balance, 1_000);

    let replays: Vec<_> = (0..10)
        .map(|_| {
            let booking = booking.clone();
            tokio::spawn(async move { booking.charge(user(7), 10, key("same")).await })
        })
        .collect();
    let mut answers = HashSet::new();
    for replay in replays {
        answers.insert(replay.await.unwrap().unwrap().balance);
    }
    assert_eq!(answers.len(), 1, "every replay gets the first answer");
    assert_eq!(booking.wallet(user(7)).await.unwrap().balance, 1_010);
    assert_eq!(
        booking.charge(user(7), 20, key("same")).await,
        Err(BookingError::IdempotencyKeyReused)
    );
    assert_eq!(
        booking.charge(user(7), MAX_BALANCE, key("too-much")).await,
        Err(BookingError::BalanceLimit { limit: MAX_BALANCE })
    );
}

async fn one_payment_whatever_the_retries(backend: Backend) {
    let (_db, pool, booking) = booking(backend).await;
    let held = booking
        .hold_seat(user(3), SeatId::new(2).unwrap(), rules(), Utc::now())
        .await
        .unwrap();
    assert_eq!(
        booking.pay(user(3), held.id, key("p1"), Utc::now()).await,
        Err(BookingError::InsufficientBalance {
            balance: 0,
            needed: held.price
        })
    );
    booking
        .charge(user(3), 50_000, key("top-up"))
        .await
        .unwrap();
    let retries: Vec<_> = (0..20)
        .map(|_| {
            let booking = booking.clone();
            tokio::spawn(async move { booking.pay(user(3), held.id, key("p1"), Utc::now()).await })
        })
        .collect();
    let mut receipts = HashSet::new();
    for retry in retries {
        let receipt = retry.await.unwrap().unwrap();
        receipts.insert((receipt.payment_id, receipt.amount));
    }
    assert_eq!(receipts.len(), 1, "20 identical answers");
    assert_eq!(
        booking.wallet(user(3)).await.unwrap().balance,
        50_000 - held.price,
        "one debit"
    );
    assert_eq!(
        booking.pay(user(3), held.id, key("p2"), Utc::now()).await,
        Err(BookingError::AlreadyPaid(held.id))
    );
    let paid = booking
        .reservation(user(3), held.id)
        .await
        .unwrap()
        .unwrap();
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

async fn others_cannot_touch_a_reservation(backend: Backend) {
    let (_db, _pool, booking) = booking(backend).await;
    let held = booking
        .hold_seat(user(1), SeatId::new(3).unwrap(), rules(), Utc::now())
        .await
        .unwrap();
    booking.charge(user(2), 100_000, key("k")).await.unwrap();
    assert_eq!(booking.reservation(user(2), held.id).await.unwrap(), None);
    assert!(booking.reservations(user(2)).await.unwrap().is_empty());
    assert_eq!(
        booking.cancel(user(2), held.id, Utc::now()).await,
        Err(BookingError::ReservationNotFound(held.id))
    );
    assert_eq!(
        booking
            .pay(user(2), held.id, key("steal"), Utc::now())
            .await,
        Err(BookingError::ReservationNotFound(held.id))
    );
    let cancelled = booking.cancel(user(1), held.id, Utc::now()).await.unwrap();
    assert_eq!(cancelled.status, ReservationStatus::Cancelled);
    // The seat is free again.
    booking
        .hold_seat(user(2), SeatId::new(3).unwrap(), rules(), Utc::now())
        .await
        .unwrap();
}

async fn an_expired_hold_frees_the_seat_at_once(backend: Backend) {
    let (_db, _pool, booking) = booking(backend).await;
    let seat = SeatId::new(4).unwrap();
    let short = HoldRules {
        hold_for: TimeDelta::milliseconds(300),
        ..rules()
    };
    let first = booking
        .hold_seat(user(1), seat, short, Utc::now())
        .await
        .unwrap();
    assert!(matches!(
        booking.hold_seat(user(2), seat, short, Utc::now()).await,
        Err(BookingError::SeatTaken(_))
    ));
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    // Before any sweep: the seat is free, and the old hold can no longer be paid.
    let second = booking
        .hold_seat(user(2), seat, rules(), Utc::now())
        .await
        .unwrap();
    booking.charge(user(1), 100_000, key("k")).await.unwrap();
    assert_eq!(
        booking
            .pay(user(1), first.id, key("late"), Utc::now())
            .await,
        Err(BookingError::HoldExpired(first.id))
    );
    let swept = booking.expire_holds(Utc::now()).await.unwrap();
    assert!(swept.is_empty(), "the seat was re-held, nothing to free");
    let old = booking
        .reservation(user(1), first.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(old.status, ReservationStatus::Expired);
    assert_eq!(
        booking
            .reservation(user(2), second.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        ReservationStatus::Held
    );
}

async fn windows_and_limits_are_enforced(backend: Backend) {
    let (_db, _pool, booking) = booking(backend).await;
    // Schedule 4 of concert 1 (seats 151..=200) opens in a week.
    assert!(matches!(
        booking
            .hold_seat(user(1), SeatId::new(151).unwrap(), rules(), Utc::now())
            .await,
        Err(BookingError::BookingClosed { .. })
    ));
    assert!(matches!(
        booking
            .hold_seat(user(1), SeatId::new(999_999).unwrap(), rules(), Utc::now())
            .await,
        Err(BookingError::SeatNotFound(_))
    ));
    for seat in 10..14 {
        booking
            .hold_seat(user(1), SeatId::new(seat).unwrap(), rules(), Utc::now())
            .await
            .unwrap();
    }
    assert_eq!(
        booking
            .hold_seat(user(1), SeatId::new(14).unwrap(), rules(), Utc::now())
            .await,
        Err(BookingError::HoldLimitReached { limit: 4 })
    );
    // Another schedule has its own limit.
    booking
        .hold_seat(user(1), SeatId::new(60).unwrap(), rules(), Utc::now())
        .await
        .unwrap();
}

on_each_backend!(
    one_seat_two_hundred_users,
    a_thousand_users_fifty_seats_two_instances,
    concurrent_charges_all_apply_and_keys_charge_once,
    one_payment_whatever_the_retries,
    others_cannot_touch_a_reservation,
    an_expired_hold_frees_the_seat_at_once,
    windows_and_limits_are_enforced,
);
