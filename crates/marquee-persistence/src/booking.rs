//! [`DieselBooking`]: the booking port on the database.
//!
//! Every operation is one write transaction (see `write_transaction!`) whose decisive step
//! is a statement the database checks: a conditional `UPDATE` whose affected-row count says
//! whether the seat was free, the hold still live, the balance sufficient. No decision is
//! taken on a value read earlier in application code, so instances racing on one seat
//! cannot both win. The `payments.reservation_id` unique key makes a second payment of a
//! reservation impossible even by mistake, and the `(user, Idempotency-Key)` primary key
//! makes a retried request find the first one's answer.

use std::collections::BTreeSet;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, SubsecRound, Utc};
use diesel::prelude::*;
use marquee_domain::{
    BookingError, BookingRepository, ConcertId, HoldRules, IdempotencyKey, Money, PaymentReceipt,
    Reservation, ReservationId, ReservationStatus, ScheduleId, SeatId, UserId, Wallet,
};

use crate::connection::write_transaction;
use crate::error::PersistenceError;
use crate::pool::DbPool;
use crate::schema::{idempotency_keys, payments, reservations, schedules, seats, wallets};

/// Bookings through a [`DbPool`].
#[derive(Debug, Clone)]
pub struct DieselBooking {
    pool: DbPool,
    /// The most a wallet may hold, so that balances cannot overflow.
    max_balance: Money,
}

impl DieselBooking {
    pub fn new(pool: DbPool, max_balance: Money) -> Self {
        Self { pool, max_balance }
    }
}

/// A transaction's way out: a refusal to report, or a database error. Either rolls back.
#[derive(Debug)]
enum Abort {
    Refused(BookingError),
    Database(diesel::result::Error),
}

impl From<diesel::result::Error> for Abort {
    fn from(error: diesel::result::Error) -> Self {
        Self::Database(error)
    }
}

impl From<BookingError> for Abort {
    fn from(error: BookingError) -> Self {
        Self::Refused(error)
    }
}

impl From<PersistenceError> for BookingError {
    fn from(error: PersistenceError) -> Self {
        Self::Repository(error.into())
    }
}

fn finish<T>(result: Result<T, Abort>) -> Result<T, PersistenceError> {
    match result {
        Ok(value) => Ok(value),
        Err(Abort::Database(error)) => Err(PersistenceError::Query(error)),
        Err(Abort::Refused(refusal)) => Err(PersistenceError::Refused(Box::new(refusal))),
    }
}

/// Unwraps a refusal carried through the pool's error type.
fn booking_error(error: PersistenceError) -> BookingError {
    match error {
        PersistenceError::Refused(refusal) => *refusal,
        other => other.into(),
    }
}

#[derive(Queryable, Selectable, Debug)]
#[diesel(table_name = reservations)]
struct ReservationRow {
    id: i64,
    user_id: i64,
    seat_id: i64,
    schedule_id: i64,
    status: String,
    price: i64,
    expires_at: NaiveDateTime,
}

impl ReservationRow {
    fn into_domain(self) -> Result<Reservation, Abort> {
        let corrupt = |what: String| {
            Abort::Database(diesel::result::Error::DeserializationError(what.into()))
        };
        Ok(Reservation {
            id: ReservationId::new(self.id).map_err(|e| corrupt(e.to_string()))?,
            user_id: UserId::new(self.user_id).map_err(|e| corrupt(e.to_string()))?,
            seat_id: SeatId::new(self.seat_id).map_err(|e| corrupt(e.to_string()))?,
            schedule_id: ScheduleId::new(self.schedule_id).map_err(|e| corrupt(e.to_string()))?,
            status: ReservationStatus::from_stored(&self.status)
                .ok_or_else(|| corrupt(format!("reservation status {:?}", self.status)))?,
            price: self.price,
            expires_at: self.expires_at.and_utc(),
        })
    }
}

#[derive(Insertable)]
#[diesel(table_name = reservations)]
struct NewReservation {
    user_id: i64,
    seat_id: i64,
    schedule_id: i64,
    status: &'static str,
    price: i64,
    expires_at: NaiveDateTime,
    created_at: NaiveDateTime,
}

#[derive(Insertable)]
#[diesel(table_name = idempotency_keys)]
struct NewClaim<'a> {
    user_id: i64,
    idem_key: &'a str,
    request: &'a str,
    created_at: NaiveDateTime,
}

