//! [`DieselBooking`]: the booking port on the database.
//!
//! Every operation is one write transaction (see `write_transaction!`) whose decisive step
//! is a statement the database checks: a conditional `UPDATE` whose affected-row count says
//! whether the seat was free, the balance sufficient. What an operation reads to choose its
//! refusal (is the hold still live, paid, cancelled?) it reads after locking the seat row,
//! and it takes the time of the decision after that, so no decision rests on a value or a
//! time from before a wait, and instances racing on one seat cannot both win. The
//! `payments.reservation_id` unique key makes a second payment of a reservation impossible
//! even by mistake, and the `(user, Idempotency-Key)` primary key makes a retried request
//! find the response recorded for the first one.

use std::collections::BTreeSet;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, SubsecRound, Utc};
use diesel::prelude::*;
use marquee_domain::{
    Answered, BookingError, BookingRepository, ConcertId, HoldRules, IdempotencyKey, Money,
    PaymentReceipt, RecordedResponse, Render, Reservation, ReservationId, ReservationStatus,
    ScheduleId, SeatId, UserId, Wallet,
};

use crate::abort::corrupt_row;
use crate::connection::{DbConnection, write_transaction};
use crate::error::PersistenceError;
use crate::pool::DbPool;
use crate::prepared::update_where;
use crate::schema::{
    idempotency_keys, payments, queue_entries, reservations, schedules, seats, wallets,
};
use crate::status::{QueueEntryState, ReservationState, SeatState};

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

    /// Runs `work` on a pooled connection; a refusal it returns is the caller's answer, a
    /// database or pool failure a `BookingError::Repository`.
    async fn run<T, F>(&self, work: F) -> Result<T, BookingError>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, Abort> + Send + 'static,
        T: Send + 'static,
    {
        Ok(self.pool.run_as(work).await?)
    }
}

/// A booking operation's way out.
type Abort = crate::abort::Abort<BookingError>;

impl From<BookingError> for Abort {
    fn from(error: BookingError) -> Self {
        Self::Refused(error)
    }
}

impl From<Abort> for BookingError {
    fn from(abort: Abort) -> Self {
        match abort {
            Abort::Refused(refusal) => refusal,
            Abort::Database(error) => Self::Repository(PersistenceError::Query(error).into()),
            Abort::Pool(error) => Self::Repository(PersistenceError::Pool(error).into()),
        }
    }
}

#[derive(Queryable, Selectable, Debug)]
#[diesel(table_name = reservations)]
struct ReservationRow {
    id: i64,
    user_id: i64,
    seat_id: i64,
    schedule_id: i64,
    status: ReservationState,
    price: i64,
    expires_at: NaiveDateTime,
}

/// Reservations joined with their schedules, for the concert each belongs to; select
/// `(ReservationRow::as_select(), schedules::concert_id)` from it.
macro_rules! reservations_with_concerts {
    () => {
        reservations::table
            .inner_join(schedules::table.on(schedules::id.eq(reservations::schedule_id)))
    };
}

impl ReservationRow {
    /// The reservation, with the concert of its schedule.
    fn into_domain(self, concert: i64) -> Result<Reservation, Abort> {
        let corrupt = |what: String| Abort::Database(corrupt_row(what));
        Ok(Reservation {
            id: ReservationId::new(self.id).map_err(|e| corrupt(e.to_string()))?,
            user_id: UserId::new(self.user_id).map_err(|e| corrupt(e.to_string()))?,
            seat_id: SeatId::new(self.seat_id).map_err(|e| corrupt(e.to_string()))?,
            schedule_id: ScheduleId::new(self.schedule_id).map_err(|e| corrupt(e.to_string()))?,
            concert_id: ConcertId::new(concert).map_err(|e| corrupt(e.to_string()))?,
            status: self.status.into(),
            price: self.price,
            expires_at: self.expires_at.and_utc(),
        })
    }
}

struct NewReservation {
    user_id: i64,
    seat_id: i64,
    schedule_id: i64,
    status: ReservationState,
    price: i64,
    expires_at: NaiveDateTime,
    created_at: NaiveDateTime,
}

struct NewPayment {
    reservation_id: i64,
    user_id: i64,
    amount: i64,
    paid_at: NaiveDateTime,
}

// The `INSERT` values of a reservation, a payment and a claim are written column by column
// rather than by a derived `Insertable`: diesel writes a derived struct's values so that each
// may become `DEFAULT`, and does not prepare such a statement once per connection (see
// `prepared`); column by column it does.

type ReservationValues = (
    diesel::dsl::Eq<reservations::user_id, i64>,
    diesel::dsl::Eq<reservations::seat_id, i64>,
    diesel::dsl::Eq<reservations::schedule_id, i64>,
    diesel::dsl::Eq<reservations::status, ReservationState>,
    diesel::dsl::Eq<reservations::price, i64>,
    diesel::dsl::Eq<reservations::expires_at, NaiveDateTime>,
    diesel::dsl::Eq<reservations::created_at, NaiveDateTime>,
);

impl NewReservation {
    fn values(&self) -> ReservationValues {
        (
            reservations::user_id.eq(self.user_id),
            reservations::seat_id.eq(self.seat_id),
            reservations::schedule_id.eq(self.schedule_id),
            reservations::status.eq(self.status),
            reservations::price.eq(self.price),
            reservations::expires_at.eq(self.expires_at),
            reservations::created_at.eq(self.created_at),
        )
    }
}

type PaymentValues = (
    diesel::dsl::Eq<payments::reservation_id, i64>,
    diesel::dsl::Eq<payments::user_id, i64>,
    diesel::dsl::Eq<payments::amount, i64>,
    diesel::dsl::Eq<payments::paid_at, NaiveDateTime>,
);

impl NewPayment {
    fn values(&self) -> PaymentValues {
        (
            payments::reservation_id.eq(self.reservation_id),
            payments::user_id.eq(self.user_id),
            payments::amount.eq(self.amount),
            payments::paid_at.eq(self.paid_at),
        )
    }
}

struct NewClaim<'a> {
    user_id: i64,
    idem_key: &'a str,
    request: &'a str,
    created_at: NaiveDateTime,
}

