//! Bookings: reservations (seat holds), payments and wallets.
//!
//! Amounts are integer minor units (cents, or won for a currency without them): floating
//! point cannot represent most decimal prices exactly, and a sum of prices must be exact.

use chrono::{DateTime, Utc};

use crate::ids::{ConcertId, PaymentId, ReservationId, ScheduleId, SeatId, UserId};

/// An amount of money in minor units.
pub type Money = i64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservationStatus {
    /// The seat is held for the user until `expires_at`.
    Held,
    /// Paid: the seat is sold.
    Confirmed,
    /// Given up by the user.
    Cancelled,
    /// The hold ran out before payment.
    Expired,
}

impl ReservationStatus {
    /// The stable upper-case name the API shows.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Held => "HELD",
            Self::Confirmed => "CONFIRMED",
            Self::Cancelled => "CANCELLED",
            Self::Expired => "EXPIRED",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub id: ReservationId,
    pub user_id: UserId,
    pub seat_id: SeatId,
    pub schedule_id: ScheduleId,
    /// The schedule's concert: a hold, cancellation or payment changes its listings.
    pub concert_id: ConcertId,
    pub status: ReservationStatus,
    pub price: Money,
    pub expires_at: DateTime<Utc>,
}

/// A user's prepaid balance. It is never negative.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wallet {
    pub user_id: UserId,
    pub balance: Money,
}

impl Reservation {
    /// The status a reader should see at `now`: a hold that has run out reads as expired,
    /// before any sweep rewrites the row.
    pub fn effective_status(&self, now: DateTime<Utc>) -> ReservationStatus {
        match self.status {
            ReservationStatus::Held if self.expires_at <= now => ReservationStatus::Expired,
            status => status,
        }
    }
}

/// What a confirmed payment returns; a replay with the same idempotency key returns the
/// same receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentReceipt {
    pub payment_id: PaymentId,
    pub reservation_id: ReservationId,
    /// The seat now sold (its listings change).
    pub seat_id: SeatId,
    /// The seat's schedule and concert, whose listings and counts change.
    pub schedule_id: ScheduleId,
    pub concert_id: ConcertId,
    pub amount: Money,
}

/// The response a client received to a request sent with an idempotency key. It is
/// recorded under the key in the same transaction as the request's effects, so that every
/// retry receives it again, byte for byte: a success and a refusal alike (a payment refused
/// for want of balance stays refused under its key, as with Stripe; a new attempt needs a
/// new key). Failures that decided nothing (a busy or unreachable database) are not
/// recorded, because nothing was done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedResponse {
    /// The HTTP status code.
    pub status: u16,
    /// The body as sent.
    pub body: String,
}

/// Renders an idempotent operation's outcome as the response to record and send. A plain
/// function, not a closure: it runs inside the database transaction, on a blocking thread,
/// and must depend on nothing but the outcome.
pub type Render<T> = fn(&Result<T, BookingError>) -> RecordedResponse;

/// How an idempotent request was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered<T> {
    /// What to send: the new response, or the one recorded for the first request.
    pub response: RecordedResponse,
    /// The operation's result when this request carried it out; `None` when it was refused
    /// or when the response is a replay.
    pub performed: Option<T>,
    /// Whether the response was recorded by an earlier request with the same key.
    pub replayed: bool,
}

/// A client-chosen key that makes a write safe to retry: the first request with it takes
/// effect, and every retry gets the first answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub const MAX_LEN: usize = 128;

    /// A printable ASCII key of 1 to 128 characters.
    pub fn new(key: &str) -> Option<Self> {
        let valid = !key.is_empty()
            && key.len() <= Self::MAX_LEN
            && key.bytes().all(|b| b.is_ascii_graphic());
        valid.then(|| Self(key.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The rules a hold is made under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldRules {
    /// How long a hold lasts before the seat is free for others.
    pub hold_for: chrono::TimeDelta,
    /// Live holds one user may have on one schedule.
    pub max_holds_per_schedule: i64,
    /// Live holds one user may have across every schedule.
    pub max_holds_per_user: i64,
    /// With the waiting room on: a hold needs a live admission to the seat's concert.
    pub require_admission: bool,
}

/// Why a booking operation was refused. Every variant but `Repository` is an answer about
/// the request; the API maps each to its own status and code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BookingError {
    #[error("seat {0} does not exist")]
    SeatNotFound(SeatId),
    #[error("seat {0} is taken")]
    SeatTaken(SeatId),
    #[error("booking for this schedule is open from {opens} until {closes}")]
    BookingClosed {
        opens: DateTime<Utc>,
        closes: DateTime<Utc>,
    },
    #[error("at most {limit} seats may be held per schedule at once")]
    HoldLimitReached { limit: i64 },
    #[error("at most {limit} seats may be held at once across all schedules")]
    UserHoldLimitReached { limit: i64 },
    #[error("reservation {0} does not exist")]
    ReservationNotFound(ReservationId),
    #[error("reservation {id} is {status}, not HELD", status = .status.as_str())]
    NotHeld {
        id: ReservationId,
        status: ReservationStatus,
    },
    #[error("you have not been admitted to book concert {0}: join its queue and wait your turn")]
    NotAdmitted(ConcertId),
    #[error("the hold of reservation {0} has expired")]
    HoldExpired(ReservationId),
    #[error("reservation {0} is paid already")]
    AlreadyPaid(ReservationId),
    #[error("the balance {balance} does not cover {needed}")]
    InsufficientBalance { balance: Money, needed: Money },
    #[error("the balance would exceed its limit of {limit}")]
    BalanceLimit { limit: Money },
    #[error("this Idempotency-Key was used for a different request")]
    IdempotencyKeyReused,
    #[error(transparent)]
    Repository(#[from] crate::error::RepositoryError),
}