/// What claiming an idempotency key found.
enum Claim {
    /// The key is new: this request goes ahead, and stores its answer.
    New,
    /// A request with this key has been answered: here is the answer.
    Replay(String),
}

/// Claims `(user, key)` for `request` as the transaction's first statement; evaluates to
/// `Claim`, or returns `IdempotencyKeyReused` from the enclosing closure if the key came
/// with another request. A macro because the body runs on each concrete connection type.
///
/// On PostgreSQL, a concurrent claim of the same key waits on the first one's row until it
/// commits or rolls back, then finds the stored answer (or takes the key over).
macro_rules! claim_key {
    ($c:ident, $user:expr, $key:expr, $request:expr, $now:expr) => {{
        let claimed = diesel::insert_into(idempotency_keys::table)
            .values(&NewClaim {
                user_id: $user.get(),
                idem_key: $key.as_str(),
                request: $request,
                created_at: $now,
            })
            .on_conflict_do_nothing()
            .execute($c)?;
        if claimed == 1 {
            Claim::New
        } else {
            let (stored, response): (String, Option<String>) = idempotency_keys::table
                .find(($user.get(), $key.as_str()))
                .select((idempotency_keys::request, idempotency_keys::response))
                .first($c)?;
            if stored != *$request {
                return Err(Abort::Refused(BookingError::IdempotencyKeyReused));
            }
            Claim::Replay(response.unwrap_or_default())
        }
    }};
}

/// Serialises writers per (user, schedule) where the database does not already: on
/// PostgreSQL, a transaction-scoped advisory lock, so that one user's concurrent holds on
/// one schedule are counted one at a time against the per-user limit; SQLite's immediate
/// transactions serialise every writer anyway.
trait HoldLock {
    fn lock_user_schedule(&mut self, user: i64, schedule: i64) -> QueryResult<()>;
}

impl HoldLock for diesel::PgConnection {
    fn lock_user_schedule(&mut self, user: i64, schedule: i64) -> QueryResult<()> {
        diesel::sql_query("SELECT pg_advisory_xact_lock($1, $2)")
            .bind::<diesel::sql_types::Integer, _>((user % i64::from(i32::MAX)) as i32)
            .bind::<diesel::sql_types::Integer, _>((schedule % i64::from(i32::MAX)) as i32)
            .execute(self)
            .map(drop)
    }
}

impl HoldLock for diesel::SqliteConnection {
    fn lock_user_schedule(&mut self, _user: i64, _schedule: i64) -> QueryResult<()> {
        Ok(())
    }
}

/// A stored value that breaks an invariant: a failed query, not the caller's fault.
fn corrupt(reason: String) -> BookingError {
    BookingError::Repository(marquee_domain::RepositoryError::Query { reason })
}

fn naive(at: DateTime<Utc>) -> NaiveDateTime {
    at.naive_utc()
}

#[async_trait]
impl BookingRepository for DieselBooking {
    async fn wallet(&self, user: UserId) -> Result<Wallet, BookingError> {
        let balance = self
            .pool
            .run(move |conn| {
                Ok(wallets::table
                    .find(user.get())
                    .select(wallets::balance)
                    .first::<i64>(conn)
                    .optional()?
                    .unwrap_or(0))
            })
            .await?;
        Ok(Wallet {
            user_id: user,
            balance,
        })
    }

    async fn charge(
        &self,
        user: UserId,
        amount: Money,
        key: IdempotencyKey,
    ) -> Result<Wallet, BookingError> {
        let max_balance = self.max_balance;
        let request = format!("charge:{amount}");
        let balance = self
            .pool
            .run(move |conn| {
                let now = naive(Utc::now());
                finish(write_transaction!(conn, |c| {
                    if let Claim::Replay(answer) = claim_key!(c, user, &key, &request, now) {
                        return answer
                            .parse::<i64>()
                            .map_err(|_| Abort::Database(diesel::result::Error::NotFound));
                    }
                    diesel::insert_into(wallets::table)
                        .values((wallets::user_id.eq(user.get()), wallets::balance.eq(0)))
                        .on_conflict_do_nothing()
                        .execute(c)?;
                    let credited = diesel::update(
                        wallets::table
                            .find(user.get())
                            .filter(wallets::balance.le(max_balance - amount)),
                    )
                    .set(wallets::balance.eq(wallets::balance + amount))
                    .execute(c)?;
                    if credited == 0 {
                        return Err(Abort::Refused(BookingError::BalanceLimit {
                            limit: max_balance,
                        }));
                    }
                    let balance: i64 = wallets::table
                        .find(user.get())
                        .select(wallets::balance)
                        .first(c)?;
                    diesel::update(idempotency_keys::table.find((user.get(), key.as_str())))
                        .set(idempotency_keys::response.eq(Some(balance.to_string())))
                        .execute(c)?;
                    Ok(balance)
                }))
            })
            .await
            .map_err(booking_error)?;
        Ok(Wallet {
            user_id: user,
            balance,
        })
    }

