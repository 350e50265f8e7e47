//! marquee-cache against a real Redis and in-process. Loads are counted at the source (the
//! loader), never inside the cache. The Redis tests are ignored unless run with
//! `--include-ignored` and `MARQUEE_TEST_REDIS_URL` set (see `marquee_testkit::backends`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod coalescing;
mod expiry;
mod outage;
mod support;
mod trust;

use marquee_testkit::REDIS_URL_VAR;
// Test modules name it `crate::on_each_tier`.
use marquee_testkit::on_each_tier;

marquee_testkit::backend_guards!(needs: [REDIS_URL_VAR], modules: ["redis"]);