type ClaimValues<'a> = (
    diesel::dsl::Eq<idempotency_keys::user_id, i64>,
    diesel::dsl::Eq<idempotency_keys::idem_key, &'a str>,
    diesel::dsl::Eq<idempotency_keys::request, &'a str>,
    diesel::dsl::Eq<idempotency_keys::created_at, NaiveDateTime>,
);

impl<'a> NewClaim<'a> {
    fn values(&self) -> ClaimValues<'a> {
        (
            idempotency_keys::user_id.eq(self.user_id),
            idempotency_keys::idem_key.eq(self.idem_key),
            idempotency_keys::request.eq(self.request),
            idempotency_keys::created_at.eq(self.created_at),
        )
    }
}

/// What claiming an idempotency key found.
enum Claim {
    /// The key is new: this request goes ahead, and records its response.
    New,
    /// A request with this key has been answered: here is its response.
    Replay(RecordedResponse),
}

/// Claims `(user, key)` for `request` as the transaction's first statement; evaluates to
/// `Claim`, or returns `IdempotencyKeyReused` from the enclosing closure if the key came
/// with another request. A macro because the body runs on each concrete connection type.
///
/// On PostgreSQL and MariaDB, a concurrent claim of the same key waits on the first one's row
/// until it commits or rolls back, then finds the recorded response (or takes the key over).
macro_rules! claim_key {
    ($c:ident, $user:expr, $key:expr, $request:expr) => {{
        let claimed = $c.claim(&NewClaim {
            user_id: $user.get(),
            idem_key: $key.as_str(),
            request: $request,
            created_at: naive(Utc::now()),
        })?;
        if claimed {
            Claim::New
        } else {
            Claim::Replay(recorded_answer!($c, $user, $key, $request))
        }
    }};
}

/// The response recorded under `(user, key)`, a key that is claimed already: evaluates to
/// the `RecordedResponse`, or returns `IdempotencyKeyReused` from the enclosing closure if
/// the key came with another request.
macro_rules! recorded_answer {
    ($c:ident, $user:expr, $key:expr, $request:expr) => {{
        let (stored, status, body): (String, Option<i32>, Option<String>) = idempotency_keys::table
            .find(($user.get(), $key.as_str()))
            .select((
                idempotency_keys::request,
                idempotency_keys::response_status,
                idempotency_keys::response_body,
            ))
            .first($c)?;
        if stored != *$request {
            return Err(Abort::Refused(BookingError::IdempotencyKeyReused));
        }
        // A committed claim always has its response: it is written in the claiming
        // transaction.
        match (status.and_then(|s| u16::try_from(s).ok()), body) {
            (Some(status), Some(body)) => RecordedResponse { status, body },
            _ => {
                return Err(Abort::Database(corrupt_row(format!(
                    "idempotency key {:?} has no recorded response",
                    $key.as_str()
                ))));
            }
        }
    }};
}

/// Runs `$operation` once per idempotency key, inside the enclosing write transaction:
/// claims the key, runs the operation in a savepoint, and records its outcome, rendered by
/// `$render`, under the key. A refusal rolls the operation's own writes back to the
/// savepoint but is recorded and committed all the same, so that a retry gets the same
/// refusal; a database error rolls everything back, the claim included, since nothing was
/// decided. Evaluates to `Answered`.
///
/// The form `claimed_by: $call` is for a call that claims the key itself and does the work
/// only if the claim is new (PostgreSQL's `marquee_claim_and_*` functions): `$call`
/// evaluates to `None` when the key was claimed already, else to the operation's outcome,
/// and writes nothing but the claim when it refuses, so no savepoint is needed. The claim,
/// the savepoint's two round trips and the operation become one.
macro_rules! idempotent {
    ($c:ident, $user:expr, $key:expr, $request:expr, $render:expr, |$op:ident| $operation:expr) => {
        idempotent!(@run $c, $user, $key, $request, $render, $c.transaction(|$op| $operation))
    };
    ($c:ident, $user:expr, $key:expr, $request:expr, $render:expr, claimed_by: $call:expr) => {{
        match $call {
            None => Answered {
                response: recorded_answer!($c, $user, $key, $request),
                performed: None,
                replayed: true,
            },
            Some(outcome) => idempotent!(@record $c, $user, $key, $render, outcome),
        }
    }};
    (@run $c:ident, $user:expr, $key:expr, $request:expr, $render:expr, $outcome:expr) => {{
        match claim_key!($c, $user, $key, $request) {
            Claim::Replay(response) => Answered {
                response,
                performed: None,
                replayed: true,
            },
            Claim::New => idempotent!(@record $c, $user, $key, $render, $outcome),
        }
    }};
    (@record $c:ident, $user:expr, $key:expr, $render:expr, $outcome:expr) => {{
        let outcome = match $outcome {
            Ok(value) => Ok(value),
            Err(Abort::Refused(BookingError::Repository(error))) => {
                return Err(Abort::Refused(BookingError::Repository(error)));
            }
            Err(Abort::Refused(refusal)) => Err(refusal),
            Err(failure @ (Abort::Database(_) | Abort::Pool(_))) => return Err(failure),
        };
        let response = ($render)(&outcome);
        update_where(
            idempotency_keys::table,
            (
                idempotency_keys::response_status.eq(Some(i32::from(response.status))),
                idempotency_keys::response_body.eq(Some(response.body.as_str())),
            ),
            idempotency_keys::user_id
                .eq($user.get())
                .and(idempotency_keys::idem_key.eq($key.as_str())),
        )
        .execute($c)?;
        Answered {
            response,
            performed: outcome.ok(),
            replayed: false,
        }
    }};
}

/// Locks that the database does not take by itself. On SQLite every write transaction is
/// immediate and holds the database's one write lock from its first statement, so there
/// they only read.
trait RowLocks {
    /// Locks a seat row until the transaction ends (`SELECT ... FOR UPDATE`), so that what
    /// is decided next, and the time it is decided at, come after any wait for the row; and
    /// reads, in the same round trip, its schedule and price (`None`: no such seat).
    fn lock_seat(&mut self, seat: i64) -> QueryResult<Option<(i64, i64)>>;
}

