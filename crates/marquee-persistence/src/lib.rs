#![doc = include_str!("../README.md")]

mod abort;
pub mod booking;
pub mod catalogue;
pub mod config;
pub mod connection;
pub mod error;
pub mod migrations;
mod mysql;
pub mod pool;
mod prepared;
pub mod queue;
pub mod replica;
pub mod schema;
pub mod seed;
pub mod status;
#[cfg(feature = "test-support")]
pub mod test_support;

pub use booking::DieselBooking;
pub use catalogue::DieselCatalogue;
pub use config::SessionTimeouts;
pub use connection::{Backend, DatabaseUrl, DatabaseUrlError, DbConnection};
pub use error::PersistenceError;
/// The pool's metrics (HikariCP's names), from marquee-pool.
pub use marquee_pool::metrics;
/// The pool's settings and its errors, from marquee-pool.
pub use marquee_pool::{PoolConfig, PoolConfigError, PoolError, PoolState};
pub use pool::DbPool;
pub use queue::{DieselQueue, JOINS_PER_BATCH};
pub use replica::{Databases, ReplicaConfig, ReplicaStatus};

/// The target of the events that report where a request's time went in this crate:
/// `phase = "pool_wait"` (waiting for a connection) and `phase = "query"`, with `micros`.
pub const TIMING_TARGET: &str = "marquee_persistence::timing";
pub use seed::{SeedPlan, SeedReport};

/// The unit tests that need PostgreSQL follow the integration tests' rule (see
/// `marquee_testkit::backends`): ignored unless asked for, failing without a server.
#[cfg(test)]
mod backend_guards {
    marquee_testkit::backend_guards!(
        needs: [crate::test_support::POSTGRES_URL_VAR],
        modules: ["postgres"]
    );
}
