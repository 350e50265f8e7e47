#![doc = include_str!("../README.md")]

pub mod policy;
pub mod redis_link;

pub use policy::{CachePolicy, CachePolicyError};
pub use redis_link::{RedisConfig, RedisConfigError, RedisError, RedisLink};