/// `lock_seat` as a locking read, for the backends with row locks.
macro_rules! lock_seat_for_update {
    () => {
        fn lock_seat(&mut self, seat: i64) -> QueryResult<Option<(i64, i64)>> {
            seats::table
                .find(seat)
                .select((seats::schedule_id, seats::price))
                .for_update()
                .first(self)
                .optional()
        }
    };
}

/// The advisory-lock class of per-user hold locks on PostgreSQL (the first key of the two-key
/// form of `pg_advisory_xact_lock`, which `marquee_hold` takes).
const HOLD_LOCK_CLASS: i32 = 0x4d51_0001;

impl RowLocks for diesel::PgConnection {
    lock_seat_for_update!();
}

/// The portable hold's own lock: serialises one user's holds, so that concurrent holds by
/// one user are counted one at a time against the caps. PostgreSQL's hold takes its
/// advisory lock inside `marquee_hold` instead.
trait UserHoldLock {
    fn lock_user_holds(&mut self, user: i64) -> QueryResult<()>;
}

/// The `outcome` column of `marquee_hold` and `marquee_pay` as an enum of `$name`, read from
/// the text the functions answer (see their migrations); any other text is a failed query
/// (a corrupt row, 500), as an unknown stored status is.
macro_rules! call_outcome {
    ($(#[$doc:meta])* $name:ident, $what:literal { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, diesel::deserialize::FromSqlRow)]
        enum $name {
            $($variant,)+
        }

        impl diesel::deserialize::FromSql<diesel::sql_types::Text, diesel::pg::Pg> for $name {
            fn from_sql(bytes: diesel::pg::PgValue<'_>) -> diesel::deserialize::Result<Self> {
                let text = <String as diesel::deserialize::FromSql<
                    diesel::sql_types::Text,
                    diesel::pg::Pg,
                >>::from_sql(bytes)?;
                match text.as_str() {
                    $($text => Ok(Self::$variant),)+
                    _ => Err(format!(concat!("unknown ", $what, " {:?}"), text).into()),
                }
            }
        }
    };
}

call_outcome!(
    /// What `marquee_hold` decided.
    HoldOutcome, "hold outcome" {
        Held = "HELD",
        SeatNotFound = "SEAT_NOT_FOUND",
        BookingClosed = "BOOKING_CLOSED",
        NotAdmitted = "NOT_ADMITTED",
        HoldLimit = "HOLD_LIMIT",
        UserHoldLimit = "USER_HOLD_LIMIT",
        SeatTaken = "SEAT_TAKEN",
    }
);

call_outcome!(
    /// What `marquee_pay` decided.
    PayOutcome, "payment outcome" {
        Paid = "PAID",
        ReservationNotFound = "RESERVATION_NOT_FOUND",
        AlreadyPaid = "ALREADY_PAID",
        HoldExpired = "HOLD_EXPIRED",
        Cancelled = "CANCELLED",
        InsufficientBalance = "INSUFFICIENT_BALANCE",
    }
);

/// A call of one of the migrations' PL/pgSQL functions, `SELECT <columns> FROM <function>(<the
/// fields, in order>)`, as a statement type of its own: diesel prepares it once per connection,
/// where it would plan a `sql_query` again on every call (see `prepared`). `$row` is the SQL
/// type of the row it answers.
macro_rules! pg_function_call {
    (
        $(#[$doc:meta])*
        $name:ident = $select:literal -> $row:ty {
            $first:ident: $first_type:ty as $first_sql:ty
            $(, $field:ident: $field_type:ty as $field_sql:ty)* $(,)?
        }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, diesel::query_builder::QueryId)]
        struct $name {
            $first: $first_type,
            $($field: $field_type,)*
        }

        impl diesel::query_builder::Query for $name {
            type SqlType = $row;
        }

        impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for $name {
            fn walk_ast<'b>(
                &'b self,
                mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
            ) -> QueryResult<()> {
                out.push_sql(concat!($select, "("));
                out.push_bind_param::<$first_sql, _>(&self.$first)?;
                $(
                    out.push_sql(", ");
                    out.push_bind_param::<$field_sql, _>(&self.$field)?;
                )*
                out.push_sql(")");
                Ok(())
            }
        }

        impl RunQueryDsl<diesel::PgConnection> for $name {}
    };
}

pg_function_call!(
    /// PostgreSQL's hold in one round trip (migration `2026-12-07-000005_hold_in_one_call`).
    /// `called_at` is the caller's clock just before the call; the function adds the time it
    /// spends.
    HoldCall = "SELECT outcome, reservation_id, schedule_id, concert_id, price, expires_at, \
                opens_at, closes_at FROM marquee_hold"
        -> (
            diesel::sql_types::Text,
            diesel::sql_types::Nullable<diesel::sql_types::BigInt>,
            diesel::sql_types::Nullable<diesel::sql_types::BigInt>,
            diesel::sql_types::Nullable<diesel::sql_types::BigInt>,
            diesel::sql_types::Nullable<diesel::sql_types::BigInt>,
            diesel::sql_types::Nullable<diesel::sql_types::Timestamp>,
            diesel::sql_types::Nullable<diesel::sql_types::Timestamp>,
            diesel::sql_types::Nullable<diesel::sql_types::Timestamp>,
        ) {
        user: i64 as diesel::sql_types::BigInt,
        seat: i64 as diesel::sql_types::BigInt,
        called_at: NaiveDateTime as diesel::sql_types::Timestamp,
        hold_for_ms: i64 as diesel::sql_types::BigInt,
        max_per_schedule: i64 as diesel::sql_types::BigInt,
        max_per_user: i64 as diesel::sql_types::BigInt,
        require_admission: bool as diesel::sql_types::Bool,
        lock_class: i32 as diesel::sql_types::Integer,
        lock_key: i32 as diesel::sql_types::Integer,
    }
);

