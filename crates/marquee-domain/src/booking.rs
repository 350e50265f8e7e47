//! Bookings: reservations (seat holds), payments and wallets.
//!
//! Amounts are integer minor units (cents, or won for a currency without them): floating
//! point cannot represent most decimal prices exactly, and a sum of prices must be exact.

use chrono::{DateTime, Utc};

use crate::ids::{PaymentId, ReservationId, ScheduleId, SeatId, UserId};

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
    pub status: ReservationStatus,
    pub price: Money,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub id: PaymentId,
    pub reservation_id: ReservationId,
    pub user_id: UserId,
    pub amount: Money,
    pub paid_at: DateTime<Utc>,
}

/// A user's prepaid balance. It is never negative.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wallet {
    pub user_id: UserId,
    pub balance: Money,
}
