//! marquee-cache against a real Redis (`MARQUEE_TEST_REDIS_URL`) and in-process. Loads are
//! counted at the source (the loader), never inside the cache.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod coalescing;
mod expiry;
mod outage;
mod support;
mod trust;
