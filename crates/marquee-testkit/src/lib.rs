#![doc = include_str!("../README.md")]
// Test tools: a failed arrangement must fail the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod chaos;

pub use chaos::{ChaosProxy, host_port, through};
