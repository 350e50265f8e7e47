#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod connection;
mod connector;
mod endpoints;

pub use connection::Connection;
pub use connector::{Connector, Timeouts};
pub use endpoints::{RedisMode, node_urls, redact_urls};
