//! The marquee binary's integration tests: one test binary, one module per concern.
//!
//! API tests start the real application on port 0, each against its own database: SQLite
//! always, and PostgreSQL when asked for. The tests that need PostgreSQL or Redis are ignored
//! unless run with `--include-ignored` and `MARQUEE_TEST_DATABASE_URL` and
//! `MARQUEE_TEST_REDIS_URL` set (see `marquee_testkit::backends`); the read replica's
//! (`replica`) need `MARQUEE_TEST_PG_BIN`, PostgreSQL's server programs, and those on a Redis
//! Cluster (`cluster.rs`) `MARQUEE_TEST_REDIS_CLUSTER=1`; both start their own servers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod architecture;
mod booking;
mod caching;
mod catalogue;
mod cli;
mod cluster;
mod contract;
mod defaults;
mod errors;
mod health;
mod helpers;
mod locks;
mod modules;
mod paging;
mod queue;
mod replica;
mod settings;
mod shutdown;

use marquee_persistence::test_support::{MYSQL_URL_VAR, POSTGRES_URL_VAR};
use marquee_testkit::{REDIS_CLUSTER_VAR, REDIS_URL_VAR};
// Test modules name it `crate::on_each_backend`.
use marquee_testkit::on_each_backend;

marquee_testkit::backend_guards!(
    needs: [
        POSTGRES_URL_VAR,
        MYSQL_URL_VAR,
        REDIS_URL_VAR,
        REDIS_CLUSTER_VAR,
        marquee_testkit::PG_BIN_VAR
    ],
    modules: ["postgres", "mysql", "cluster", "replica"]
);
