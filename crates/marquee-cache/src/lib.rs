#![doc = include_str!("../README.md")]

pub mod breaker;
pub mod cache;
pub mod config;
mod entry;
mod flight;
mod generation;
mod local;
pub mod metrics;
pub mod policy;
pub mod redis_link;

pub use breaker::{BreakerConfig, BreakerState};
pub use cache::{Cache, CacheError, CacheGroup, LoadFuture, Loader};
pub use config::{CacheConfig, CacheConfigError, RefreshConfig};
pub use policy::{CachePolicy, CachePolicyError};
pub use redis_link::{RedisConfig, RedisConfigError, RedisError, RedisLink};
