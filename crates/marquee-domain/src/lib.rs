#![doc = include_str!("../README.md")]

pub mod booking;
pub mod catalogue;
pub mod error;
pub mod ids;
pub mod ports;
pub mod queue;

pub use booking::{
    Answered, BookingError, HoldRules, IdempotencyKey, Money, PaymentReceipt, RecordedResponse,
    Render, Reservation, ReservationStatus, Wallet,
};
pub use catalogue::{
    Concert, Page, PageRequest, PageRequestError, Schedule, ScheduleAvailability, Seat, SeatFilter,
    SeatStatus,
};
pub use error::{BusyCause, RepositoryError};
pub use ids::{ConcertId, IdError, PaymentId, ReservationId, ScheduleId, SeatId, UserId};
pub use ports::{BookingRepository, CatalogueRepository, HealthCheck};
pub use queue::{AdmissionRound, QueueEntry, QueueError, QueueRepository, QueueRules, QueueStatus};
