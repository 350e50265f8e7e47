//! The marquee binary's integration tests: one test binary, one module per concern.
//!
//! API tests start the real application on port 0, each against its own database: SQLite
//! always, and PostgreSQL when `MARQUEE_TEST_DATABASE_URL` is set (with
//! `MARQUEE_REQUIRE_BACKENDS=1`, a missing backend fails the run instead of skipping).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod architecture;
mod booking;
mod caching;
mod catalogue;
mod cli;
mod errors;
mod health;
mod helpers;
mod paging;
mod settings;
mod shutdown;
