//! Locks held outside the service: a request that meets one waits at most
//! `database.lock_timeout`, then answers 503 `database-busy` with `Retry-After`, and the
//! same request succeeds once the lock is gone.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use marquee_persistence::{Backend, SessionTimeouts};
use marquee_server::Settings;
use marquee_server::settings::Sources;
use serde_json::json;

use crate::helpers::{TestApp, assert_problem};
use crate::on_each_backend;

/// Seat 7 belongs to schedule 1, which the demo catalogue opens for booking.
const SEAT: i64 = 7;

/// How long the holder keeps its lock if the test never tells it to let go: a request that
/// waits this long has failed the test, and the lock must not outlive it.
const HOLD_AT_MOST: Duration = Duration::from_secs(15);

/// Another session takes the lock a hold of [`SEAT`] needs: on PostgreSQL and MariaDB the
/// seat's row (`SELECT ... FOR UPDATE`, as an operator in `psql` would), on SQLite the database's write
/// lock (`BEGIN IMMEDIATE`, as a second instance or `marquee seed` would). The hold answers
/// 503 `database-busy` within well under the old waits (14.6 s on PostgreSQL, 5 s of
/// `busy_timeout` then 500 on SQLite); released, the same hold succeeds, once.
async fn a_held_lock_answers_busy_then_the_hold_succeeds(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("MARQUEE__DATABASE__LOCK_TIMEOUT", "500ms")]).await;
    let mut session = app.db.session();
    let (locked, on_locked) = mpsc::channel();
    let (release, on_release) = mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        session.execute(match backend {
            Backend::Postgres | Backend::Mysql => {
                "BEGIN; SELECT id FROM seats WHERE id = 7 FOR UPDATE;"
            }
            Backend::Sqlite => "BEGIN IMMEDIATE;",
        });
        locked.send(()).expect("the test waits for the lock");
        let _ = on_release.recv_timeout(HOLD_AT_MOST);
        session.execute("ROLLBACK;");
    });
    on_locked
        .recv_timeout(Duration::from_secs(10))
        .expect("the other session holds the lock");

    let hold = || {
        app.client
            .post(format!("{}/api/v1/reservations", app.address))
            .bearer_auth(app.token(1))
            .json(&json!({ "seatId": SEAT }))
            .send()
    };
    let started = Instant::now();
    let response = hold().await.expect("sent");
    let waited = started.elapsed();
    let retry_after = response.headers().get("retry-after").cloned();
    assert_problem(response, 503, "database-busy").await;
    assert_eq!(
        retry_after.as_ref().and_then(|v| v.to_str().ok()),
        Some("1")
    );
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_secs(3),
        "answered after {waited:?}"
    );

    release.send(()).expect("the holder is waiting");
    holder.join().expect("the holder ends");
    let response = hold().await.expect("sent");
    assert_eq!(response.status().as_u16(), 201);
    let held = app.db.count(&format!(
        "SELECT count(*) AS n FROM reservations WHERE seat_id = {SEAT}"
    ));
    let seat = app.db.count(&format!(
        "SELECT count(*) AS n FROM seats WHERE id = {SEAT} AND status = 'HELD'"
    ));
    assert_eq!((held, seat), (1, 1), "one reservation, one held seat");
}

on_each_backend!(a_held_lock_answers_busy_then_the_hold_succeeds);

fn load(variables: &[(&str, &str)]) -> anyhow::Result<Settings> {
    Settings::load_from(Sources {
        config_dir: Some(concat!(env!("CARGO_MANIFEST_DIR"), "/../../config").into()),
        variables: variables
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..Sources::default()
    })
}

/// The shipped defaults bound lock waits at 2 s and statements at 5 s; `0s` turns only the
/// statement bound off, and every refusal names its key.
#[test]
fn lock_and_statement_timeouts_are_settings() {
    let defaults = load(&[]).unwrap().session_timeouts();
    assert_eq!(defaults, SessionTimeouts::default());
    assert_eq!(
        (defaults.lock_timeout, defaults.statement_timeout),
        (Duration::from_secs(2), Duration::from_secs(5))
    );
    let off = load(&[("MARQUEE__DATABASE__STATEMENT_TIMEOUT", "0s")]).unwrap();
    assert!(off.session_timeouts().statement_timeout.is_zero());
    for (key, value, named) in [
        (
            "MARQUEE__DATABASE__LOCK_TIMEOUT",
            "0s",
            "database.lock_timeout",
        ),
        ("MARQUEE__DATABASE__LOCK_TIMEOUT", "soon", "lock_timeout"),
        (
            "MARQUEE__DATABASE__STATEMENT_TIMEOUT",
            "30days",
            "database.statement_timeout",
        ),
    ] {
        let message = format!("{:#}", load(&[(key, value)]).unwrap_err());
        assert!(message.contains(named), "{key}={value}: {message}");
    }
}

/// The settings' `Debug` output, which a log line or a panic can carry, shows neither the
/// database's nor Redis's password.
#[test]
fn settings_print_no_url_password() {
    let settings = load(&[
        (
            "MARQUEE__DATABASE__URL",
            "postgres://app:s3cr3t@pa55@db/marquee?password=qp4ss",
        ),
        ("MARQUEE__REDIS__URL", "redis://:r3d1s@cache:6379"),
    ])
    .unwrap();
    let printed = format!("{settings:?}");
    for secret in ["s3cr3t", "pa55", "qp4ss", "r3d1s"] {
        assert!(!printed.contains(secret), "{secret:?} in {printed}");
    }
    assert!(
        printed.contains("postgres://app:***@db/marquee?password=***"),
        "{printed}"
    );
    assert!(printed.contains("redis://:***@cache:6379"), "{printed}");
}
