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

/// The Redis tests show as ignored where no Redis is configured, and fail rather than pass
/// when run without one.
#[test]
fn redis_tests_are_ignored_and_fail_without_a_server() {
    marquee_testkit::assert_backend_tests_fail_without(&[REDIS_URL_VAR], &["redis"]);
}

/// With `MARQUEE_REQUIRE_BACKENDS=1` (CI), a run without Redis or without the ignored tests
/// fails.
#[test]
fn required_backends_are_set_and_their_tests_run() {
    marquee_testkit::assert_backend_tests_run(&[REDIS_URL_VAR]);
}