    async fn hold_seat(
        &self,
        user: UserId,
        seat: SeatId,
        rules: HoldRules,
        now: DateTime<Utc>,
    ) -> Result<Reservation, BookingError> {
        // Millisecond precision: the same instant whichever backend stores it (PostgreSQL
        // keeps microseconds, SQLite the text it is given), and what the API shows.
        let now = now.trunc_subsecs(3);
        let until = now + rules.hold_for;
        self.pool
            .run(move |conn| {
                let (now, until) = (naive(now), naive(until));
                finish(write_transaction!(conn, |c| {
                    let (schedule, price): (i64, i64) = seats::table
                        .find(seat.get())
                        .select((seats::schedule_id, seats::price))
                        .first(c)
                        .optional()?
                        .ok_or(BookingError::SeatNotFound(seat))?;
                    let (opens, closes): (NaiveDateTime, NaiveDateTime) = schedules::table
                        .find(schedule)
                        .select((schedules::booking_opens_at, schedules::booking_closes_at))
                        .first(c)?;
                    if !(opens <= now && now < closes) {
                        return Err(Abort::Refused(BookingError::BookingClosed {
                            opens: opens.and_utc(),
                            closes: closes.and_utc(),
                        }));
                    }
                    c.lock_user_schedule(user.get(), schedule)?;
                    let live_holds: i64 = seats::table
                        .filter(seats::schedule_id.eq(schedule))
                        .filter(seats::held_by.eq(user.get()))
                        .filter(seats::status.eq("HELD"))
                        .filter(seats::held_until.gt(now))
                        .count()
                        .get_result(c)?;
                    if live_holds >= rules.max_holds_per_schedule {
                        return Err(Abort::Refused(BookingError::HoldLimitReached {
                            limit: rules.max_holds_per_schedule,
                        }));
                    }
                    // The arbiter: only one transaction can move the seat out of "free".
                    let taken = diesel::update(
                        seats::table.find(seat.get()).filter(
                            seats::status.eq("AVAILABLE").or(seats::status
                                .eq("HELD")
                                .and(seats::held_until.le(now).assume_not_null())),
                        ),
                    )
                    .set((
                        seats::status.eq("HELD"),
                        seats::held_by.eq(Some(user.get())),
                        seats::held_until.eq(Some(until)),
                    ))
                    .execute(c)?;
                    if taken == 0 {
                        return Err(Abort::Refused(BookingError::SeatTaken(seat)));
                    }
                    let row: ReservationRow = diesel::insert_into(reservations::table)
                        .values(&NewReservation {
                            user_id: user.get(),
                            seat_id: seat.get(),
                            schedule_id: schedule,
                            status: ReservationStatus::Held.as_str(),
                            price,
                            expires_at: until,
                            created_at: now,
                        })
                        .returning(ReservationRow::as_returning())
                        .get_result(c)?;
                    row.into_domain()
                }))
            })
            .await
            .map_err(booking_error)
    }

    async fn reservation(
        &self,
        user: UserId,
        id: ReservationId,
    ) -> Result<Option<Reservation>, BookingError> {
        self.pool
            .run(move |conn| {
                let row = reservations::table
                    .find(id.get())
                    .filter(reservations::user_id.eq(user.get()))
                    .select(ReservationRow::as_select())
                    .first(conn)
                    .optional()?;
                finish(row.map(ReservationRow::into_domain).transpose())
            })
            .await
            .map_err(booking_error)
    }

    async fn reservations(&self, user: UserId) -> Result<Vec<Reservation>, BookingError> {
        self.pool
            .run(move |conn| {
                let rows = reservations::table
                    .filter(reservations::user_id.eq(user.get()))
                    .order(reservations::id.desc())
                    .limit(100)
                    .select(ReservationRow::as_select())
                    .load(conn)?;
                finish(rows.into_iter().map(ReservationRow::into_domain).collect())
            })
            .await
            .map_err(booking_error)
    }

