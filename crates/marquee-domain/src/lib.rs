#![doc = include_str!("../README.md")]

pub mod booking;
pub mod catalogue;
pub mod ids;
pub mod ports;
pub mod queue;

pub use booking::{
    Answered, BookingError, HoldRules, IdempotencyKey, Money, Payment, PaymentReceipt,
    RecordedResponse, Render, Reservation, ReservationStatus, Wallet,
};
pub use catalogue::{
    Concert, Page, PageRequest, PageRequestError, Schedule, ScheduleAvailability, Seat, SeatFilter,
    SeatStatus,
};
pub use ids::{ConcertId, IdError, PaymentId, ReservationId, ScheduleId, SeatId, UserId};
pub use ports::{BookingRepository, BusyCause, CatalogueRepository, HealthCheck, RepositoryError};
pub use queue::{AdmissionRound, QueueEntry, QueueError, QueueRepository, QueueRules, QueueStatus};
