//! Locks held outside the service: a request that meets one waits at most
//! `database.lock_timeout`, then answers 503 `database-busy` with `Retry-After`, and the
//! same request succeeds once the lock is gone.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use marquee_persistence::Backend;
use serde_json::json;

use crate::helpers::{TestApp, assert_problem};
use crate::on_each_backend;

/// Seat 7 belongs to schedule 1, which the demo catalogue opens for booking.
const SEAT: i64 = 7;

/// How long the holder keeps its lock if the test never tells it to let go: a request that
/// waits this long has failed the test, and the lock must not outlive it.
const HOLD_AT_MOST: Duration = Duration::from_secs(15);

/// Another session takes the lock a hold of [`SEAT`] needs: on PostgreSQL the seat's row
/// (`SELECT ... FOR UPDATE`, as an operator in `psql` would), on SQLite the database's write
/// lock (`BEGIN IMMEDIATE`, as a second instance or `marquee seed` would). The hold answers
/// 503 `database-busy` within well under the old waits (14.6 s on PostgreSQL, 5 s of
/// `busy_timeout` then 500 on SQLite); released, the same hold succeeds, once.
async fn a_held_lock_answers_busy_then_the_hold_succeeds(backend: Backend) {
    let Some(app) =
        TestApp::spawn_with(backend, &[("MARQUEE__DATABASE__LOCK_TIMEOUT", "500ms")]).await
    else {
        return;
    };
    let mut session = app.db.session();
    let (locked, on_locked) = mpsc::channel();
    let (release, on_release) = mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        session.execute(match backend {
            Backend::Postgres => "BEGIN; SELECT id FROM seats WHERE id = 7 FOR UPDATE;",
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