    async fn cancel(
        &self,
        user: UserId,
        id: ReservationId,
        now: DateTime<Utc>,
    ) -> Result<Reservation, BookingError> {
        self.pool
            .run(move |conn| {
                finish(write_transaction!(conn, |c| {
                    let row: ReservationRow = reservations::table
                        .find(id.get())
                        .filter(reservations::user_id.eq(user.get()))
                        .select(ReservationRow::as_select())
                        .first(c)
                        .optional()?
                        .ok_or(BookingError::ReservationNotFound(id))?;
                    let mut reservation = row.into_domain()?;
                    match reservation.effective_status(now) {
                        ReservationStatus::Held => {}
                        ReservationStatus::Expired => {
                            return Err(Abort::Refused(BookingError::HoldExpired(id)));
                        }
                        status => return Err(Abort::Refused(BookingError::NotHeld { id, status })),
                    }
                    // Seat first, then reservation: the order pay and the sweep lock them in,
                    // so that concurrent operations on one hold cannot deadlock.
                    let freed = diesel::update(
                        seats::table
                            .find(reservation.seat_id.get())
                            .filter(seats::status.eq("HELD"))
                            .filter(seats::held_by.eq(user.get()))
                            .filter(seats::held_until.eq(naive(reservation.expires_at))),
                    )
                    .set((
                        seats::status.eq("AVAILABLE"),
                        seats::held_by.eq(None::<i64>),
                        seats::held_until.eq(None::<NaiveDateTime>),
                    ))
                    .execute(c)?;
                    let cancelled = diesel::update(
                        reservations::table
                            .find(id.get())
                            .filter(reservations::status.eq("HELD")),
                    )
                    .set(reservations::status.eq("CANCELLED"))
                    .execute(c)?;
                    if freed == 0 || cancelled == 0 {
                        // Lost a race: paid, cancelled or swept meanwhile.
                        let status: String = reservations::table
                            .find(id.get())
                            .select(reservations::status)
                            .first(c)?;
                        return Err(Abort::Refused(match status.as_str() {
                            "CONFIRMED" => BookingError::AlreadyPaid(id),
                            "HELD" | "EXPIRED" => BookingError::HoldExpired(id),
                            _ => BookingError::NotHeld {
                                id,
                                status: ReservationStatus::Cancelled,
                            },
                        }));
                    }
                    reservation.status = ReservationStatus::Cancelled;
                    Ok(reservation)
                }))
            })
            .await
            .map_err(booking_error)
    }

