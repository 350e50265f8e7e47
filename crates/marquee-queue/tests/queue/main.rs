//! marquee-queue's two views, in process and on a real Redis, held to the same answers.
//! The Redis tests are ignored unless run with `--include-ignored` and
//! `MARQUEE_TEST_REDIS_URL` set (see `marquee_testkit::backends`); each uses a namespace of
//! its own, and deletes only its own keys. The same tests run on a Redis Cluster the binary
//! starts (`mod cluster`) with `MARQUEE_TEST_REDIS_CLUSTER=1`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod idle;
mod outage;
mod positions;
mod rebuild;
mod support;

use marquee_testkit::{REDIS_CLUSTER_VAR, REDIS_URL_VAR};
// Test modules name it `crate::on_each_tier`.
use marquee_testkit::on_each_tier;

marquee_testkit::backend_guards!(
    needs: [REDIS_URL_VAR, REDIS_CLUSTER_VAR],
    modules: ["redis", "cluster"]
);
