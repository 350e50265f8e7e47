#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod connection;
mod endpoints;

pub use connection::{Connection, Connector, Timeouts};
pub use endpoints::{RedisMode, node_urls, redact_urls};