    async fn pay(
        &self,
        user: UserId,
        id: ReservationId,
        key: IdempotencyKey,
        now: DateTime<Utc>,
    ) -> Result<PaymentReceipt, BookingError> {
        let request = format!("pay:{id}");
        let answer = self
            .pool
            .run(move |conn| {
                let now_utc = now;
                let now = naive(now);
                finish(write_transaction!(conn, |c| {
                    if let Claim::Replay(answer) = claim_key!(c, user, &key, &request, now) {
                        return Ok(answer);
                    }
                    let row: ReservationRow = reservations::table
                        .find(id.get())
                        .filter(reservations::user_id.eq(user.get()))
                        .select(ReservationRow::as_select())
                        .first(c)
                        .optional()?
                        .ok_or(BookingError::ReservationNotFound(id))?;
                    let reservation = row.into_domain()?;
                    match reservation.effective_status(now_utc) {
                        ReservationStatus::Held => {}
                        ReservationStatus::Confirmed => {
                            return Err(Abort::Refused(BookingError::AlreadyPaid(id)));
                        }
                        ReservationStatus::Expired => {
                            return Err(Abort::Refused(BookingError::HoldExpired(id)));
                        }
                        status => return Err(Abort::Refused(BookingError::NotHeld { id, status })),
                    }
                    // The seat is still this hold's (same holder, same expiry, not run out).
                    let sold = diesel::update(
                        seats::table
                            .find(reservation.seat_id.get())
                            .filter(seats::status.eq("HELD"))
                            .filter(seats::held_by.eq(user.get()))
                            .filter(seats::held_until.eq(naive(reservation.expires_at)))
                            .filter(seats::held_until.gt(now)),
                    )
                    .set((
                        seats::status.eq("SOLD"),
                        seats::held_by.eq(None::<i64>),
                        seats::held_until.eq(None::<NaiveDateTime>),
                    ))
                    .execute(c)?;
                    if sold == 0 {
                        // Lost a race: another payment (with another key) sold it, or the
                        // hold ran out.
                        let status: String = reservations::table
                            .find(id.get())
                            .select(reservations::status)
                            .first(c)?;
                        return Err(Abort::Refused(if status == "CONFIRMED" {
                            BookingError::AlreadyPaid(id)
                        } else {
                            BookingError::HoldExpired(id)
                        }));
                    }
                    let confirmed = diesel::update(
                        reservations::table
                            .find(id.get())
                            .filter(reservations::status.eq("HELD")),
                    )
                    .set(reservations::status.eq("CONFIRMED"))
                    .execute(c)?;
                    if confirmed == 0 {
                        return Err(Abort::Refused(BookingError::AlreadyPaid(id)));
                    }
                    let price = reservation.price;
                    let debited = diesel::update(
                        wallets::table
                            .find(user.get())
                            .filter(wallets::balance.ge(price)),
                    )
                    .set(wallets::balance.eq(wallets::balance - price))
                    .execute(c)?;
                    if debited == 0 {
                        let balance = wallets::table
                            .find(user.get())
                            .select(wallets::balance)
                            .first::<i64>(c)
                            .optional()?
                            .unwrap_or(0);
                        return Err(Abort::Refused(BookingError::InsufficientBalance {
                            balance,
                            needed: price,
                        }));
                    }
                    let payment: i64 = diesel::insert_into(payments::table)
                        .values((
                            payments::reservation_id.eq(id.get()),
                            payments::user_id.eq(user.get()),
                            payments::amount.eq(price),
                            payments::paid_at.eq(now),
                        ))
                        .returning(payments::id)
                        .get_result(c)?;
                    let answer = format!("{payment}:{price}");
                    diesel::update(idempotency_keys::table.find((user.get(), key.as_str())))
                        .set(idempotency_keys::response.eq(Some(answer.clone())))
                        .execute(c)?;
                    Ok(answer)
                }))
            })
            .await
            .map_err(booking_error)?;
        let (payment, amount) = answer
            .split_once(':')
            .and_then(|(p, a)| Some((p.parse::<i64>().ok()?, a.parse::<i64>().ok()?)))
            .ok_or_else(|| corrupt(format!("stored payment answer {answer:?} is malformed")))?;
        Ok(PaymentReceipt {
            payment_id: marquee_domain::PaymentId::new(payment)
                .map_err(|e| corrupt(e.to_string()))?,
            reservation_id: id,
            amount,
        })
    }

    async fn expire_holds(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<(ScheduleId, ConcertId)>, BookingError> {
        let freed = self
            .pool
            .run(move |conn| {
                let now = naive(now);
                finish(write_transaction!(conn, |c| {
                    let freed: Vec<i64> = diesel::update(
                        seats::table
                            .filter(seats::status.eq("HELD"))
                            .filter(seats::held_until.le(now)),
                    )
                    .set((
                        seats::status.eq("AVAILABLE"),
                        seats::held_by.eq(None::<i64>),
                        seats::held_until.eq(None::<NaiveDateTime>),
                    ))
                    .returning(seats::schedule_id)
                    .get_results(c)?;
                    diesel::update(
                        reservations::table
                            .filter(reservations::status.eq("HELD"))
                            .filter(reservations::expires_at.le(now)),
                    )
                    .set(reservations::status.eq("EXPIRED"))
                    .execute(c)?;
                    let ids: BTreeSet<i64> = freed.into_iter().collect();
                    let pairs: Vec<(i64, i64)> = schedules::table
                        .filter(schedules::id.eq_any(ids))
                        .select((schedules::id, schedules::concert_id))
                        .load(c)?;
                    Ok::<_, Abort>(pairs)
                }))
            })
            .await
            .map_err(booking_error)?;
        Ok(freed
            .into_iter()
            .filter_map(|(schedule, concert)| {
                Some((
                    ScheduleId::new(schedule).ok()?,
                    ConcertId::new(concert).ok()?,
                ))
            })
            .collect())
    }

    async fn seat_location(
        &self,
        seat: SeatId,
    ) -> Result<Option<(ScheduleId, ConcertId)>, BookingError> {
        let found = self
            .pool
            .run(move |conn| {
                Ok(seats::table
                    .inner_join(schedules::table)
                    .filter(seats::id.eq(seat.get()))
                    .select((schedules::id, schedules::concert_id))
                    .first::<(i64, i64)>(conn)
                    .optional()?)
            })
            .await?;
        Ok(found.and_then(|(schedule, concert)| {
            Some((
                ScheduleId::new(schedule).ok()?,
                ConcertId::new(concert).ok()?,
            ))
        }))
    }
}
