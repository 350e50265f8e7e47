//! marquee-queue's two views, in process and on a real Redis, held to the same answers.
//! The Redis tests are ignored unless run with `--include-ignored` and
//! `MARQUEE_TEST_REDIS_URL` set (see `marquee_testkit::backends`); each uses a namespace of
//! its own, and deletes only its own keys.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod idle;
mod outage;
mod positions;
mod rebuild;
mod support;

use marquee_testkit::REDIS_URL_VAR;
// Test modules name it `crate::on_each_tier`.
use marquee_testkit::on_each_tier;

marquee_testkit::backend_guards!(needs: [REDIS_URL_VAR], modules: ["redis"]);
