#![doc = include_str!("../README.md")]

pub mod booking;
pub mod catalogue;
pub mod config;
pub mod connection;
pub mod error;
pub mod metrics;
pub mod migrations;
pub mod pool;
pub mod queue;
pub mod schema;
pub mod seed;
#[cfg(feature = "test-support")]
pub mod test_support;

pub use booking::DieselBooking;
pub use catalogue::DieselCatalogue;
pub use config::{PoolConfig, PoolConfigError, SessionTimeouts};
pub use connection::{Backend, DatabaseUrl, DatabaseUrlError, DbConnection};
pub use error::PersistenceError;
pub use pool::{DbPool, PoolState};
pub use queue::DieselQueue;
pub use seed::{SeedPlan, SeedReport};
