//! The marquee binary's integration tests: one test binary, one module per concern.
//!
//! API tests start the real application on port 0, each against its own database: SQLite
//! always, and PostgreSQL when asked for. The tests that need PostgreSQL or Redis are ignored
//! unless run with `--include-ignored` and `MARQUEE_TEST_DATABASE_URL` and
//! `MARQUEE_TEST_REDIS_URL` set (see `marquee_testkit::backends`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod architecture;
mod booking;
mod caching;
mod catalogue;
mod cli;
mod contract;
mod errors;
mod health;
mod helpers;
mod locks;
mod paging;
mod queue;
mod settings;
mod shutdown;

use marquee_persistence::test_support::POSTGRES_URL_VAR;
use marquee_testkit::REDIS_URL_VAR;
// Test modules name it `crate::on_each_backend`.
use marquee_testkit::on_each_backend;

/// The tests that need PostgreSQL or Redis show as ignored where none is configured, and fail
/// rather than pass when run without one.
#[test]
fn backend_tests_are_ignored_and_fail_without_their_servers() {
    marquee_testkit::assert_backend_tests_fail_without(
        &[POSTGRES_URL_VAR, REDIS_URL_VAR],
        &["postgres"],
    );
}

/// With `MARQUEE_REQUIRE_BACKENDS=1` (CI), a run without PostgreSQL and Redis or without the
/// ignored tests fails.
#[test]
fn required_backends_are_set_and_their_tests_run() {
    marquee_testkit::assert_backend_tests_run(&[POSTGRES_URL_VAR, REDIS_URL_VAR]);
}