pg_function_call!(
    /// An Idempotency-Key's claim and, if it is new, a payment's work, on PostgreSQL in one
    /// round trip (migrations `2026-12-07-000006_pay_in_one_call` and
    /// `2026-12-07-000007_claim_in_the_call`). `called_at` as for `HoldCall`.
    ClaimAndPayCall = "SELECT claimed, outcome, payment_id, seat_id, schedule_id, concert_id, \
                       amount, balance FROM marquee_claim_and_pay"
        -> (
            diesel::sql_types::Bool,
            diesel::sql_types::Nullable<diesel::sql_types::Text>,
            diesel::sql_types::Nullable<diesel::sql_types::BigInt>,
            diesel::sql_types::Nullable<diesel::sql_types::BigInt>,
            diesel::sql_types::Nullable<diesel::sql_types::BigInt>,
            diesel::sql_types::Nullable<diesel::sql_types::BigInt>,
            diesel::sql_types::Nullable<diesel::sql_types::BigInt>,
            diesel::sql_types::Nullable<diesel::sql_types::BigInt>,
        ) {
        user: i64 as diesel::sql_types::BigInt,
        key: String as diesel::sql_types::Text,
        request: String as diesel::sql_types::Text,
        created_at: NaiveDateTime as diesel::sql_types::Timestamp,
        reservation: i64 as diesel::sql_types::BigInt,
        called_at: NaiveDateTime as diesel::sql_types::Timestamp,
    }
);

pg_function_call!(
    /// An Idempotency-Key's claim and, if it is new, a charge, on PostgreSQL in one round trip
    /// (migration `2026-12-07-000007_claim_in_the_call`): the wallet created with the amount,
    /// or credited with it, only while the balance stays within `max_balance`. The portable
    /// charge takes three statements in a savepoint for the charge alone.
    ClaimAndCreditCall = "SELECT claimed, balance FROM marquee_claim_and_credit"
        -> (
            diesel::sql_types::Bool,
            diesel::sql_types::Nullable<diesel::sql_types::BigInt>,
        ) {
        user: i64 as diesel::sql_types::BigInt,
        key: String as diesel::sql_types::Text,
        request: String as diesel::sql_types::Text,
        created_at: NaiveDateTime as diesel::sql_types::Timestamp,
        amount: i64 as diesel::sql_types::BigInt,
        max_balance: i64 as diesel::sql_types::BigInt,
    }
);

/// What `marquee_hold` answers: the outcome, then the columns that outcome fills (see the
/// migration).
type HoldCallRow = (
    HoldOutcome,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<NaiveDateTime>,
    Option<NaiveDateTime>,
    Option<NaiveDateTime>,
);

