#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod config;
mod connector;
mod error;
mod manager;
pub mod metrics;
mod pool;
mod runner;
mod state;

pub use config::{PoolConfig, PoolConfigError};
pub use connector::{Connector, UrlConnector};
pub use error::PoolError;
pub use pool::Pool;
pub use state::PoolState;
