#![doc = include_str!("../README.md")]
// Test tools: a failed arrangement must fail the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod backends;
pub mod chaos;
pub mod cluster;
pub mod private_postgres;

pub use backends::{
    REDIS_URL_VAR, REQUIRE_BACKENDS_VAR, Tier, assert_backend_tests_fail_without,
    assert_backend_tests_run, redis_url, unique_namespace,
};
pub use chaos::{ChaosProxy, host_port, through};
pub use cluster::{REDIS_CLUSTER_VAR, RedisCluster, require_redis_cluster};
pub use private_postgres::{PG_BIN_VAR, PrivatePostgres, pg_bin};
