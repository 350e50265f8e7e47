//! Ports: what the domain needs from the outside world, as traits.
//!
//! The persistence crate implements them on a database; the cache crate wraps them; the api
//! crate calls them. None of those crates' types appear here.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::booking::{
    Answered, BookingError, HoldRules, IdempotencyKey, Money, PaymentReceipt, Render, Reservation,
    Wallet,
};
use crate::catalogue::{Concert, Page, PageRequest, ScheduleAvailability, Seat, SeatFilter};
use crate::error::RepositoryError;
use crate::ids::{ConcertId, ReservationId, ScheduleId, SeatId, UserId};

/// Reads the catalogue.
///
/// A lookup of something that does not exist is `Ok(None)`, not an error: absence is a normal
/// answer, and callers (a cache in particular) need to tell it apart from a failure.
#[async_trait]
pub trait CatalogueRepository: Send + Sync + 'static {
    async fn list_concerts(&self, page: PageRequest) -> Result<Page<Concert>, RepositoryError>;

    async fn find_concert(&self, id: ConcertId) -> Result<Option<Concert>, RepositoryError>;

    /// The concert's schedules in start order, or `None` if the concert does not exist.
    async fn list_schedules(
        &self,
        concert: ConcertId,
    ) -> Result<Option<Vec<ScheduleAvailability>>, RepositoryError>;

    /// The schedule's seats in number order, or `None` if the schedule does not exist.
    async fn list_seats(
        &self,
        schedule: ScheduleId,
        filter: SeatFilter,
    ) -> Result<Option<Vec<Seat>>, RepositoryError>;
}

/// Bookings: wallets, seat holds and payments. The database is the arbiter of every race:
/// implementations make each operation one transaction whose conditions are checked by the
/// database, so that concurrent requests, on any number of instances, cannot double-book a
/// seat, lose a charge or take a payment twice.
#[async_trait]
pub trait BookingRepository: Send + Sync + 'static {
    /// The user's wallet; a user who never charged has a balance of 0.
    async fn wallet(&self, user: UserId) -> Result<Wallet, BookingError>;

    /// Adds `amount` (positive) to the wallet, once per `key`: the outcome, success or
    /// refusal, is rendered with `render` and recorded under the key, and a retry with the
    /// key gets that response. `Err` is only for what decided nothing: a database failure,
    /// or the key sent earlier with another request ([`BookingError::IdempotencyKeyReused`]).
    async fn charge(
        &self,
        user: UserId,
        amount: Money,
        key: IdempotencyKey,
        render: Render<Wallet>,
    ) -> Result<Answered<Wallet>, BookingError>;

    /// Holds `seat` for `user` for `rules.hold_for`, counted from the moment the hold is
    /// decided (after any wait for locks), which is also the time the booking window and
    /// the caps are judged at.
    async fn hold_seat(
        &self,
        user: UserId,
        seat: SeatId,
        rules: HoldRules,
    ) -> Result<Reservation, BookingError>;

    /// The user's reservation, or `None` if it does not exist or belongs to someone else.
    async fn reservation(
        &self,
        user: UserId,
        id: ReservationId,
    ) -> Result<Option<Reservation>, BookingError>;

    /// The user's reservations, newest first.
    async fn reservations(&self, user: UserId) -> Result<Vec<Reservation>, BookingError>;

    /// Cancels a live hold and frees its seat. Whether the hold is still live is judged at
    /// the time of the decision, after any wait for locks.
    async fn cancel(&self, user: UserId, id: ReservationId) -> Result<Reservation, BookingError>;

    /// Pays a live hold from the wallet, once per reservation: the debit, the payment and
    /// the seat's sale commit together, and expiry is judged at the time of the decision.
    /// Like [`BookingRepository::charge`], the outcome is recorded under `key`.
    async fn pay(
        &self,
        user: UserId,
        id: ReservationId,
        key: IdempotencyKey,
        render: Render<PaymentReceipt>,
    ) -> Result<Answered<PaymentReceipt>, BookingError>;

    /// Deletes idempotency keys recorded before `before`; returns how many. A retry with a
    /// purged key is a new request.
    async fn purge_idempotency_keys(&self, before: DateTime<Utc>) -> Result<u64, BookingError>;

    /// Marks holds that ran out before `now` as expired and frees their seats; returns the
    /// schedules whose seats changed, with their concerts.
    async fn expire_holds(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<(ScheduleId, ConcertId)>, BookingError>;
}

/// A dependency that readiness depends on (the database, Redis).
#[async_trait]
pub trait HealthCheck: Send + Sync + 'static {
    /// A short stable name for reports, such as `database`.
    fn name(&self) -> &'static str;

    /// Whether the service cannot serve without this dependency. A failing critical check
    /// makes the instance not ready; a failing non-critical one (a cache the service can
    /// run without) makes it degraded but still ready.
    fn critical(&self) -> bool {
        true
    }

    /// Succeeds if the dependency answered within its own bound.
    async fn check(&self) -> Result<(), String>;
}