/// What `marquee_claim_and_pay` answers: whether it claimed the key and, if it did,
/// `marquee_pay`'s outcome and the columns that outcome fills (see the migrations).
type ClaimAndPayRow = (
    bool,
    Option<PayOutcome>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

/// A payment on PostgreSQL: one call of `marquee_claim_and_pay`, inside the caller's
/// transaction (which records the answer). `None` when the key was claimed already; else the
/// payment's outcome. It writes nothing but the claim when it refuses, so it runs without a
/// savepoint (`idempotent!`'s `claimed_by`).
fn claim_and_pay(
    c: &mut diesel::PgConnection,
    user: UserId,
    id: ReservationId,
    key: &IdempotencyKey,
    request: &str,
) -> Result<Option<Result<PaymentReceipt, Abort>>, Abort> {
    let corrupt =
        |what: &str| Abort::Database(corrupt_row(format!("marquee_claim_and_pay: {what}")));
    let now = naive(Utc::now());
    let (claimed, outcome, payment, seat, schedule, concert, amount, balance): ClaimAndPayRow =
        ClaimAndPayCall {
            user: user.get(),
            key: key.as_str().to_owned(),
            request: request.to_owned(),
            created_at: now,
            reservation: id.get(),
            called_at: now,
        }
        .get_result(c)?;
    if !claimed {
        return Ok(None);
    }
    let decided = match outcome.ok_or_else(|| corrupt("a claim without an outcome"))? {
        PayOutcome::Paid => {
            let (Some(payment), Some(seat), Some(schedule), Some(concert), Some(amount)) =
                (payment, seat, schedule, concert, amount)
            else {
                return Err(corrupt("a payment without its receipt"));
            };
            let invalid = |e: marquee_domain::IdError| corrupt(&e.to_string());
            Ok(PaymentReceipt {
                payment_id: marquee_domain::PaymentId::new(payment).map_err(invalid)?,
                reservation_id: id,
                seat_id: SeatId::new(seat).map_err(invalid)?,
                schedule_id: ScheduleId::new(schedule).map_err(invalid)?,
                concert_id: ConcertId::new(concert).map_err(invalid)?,
                amount,
            })
        }
        PayOutcome::ReservationNotFound => Err(BookingError::ReservationNotFound(id)),
        PayOutcome::AlreadyPaid => Err(BookingError::AlreadyPaid(id)),
        PayOutcome::HoldExpired => Err(BookingError::HoldExpired(id)),
        PayOutcome::Cancelled => Err(BookingError::NotHeld {
            id,
            status: ReservationStatus::Cancelled,
        }),
        PayOutcome::InsufficientBalance => match (balance, amount) {
            (Some(balance), Some(needed)) => {
                Err(BookingError::InsufficientBalance { balance, needed })
            }
            _ => return Err(corrupt("a refusal without its amounts")),
        },
    };
    Ok(Some(decided.map_err(Abort::Refused)))
}

/// A charge on PostgreSQL: one call of `marquee_claim_and_credit`, inside the caller's
/// transaction (which records the answer). `None` when the key was claimed already; else the
/// wallet, or the balance limit's refusal (which writes nothing but the claim).
fn claim_and_credit(
    c: &mut diesel::PgConnection,
    user: UserId,
    amount: Money,
    max_balance: Money,
    key: &IdempotencyKey,
    request: &str,
) -> Result<Option<Result<Wallet, Abort>>, Abort> {
    let (claimed, balance): (bool, Option<i64>) = ClaimAndCreditCall {
        user: user.get(),
        key: key.as_str().to_owned(),
        request: request.to_owned(),
        created_at: naive(Utc::now()),
        amount,
        max_balance,
    }
    .get_result(c)?;
    Ok(claimed.then(|| match balance {
        Some(balance) => Ok(Wallet {
            user_id: user,
            balance,
        }),
        None => Err(Abort::Refused(BookingError::BalanceLimit {
            limit: max_balance,
        })),
    }))
}

/// A hold on PostgreSQL: one call of `marquee_hold`, its own transaction, which takes the
/// portable hold's steps in its order and refuses as it does (the persistence tests hold
/// both to the same rules).
fn hold_in_one_call(
    c: &mut diesel::PgConnection,
    user: UserId,
    seat: SeatId,
    rules: HoldRules,
) -> Result<Reservation, Abort> {
    let corrupt = |what: &str| Abort::Database(corrupt_row(format!("marquee_hold: {what}")));
    let (outcome, id, schedule, concert, price, expires_at, opens, closes): HoldCallRow =
        HoldCall {
            user: user.get(),
            seat: seat.get(),
            called_at: naive(Utc::now()),
            hold_for_ms: rules.hold_for.num_milliseconds(),
            max_per_schedule: rules.max_holds_per_schedule,
            max_per_user: rules.max_holds_per_user,
            require_admission: rules.require_admission,
            lock_class: HOLD_LOCK_CLASS,
            // Two users who fold to the same key only serialise each other's holds.
            lock_key: (user.get() % i64::from(i32::MAX)) as i32,
        }
        .get_result(c)?;
    let refused = |refusal: BookingError| Err(Abort::Refused(refusal));
    match outcome {
        HoldOutcome::Held => {
            let (Some(id), Some(schedule), Some(concert), Some(price), Some(expires_at)) =
                (id, schedule, concert, price, expires_at)
            else {
                return Err(corrupt("a hold without its reservation"));
            };
            ReservationRow {
                id,
                user_id: user.get(),
                seat_id: seat.get(),
                schedule_id: schedule,
                status: ReservationState::Held,
                price,
                expires_at,
            }
            .into_domain(concert)
        }
        HoldOutcome::SeatNotFound => refused(BookingError::SeatNotFound(seat)),
        HoldOutcome::SeatTaken => refused(BookingError::SeatTaken(seat)),
        HoldOutcome::BookingClosed => match (opens, closes) {
            (Some(opens), Some(closes)) => refused(BookingError::BookingClosed {
                opens: opens.and_utc(),
                closes: closes.and_utc(),
            }),
            _ => Err(corrupt("a closed window without its times")),
        },
        HoldOutcome::NotAdmitted => match concert.map(ConcertId::new) {
            Some(Ok(concert)) => refused(BookingError::NotAdmitted(concert)),
            _ => Err(corrupt("a refusal without its concert")),
        },
        HoldOutcome::HoldLimit => refused(BookingError::HoldLimitReached {
            limit: rules.max_holds_per_schedule,
        }),
        HoldOutcome::UserHoldLimit => refused(BookingError::UserHoldLimitReached {
            limit: rules.max_holds_per_user,
        }),
    }
}

impl UserHoldLock for diesel::SqliteConnection {
    fn lock_user_holds(&mut self, _user: i64) -> QueryResult<()> {
        Ok(())
    }
}

impl RowLocks for diesel::SqliteConnection {
    fn lock_seat(&mut self, seat: i64) -> QueryResult<Option<(i64, i64)>> {
        seats::table
            .find(seat)
            .select((seats::schedule_id, seats::price))
            .first(self)
            .optional()
    }
}

impl UserHoldLock for diesel::MysqlConnection {
    fn lock_user_holds(&mut self, user: i64) -> QueryResult<()> {
        // MariaDB's named locks (GET_LOCK) belong to the session, not the transaction, and
        // would outlive a rollback. A row of `hold_locks` (MariaDB's migrations only) is
        // locked by the upsert until the transaction ends, as PostgreSQL's advisory lock is.
        diesel::sql_query(
            "INSERT INTO hold_locks (user_id) VALUES (?) ON DUPLICATE KEY UPDATE user_id = user_id",
        )
        .bind::<diesel::sql_types::BigInt, _>(user)
        .execute(self)
        .map(drop)
    }
}

impl RowLocks for diesel::MysqlConnection {
    lock_seat_for_update!();
}

/// The statements whose form differs between the backends: PostgreSQL and SQLite say what
/// they wrote with `RETURNING` and skip a duplicate with `ON CONFLICT DO NOTHING`; MariaDB
/// has neither, and reads back, or catches the duplicate (see `mysql`).
trait BookingStatements: RowLocks {
    /// Inserts the idempotency key's claim; `false` if the key was claimed already.
    fn claim(&mut self, claim: &NewClaim) -> QueryResult<bool>;
    fn insert_reservation(&mut self, new: &NewReservation) -> QueryResult<ReservationRow>;
    /// Records a payment; returns its id.
    fn insert_payment(&mut self, payment: &NewPayment) -> QueryResult<i64>;
    /// Frees the seats whose hold ran out at `now`; returns their schedules.
    fn free_expired_seats(&mut self, now: NaiveDateTime) -> QueryResult<Vec<i64>>;
}

/// The seats whose hold ran out at `$now`.
macro_rules! expired_holds {
    ($now:expr) => {
        seats::table
            .filter(seats::status.eq(SeatState::Held))
            .filter(seats::held_until.le($now))
    };
}

/// What freeing a seat writes.
macro_rules! freed {
    () => {
        (
            seats::status.eq(SeatState::Available),
            seats::held_by.eq(None::<i64>),
            seats::held_until.eq(None::<NaiveDateTime>),
        )
    };
}

macro_rules! returning_booking_statements {
    ($($conn:ty),*) => {$(
        impl BookingStatements for $conn {
            fn claim(&mut self, claim: &NewClaim) -> QueryResult<bool> {
                diesel::insert_into(idempotency_keys::table)
                    .values(claim.values())
                    .on_conflict_do_nothing()
                    .execute(self)
                    .map(|inserted| inserted == 1)
            }

            fn insert_reservation(&mut self, new: &NewReservation) -> QueryResult<ReservationRow> {
                diesel::insert_into(reservations::table)
                    .values(new.values())
                    .returning(ReservationRow::as_returning())
                    .get_result(self)
            }

            fn insert_payment(&mut self, payment: &NewPayment) -> QueryResult<i64> {
                diesel::insert_into(payments::table)
                    .values(payment.values())
                    .returning(payments::id)
                    .get_result(self)
            }

            fn free_expired_seats(&mut self, now: NaiveDateTime) -> QueryResult<Vec<i64>> {
                diesel::update(expired_holds!(now))
                    .set(freed!())
                    .returning(seats::schedule_id)
                    .get_results(self)
            }
        }
    )*};
}

returning_booking_statements!(diesel::PgConnection, diesel::SqliteConnection);

impl BookingStatements for diesel::MysqlConnection {
    fn claim(&mut self, claim: &NewClaim) -> QueryResult<bool> {
        crate::mysql::inserted(
            diesel::insert_into(idempotency_keys::table)
                .values(claim.values())
                .execute(self),
        )
    }

    fn insert_reservation(&mut self, new: &NewReservation) -> QueryResult<ReservationRow> {
        diesel::insert_into(reservations::table)
            .values(new.values())
            .execute(self)?;
        let id = crate::mysql::inserted_id(self)?;
        reservations::table
            .find(id)
            .select(ReservationRow::as_select())
            .first(self)
    }

    fn insert_payment(&mut self, payment: &NewPayment) -> QueryResult<i64> {
        diesel::insert_into(payments::table)
            .values(payment.values())
            .execute(self)?;
        crate::mysql::inserted_id(self)
    }

    fn free_expired_seats(&mut self, now: NaiveDateTime) -> QueryResult<Vec<i64>> {
        // Lock what will be freed, then free exactly those rows, still only if expired.
        let expired: Vec<(i64, i64)> = expired_holds!(now)
            .select((seats::id, seats::schedule_id))
            .for_update()
            .load(self)?;
        for chunk in expired.chunks(crate::mysql::IDS_PER_STATEMENT) {
            let ids: Vec<i64> = chunk.iter().map(|(id, _)| *id).collect();
            diesel::update(expired_holds!(now).filter(seats::id.eq_any(ids)))
                .set(freed!())
                .execute(self)?;
        }
        Ok(expired.into_iter().map(|(_, schedule)| schedule).collect())
    }
}

/// The time a decision is taken at: read after the locks it depends on are held, never
/// before a wait for a connection or a lock. Millisecond precision: the same instant
/// whichever backend stores it (PostgreSQL keeps microseconds, SQLite the text it is
/// given), and what the API shows.
pub(crate) fn decision_time() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

/// Ends the live hold `$reservation` (as `live_hold!` returned it): its seat becomes
/// `$seat_status` and the reservation `$status`. Seat first, then reservation: the order pay,
/// cancel and the sweep lock them in, so that concurrent operations on one hold cannot
/// deadlock. Both updates are conditional on the hold being the one read and still live; with
/// the seat locked and the reservation read after the lock they cannot miss, so a miss is a
/// broken invariant (500), not a refusal.
macro_rules! settle_hold {
    ($c:ident, $user:expr, $reservation:expr, $now:expr, $seat_status:expr, $status:expr) => {{
        let seat_settled = update_where(
            seats::table,
            (
                seats::status.eq($seat_status),
                seats::held_by.eq(None::<i64>),
                seats::held_until.eq(None::<NaiveDateTime>),
            ),
            seats::id
                .eq($reservation.seat_id.get())
                .and(seats::status.eq(SeatState::Held))
                .and(seats::held_by.eq($user.get()))
                .and(seats::held_until.eq(naive($reservation.expires_at)))
                .and(seats::held_until.gt(naive($now))),
        )
        .execute($c)?;
        let settled = update_where(
            reservations::table,
            reservations::status.eq($status),
            reservations::id
                .eq($reservation.id.get())
                .and(reservations::status.eq(ReservationState::Held)),
        )
        .execute($c)?;
        if seat_settled == 0 || settled == 0 {
            // The seat and reservation were locked and read as a live hold: they cannot
            // have changed since. A failed query (500), never a refusal.
            return Err(Abort::Database(corrupt_row(
                "a locked live hold could not be settled".into(),
            )));
        }
    }};
}

/// The caller's reservation `$id` as a live hold, decided at the time it evaluates to:
/// reads the reservation (for its seat), locks the seat row, reads the reservation again
/// (a cancel, payment or sweep that committed meanwhile is now visible, and none can start
/// while the seat is locked), then takes the decision time. Returns the refusal that fits
/// from the enclosing closure: not found, paid already, cancelled (`reservation-not-held`),
/// or expired. Evaluates to `(Reservation, DateTime<Utc>)`.
macro_rules! live_hold {
    ($c:ident, $user:expr, $id:expr) => {{
        macro_rules! read {
            () => {{
                let (row, concert) = reservations_with_concerts!()
                    .filter(reservations::id.eq($id.get()))
                    .filter(reservations::user_id.eq($user.get()))
                    .select((ReservationRow::as_select(), schedules::concert_id))
                    .first::<(ReservationRow, i64)>($c)
                    .optional()?
                    .ok_or(BookingError::ReservationNotFound($id))?;
                row.into_domain(concert)?
            }};
        }
        let seat = read!().seat_id;
        $c.lock_seat(seat.get())?;
        // Read again under the lock: what committed while this waited is now visible.
        let reservation = read!();
        let now = decision_time();
        match reservation.effective_status(now) {
            ReservationStatus::Held => {}
            ReservationStatus::Confirmed => {
                return Err(Abort::Refused(BookingError::AlreadyPaid($id)));
            }
            ReservationStatus::Expired => {
                return Err(Abort::Refused(BookingError::HoldExpired($id)));
            }
            status @ ReservationStatus::Cancelled => {
                return Err(Abort::Refused(BookingError::NotHeld { id: $id, status }));
            }
        }
        (reservation, now)
    }};
}

/// The portable hold, on SQLite and MariaDB (PostgreSQL's is `hold_in_one_call`): the
/// user's lock, the seat's, then the window, the gate and the caps, then the arbiter.
/// Evaluates to the transaction's `Result`, and returns a refusal from the enclosing closure
/// early; a macro because the body runs on each concrete connection type.
macro_rules! portable_hold {
    ($c:ident, $user:expr, $seat:expr, $rules:expr) => {{
        let (user, seat, rules): (UserId, SeatId, HoldRules) = ($user, $seat, $rules);
        // The user's holds first, then the seat: no other operation takes the
        // per-user lock, so this order cannot deadlock with pay or cancel. The seat's
        // lock reads its schedule and price.
        $c.lock_user_holds(user.get())?;
        let (schedule, price) = $c
            .lock_seat(seat.get())?
            .ok_or(BookingError::SeatNotFound(seat))?;
        let now_utc = decision_time();
        let (now, until) = (naive(now_utc), naive(now_utc + rules.hold_for));
        let (concert, opens, closes): (i64, NaiveDateTime, NaiveDateTime) = schedules::table
            .find(schedule)
            .select((
                schedules::concert_id,
                schedules::booking_opens_at,
                schedules::booking_closes_at,
            ))
            .first($c)?;
        if !(opens <= now && now < closes) {
            return Err(Abort::Refused(BookingError::BookingClosed {
                opens: opens.and_utc(),
                closes: closes.and_utc(),
            }));
        }
        // The waiting room's gate, at the same time as the window: an admission
        // that runs out while the hold waited for its locks admits nothing.
        if rules.require_admission {
            let admitted: bool = diesel::select(diesel::dsl::exists(
                queue_entries::table
                    .filter(queue_entries::concert_id.eq(concert))
                    .filter(queue_entries::user_id.eq(user.get()))
                    .filter(queue_entries::status.eq(QueueEntryState::Active))
                    .filter(queue_entries::expires_at.gt(now)),
            ))
            .get_result($c)?;
            if !admitted {
                let concert = ConcertId::new(concert)
                    .map_err(|e| Abort::Database(corrupt_row(e.to_string())))?;
                return Err(Abort::Refused(BookingError::NotAdmitted(concert)));
            }
        }
        // The schedules of the user's live holds: both caps from one query.
        let held: Vec<i64> = seats::table
            .filter(seats::held_by.eq(user.get()))
            .filter(seats::status.eq(SeatState::Held))
            .filter(seats::held_until.gt(now))
            .select(seats::schedule_id)
            .load($c)?;
        let on_schedule = held.iter().filter(|s| **s == schedule).count();
        if i64::try_from(on_schedule).unwrap_or(i64::MAX) >= rules.max_holds_per_schedule {
            return Err(Abort::Refused(BookingError::HoldLimitReached {
                limit: rules.max_holds_per_schedule,
            }));
        }
        if i64::try_from(held.len()).unwrap_or(i64::MAX) >= rules.max_holds_per_user {
            return Err(Abort::Refused(BookingError::UserHoldLimitReached {
                limit: rules.max_holds_per_user,
            }));
        }
        // The arbiter: only one transaction can move the seat out of "free".
        let taken = update_where(
            seats::table,
            (
                seats::status.eq(SeatState::Held),
                seats::held_by.eq(Some(user.get())),
                seats::held_until.eq(Some(until)),
            ),
            seats::id.eq(seat.get()).and(
                seats::status.eq(SeatState::Available).or(seats::status
                    .eq(SeatState::Held)
                    .and(seats::held_until.le(now).assume_not_null())),
            ),
        )
        .execute($c)?;
        if taken == 0 {
            return Err(Abort::Refused(BookingError::SeatTaken(seat)));
        }
        let row = $c.insert_reservation(&NewReservation {
            user_id: user.get(),
            seat_id: seat.get(),
            schedule_id: schedule,
            status: ReservationState::Held,
            price,
            expires_at: until,
            created_at: now,
        })?;
        row.into_domain(concert)
    }};
}

/// The portable payment's work, on SQLite and MariaDB (PostgreSQL's is `claim_and_pay`), run
/// by `idempotent!` in a savepoint: the live hold, settled, then the debit (a refusal rolls the
/// settling back), the payer's admission ended and the payment recorded. Evaluates to the
/// savepoint's `Result`; a macro because the body runs on each concrete connection type.
macro_rules! portable_pay {
    ($c:ident, $user:expr, $id:expr) => {{
        let (reservation, now) = live_hold!($c, $user, $id);
        settle_hold!(
            $c,
            $user,
            reservation,
            now,
            SeatState::Sold,
            ReservationState::Confirmed
        );
        let price = reservation.price;
        let debited = update_where(
            wallets::table,
            wallets::balance.eq(wallets::balance - price),
            wallets::user_id
                .eq($user.get())
                .and(wallets::balance.ge(price)),
        )
        .execute($c)?;
        if debited == 0 {
            let balance = wallets::table
                .find($user.get())
                .select(wallets::balance)
                .first::<i64>($c)
                .optional()?
                .unwrap_or(0);
            return Err(Abort::Refused(BookingError::InsufficientBalance {
                balance,
                needed: price,
            }));
        }
        // A purchase ends the payer's admission to the concert, so that
        // the slot goes to the next in line now rather than at expiry.
        diesel::delete(
            queue_entries::table
                .filter(queue_entries::concert_id.eq(reservation.concert_id.get()))
                .filter(queue_entries::user_id.eq($user.get()))
                .filter(queue_entries::status.eq(QueueEntryState::Active)),
        )
        .execute($c)?;
        let payment = $c.insert_payment(&NewPayment {
            reservation_id: $id.get(),
            user_id: $user.get(),
            amount: price,
            paid_at: naive(now),
        })?;
        Ok::<_, Abort>(PaymentReceipt {
            payment_id: marquee_domain::PaymentId::new(payment)
                .map_err(|e| Abort::Database(corrupt_row(e.to_string())))?,
            reservation_id: $id,
            seat_id: reservation.seat_id,
            schedule_id: reservation.schedule_id,
            concert_id: reservation.concert_id,
            amount: price,
        })
    }};
}

/// The portable charge's work, on SQLite and MariaDB (PostgreSQL's is in `claim_and_credit`'s
/// call), run by `idempotent!` in a savepoint: the wallet created if missing, credited within
/// the limit, and read back. Evaluates to the savepoint's `Result`; a macro because the
/// body runs on each concrete connection type.
macro_rules! portable_charge {
    ($c:ident, $user:expr, $amount:expr, $max_balance:expr) => {{
        diesel::insert_into(wallets::table)
            .values((wallets::user_id.eq($user.get()), wallets::balance.eq(0)))
            .on_conflict_do_nothing()
            .execute($c)?;
        let credited = update_where(
            wallets::table,
            wallets::balance.eq(wallets::balance + $amount),
            wallets::user_id
                .eq($user.get())
                .and(wallets::balance.le($max_balance - $amount)),
        )
        .execute($c)?;
        if credited == 0 {
            return Err(Abort::Refused(BookingError::BalanceLimit {
                limit: $max_balance,
            }));
        }
        let balance: i64 = wallets::table
            .find($user.get())
            .select(wallets::balance)
            .first($c)?;
        Ok::<_, Abort>(Wallet {
            user_id: $user,
            balance,
        })
    }};
}

fn naive(at: DateTime<Utc>) -> NaiveDateTime {
    at.naive_utc()
}

#[async_trait]
impl BookingRepository for DieselBooking {
    async fn wallet(&self, user: UserId) -> Result<Wallet, BookingError> {
        let balance = self
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
        render: Render<Wallet>,
    ) -> Result<Answered<Wallet>, BookingError> {
        let max_balance = self.max_balance;
        let request = format!("charge:{amount}");
        self.run(move |conn| {
            write_transaction!(conn,
                // One call that claims the key and writes nothing else when it refuses.
                postgres: |c| c.transaction(|c| {
                    Ok(idempotent!(c, user, &key, &request, render,
                        claimed_by: claim_and_credit(c, user, amount, max_balance, &key, &request)?))
                }),
                portable: |c| Ok(idempotent!(c, user, &key, &request, render, |c| {
                    portable_charge!(c, user, amount, max_balance)
                }))
            )
        })
        .await
    }

    async fn hold_seat(
        &self,
        user: UserId,
        seat: SeatId,
        rules: HoldRules,
    ) -> Result<Reservation, BookingError> {
        self.run(move |conn| {
            write_transaction!(conn,
                postgres: |c| hold_in_one_call(c, user, seat, rules),
                portable: |c| portable_hold!(c, user, seat, rules)
            )
        })
        .await
    }

    async fn reservation(
        &self,
        user: UserId,
        id: ReservationId,
    ) -> Result<Option<Reservation>, BookingError> {
        self.run(move |conn| {
            let row: Option<(ReservationRow, i64)> = reservations_with_concerts!()
                .filter(reservations::id.eq(id.get()))
                .filter(reservations::user_id.eq(user.get()))
                .select((ReservationRow::as_select(), schedules::concert_id))
                .first(conn)
                .optional()?;
            row.map(|(row, concert)| row.into_domain(concert))
                .transpose()
        })
        .await
    }

    async fn reservations(&self, user: UserId) -> Result<Vec<Reservation>, BookingError> {
        self.run(move |conn| {
            let rows: Vec<(ReservationRow, i64)> = reservations_with_concerts!()
                .filter(reservations::user_id.eq(user.get()))
                .order(reservations::id.desc())
                .limit(100)
                .select((ReservationRow::as_select(), schedules::concert_id))
                .load(conn)?;
            rows.into_iter()
                .map(|(row, concert)| row.into_domain(concert))
                .collect()
        })
        .await
    }

    async fn cancel(&self, user: UserId, id: ReservationId) -> Result<Reservation, BookingError> {
        self.run(move |conn| {
            write_transaction!(conn, |c| {
                let (mut reservation, now) = live_hold!(c, user, id);
                settle_hold!(
                    c,
                    user,
                    reservation,
                    now,
                    SeatState::Available,
                    ReservationState::Cancelled
                );
                reservation.status = ReservationStatus::Cancelled;
                Ok(reservation)
            })
        })
        .await
    }

    async fn pay(
        &self,
        user: UserId,
        id: ReservationId,
        key: IdempotencyKey,
        render: Render<PaymentReceipt>,
    ) -> Result<Answered<PaymentReceipt>, BookingError> {
        let request = format!("pay:{id}");
        self.run(move |conn| {
            write_transaction!(conn,
                postgres: |c| c.transaction(|c| {
                    Ok(idempotent!(c, user, &key, &request, render,
                        claimed_by: claim_and_pay(c, user, id, &key, &request)?))
                }),
                portable: |c| Ok(idempotent!(c, user, &key, &request, render, |c| {
                    portable_pay!(c, user, id)
                }))
            )
        })
        .await
    }

    async fn purge_idempotency_keys(&self, before: DateTime<Utc>) -> Result<u64, BookingError> {
        let deleted = self
            .run(move |conn| {
                Ok(diesel::delete(
                    idempotency_keys::table.filter(idempotency_keys::created_at.lt(naive(before))),
                )
                .execute(conn)?)
            })
            .await?;
        Ok(u64::try_from(deleted).unwrap_or(u64::MAX))
    }

    async fn expire_holds(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<(ScheduleId, ConcertId)>, BookingError> {
        let freed = self
            .run(move |conn| {
                let now = naive(now);
                write_transaction!(conn, |c| {
                    let freed = c.free_expired_seats(now)?;
                    diesel::update(
                        reservations::table
                            .filter(reservations::status.eq(ReservationState::Held))
                            .filter(reservations::expires_at.le(now)),
                    )
                    .set(reservations::status.eq(ReservationState::Expired))
                    .execute(c)?;
                    let ids: BTreeSet<i64> = freed.into_iter().collect();
                    let pairs: Vec<(i64, i64)> = schedules::table
                        .filter(schedules::id.eq_any(ids))
                        .select((schedules::id, schedules::concert_id))
                        .load(c)?;
                    Ok::<_, Abort>(pairs)
                })
            })
            .await?;
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
}
