//! marquee-cache against a real Redis and in-process. Loads are counted at the source (the
//! loader), never inside the cache. The Redis tests are ignored unless run with
//! `--include-ignored` and `MARQUEE_TEST_REDIS_URL` set (see `marquee_testkit::backends`);
//! the same tests on a Redis Cluster (`mod cluster`), and `cluster.rs`'s own, need
//! `MARQUEE_TEST_REDIS_CLUSTER=1` and start their clusters themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster;
mod coalescing;
mod expiry;
mod outage;
mod support;
mod trust;

use marquee_testkit::{REDIS_CLUSTER_VAR, REDIS_URL_VAR};
// Test modules name it `crate::on_each_tier`.
use marquee_testkit::on_each_tier;

marquee_testkit::backend_guards!(
    needs: [REDIS_URL_VAR, REDIS_CLUSTER_VAR],
    modules: ["redis", "cluster"]
);
