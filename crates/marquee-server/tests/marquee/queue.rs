//! The waiting room over HTTP: the gate on holds, FIFO admission, one place per user, the
//! active limit, leaving, idle drop, the fleet-wide rate, a lost view, and bad input. On
//! SQLite with the in-process view, and on PostgreSQL with Redis and two instances.

use std::fmt::Display;
use std::time::{Duration, Instant};

use marquee_persistence::Backend;
use marquee_testkit::redis_url;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Instance, TestApp, assert_problem, behind_a_proxy, namespace, test_settings};
use crate::on_each_backend;

/// A running app with the waiting room on: the in-process view on SQLite, Redis on
/// PostgreSQL and MariaDB (the fleet set-up). `extra` overrides the queue's settings.
async fn queued_app(backend: Backend, extra: &[(&str, &str)]) -> (TestApp, String) {
    let namespace = namespace();
    let redis = match backend {
        Backend::Postgres | Backend::Mysql => Some(redis_url()),
        Backend::Sqlite => None,
    };
    let mut overrides = vec![
        ("MARQUEE__QUEUE__ENABLED", "true"),
        ("MARQUEE__CACHE__NAMESPACE", namespace.as_str()),
        ("MARQUEE__REDIS__RESPONSE_TIMEOUT", "2s"),
    ];
    if let Some(redis) = &redis {
        overrides.push(("MARQUEE__REDIS__URL", redis.as_str()));
    }
    overrides.extend_from_slice(extra);
    (TestApp::spawn_with(backend, &overrides).await, namespace)
}

async fn send(address: &str, token: &str, method: Method, path: &str) -> reqwest::Response {
    reqwest::Client::new()
        .request(method, format!("{address}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .expect("sent")
}

async fn status_and_body(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn call(address: &str, token: &str, method: Method, path: &str) -> (u16, Value) {
    status_and_body(send(address, token, method, path).await).await
}

/// `method` on the queue of `concert` (which need not be a valid id), as `user`.
async fn on_queue(
    app: &TestApp,
    user: i64,
    method: Method,
    concert: impl Display,
) -> reqwest::Response {
    let path = format!("/api/v1/concerts/{concert}/queue");
    send(&app.address, &app.token(user), method, &path).await
}

async fn join(app: &TestApp, user: i64, concert: i64) -> (u16, Value) {
    status_and_body(on_queue(app, user, Method::POST, concert).await).await
}

async fn poll(app: &TestApp, user: i64, concert: i64) -> (u16, Value) {
    status_and_body(on_queue(app, user, Method::GET, concert).await).await
}

async fn leave(app: &TestApp, user: i64, concert: i64) -> u16 {
    on_queue(app, user, Method::DELETE, concert)
        .await
        .status()
        .as_u16()
}

async fn hold(app: &TestApp, user: i64, seat: i64) -> (u16, Value) {
    let response = app
        .client
        .post(format!("{}/api/v1/reservations", app.address))
        .bearer_auth(app.token(user))
        .json(&json!({ "seatId": seat }))
        .send()
        .await
        .expect("sent");
    status_and_body(response).await
}

/// Polls until `done` holds, for at most 15 s (admission rounds run every 100 ms).
async fn poll_until(
    app: &TestApp,
    user: i64,
    concert: i64,
    done: impl Fn(u16, &Value) -> bool,
) -> (u16, Value) {
    let started = Instant::now();
    loop {
        let (status, body) = poll(app, user, concert).await;
        if done(status, &body) {
            return (status, body);
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "user {user}: still {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn is_active(status: u16, body: &Value) -> bool {
    status == 200 && body["status"] == "ACTIVE"
}

/// With the waiting room on, a hold needs an admission: without one it is 403
/// `not-admitted`; a quiet concert admits a joiner at once; a payment ends the admission.
async fn the_gate_admits_only_the_admitted(backend: Backend) {
    let (app, _) = queued_app(backend, &[]).await;
    let (status, body) = hold(&app, 1, 5).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("not-admitted")),
        "{body}"
    );
    let (status, entry) = join(&app, 1, 1).await;
    assert_eq!(status, 201, "{entry}");
    assert_eq!(entry["status"], "ACTIVE", "a quiet concert shows no queue");
    assert_eq!(entry["concertId"], 1);
    assert!(entry["position"].is_null());
    assert!(entry["admittedAt"].is_string() && entry["expiresAt"].is_string());
    assert!(entry["pollAfterSeconds"].as_u64().unwrap() >= 1);
    // Admitted to concert 1, not to concert 2 (seats 201.. are concert 2's).
    assert_eq!(hold(&app, 1, 201).await.0, 403);
    let (status, held) = hold(&app, 1, 5).await;
    assert_eq!(status, 201, "{held}");

    let charge = app
        .client
        .post(format!("{}/api/v1/wallet/charge", app.address))
        .bearer_auth(app.token(1))
        .header("Idempotency-Key", "funds")
        .json(&json!({ "amount": 100_000 }))
        .send()
        .await
        .unwrap();
    assert_eq!(charge.status(), 200);
    let paid = app
        .client
        .post(format!(
            "{}/api/v1/reservations/{}/payment",
            app.address, held["id"]
        ))
        .bearer_auth(app.token(1))
        .header("Idempotency-Key", "pay")
        .send()
        .await
        .unwrap();
    assert_eq!(paid.status(), 200);
    // The payment used the admission up.
    let response = on_queue(&app, 1, Method::GET, 1).await;
    assert_problem(response, 404, "queue-entry-not-found").await;
    assert_eq!(hold(&app, 1, 6).await.0, 403);
}

/// Strict FIFO: with two slots, the third joiner waits first in line; slots freed by
/// leaving go to the next in line in join order, and positions count the users ahead.
async fn admission_is_first_come_first_served(backend: Backend) {
    let (app, _) = queued_app(backend, &[("MARQUEE__QUEUE__ACTIVE_LIMIT", "2")]).await;
    for user in 1..=6 {
        let (status, entry) = join(&app, user, 3).await;
        assert_eq!(status, 201, "{entry}");
        if user <= 2 {
            assert_eq!(entry["status"], "ACTIVE", "user {user}: {entry}");
        } else {
            assert_eq!(entry["status"], "WAITING", "user {user}: {entry}");
            assert_eq!(entry["position"], user - 2, "user {user}: {entry}");
            assert!(entry["admittedAt"].is_null() && entry["expiresAt"].is_null());
        }
    }
    // One place per user: joining again is the same entry.
    let (status, again) = join(&app, 5, 3).await;
    assert_eq!(
        (status, again["position"].as_i64()),
        (200, Some(3)),
        "{again}"
    );
    assert_eq!(poll(&app, 6, 3).await.1["position"], 4);

    assert_eq!(leave(&app, 1, 3).await, 204);
    poll_until(&app, 3, 3, is_active).await;
    assert_eq!(poll(&app, 4, 3).await.1["position"], 1);
    // Leaving from the line moves everyone behind up.
    assert_eq!(leave(&app, 5, 3).await, 204);
    assert_eq!(poll(&app, 6, 3).await.1["position"], 2);
    assert_eq!(leave(&app, 2, 3).await, 204);
    poll_until(&app, 4, 3, is_active).await;
    let (_, sixth) = poll(&app, 6, 3).await;
    assert_eq!(sixth["position"], 1, "{sixth}");
    // Never more than the limit at once.
    let mut active = 0;
    for user in 1..=6 {
        let (status, body) = poll(&app, user, 3).await;
        active += usize::from(is_active(status, &body));
    }
    assert_eq!(active, 2);
    assert_eq!(leave(&app, 5, 3).await, 404, "left already");
}

/// A waiting user who stops polling is dropped after `idle_timeout`; one who polls stays.
async fn idle_waiters_are_dropped(backend: Backend) {
    let (app, _) = queued_app(
        backend,
        &[
            ("MARQUEE__QUEUE__ACTIVE_LIMIT", "1"),
            ("MARQUEE__QUEUE__IDLE_TIMEOUT", "3s"),
        ],
    )
    .await;
    assert_eq!(join(&app, 1, 4).await.1["status"], "ACTIVE");
    assert_eq!(join(&app, 2, 4).await.1["position"], 1);
    assert_eq!(join(&app, 3, 4).await.1["position"], 2);
    // User 2 goes quiet; user 3 keeps polling as told (a third of the idle timeout).
    let (_, gone) = poll_until(&app, 3, 4, |_, body| body["position"] == 1).await;
    assert_eq!(gone["pollAfterSeconds"], 1);
    let response = on_queue(&app, 2, Method::GET, 4).await;
    assert_problem(response, 404, "queue-entry-not-found").await;
}

/// A user far back is told to poll at most `queue.max_poll_interval` apart, capped by a third
/// of the idle timeout; one near the front every second.
async fn a_long_line_polls_at_the_longest_interval(backend: Backend) {
    let (app, _) = queued_app(
        backend,
        &[
            ("MARQUEE__QUEUE__ACTIVE_LIMIT", "1"),
            ("MARQUEE__QUEUE__ADMIT_PER_SECOND", "1"),
            ("MARQUEE__QUEUE__IDLE_TIMEOUT", "1h"),
            ("MARQUEE__QUEUE__MAX_POLL_INTERVAL", "20s"),
        ],
    )
    .await;
    assert_eq!(join(&app, 1, 5).await.1["status"], "ACTIVE");
    let mut told = Vec::new();
    for user in 2..=32 {
        let (status, entry) = join(&app, user, 5).await;
        assert_eq!(status, 201, "{entry}");
        told.push((entry["position"].clone(), entry["pollAfterSeconds"].clone()));
    }
    // The one slot stays taken, so the line does not move: position p at 1 admission a
    // second is p seconds from the front, told min(p, 20). (A position read from the view can
    // miss the join before it for a moment, when a rebuild of the view races that join; so
    // each answer is checked against its own position.)
    for (position, poll_after) in &told {
        let position = position.as_u64().expect("a waiting user has a position");
        assert_eq!(poll_after, &json!(position.min(20)), "{told:?}");
    }
    assert_eq!(told[0], (json!(1), json!(1)));
    assert!(told[30].0.as_u64().unwrap() > 20, "{told:?}");
}

/// Bad input on every route: a bad id is 400, no token 401, an unknown concert 404, another
/// method 405; with the waiting room off, the door is open and holds are not gated.
async fn bad_input_on_every_route(backend: Backend) {
    let (app, _) = queued_app(backend, &[]).await;
    for method in [Method::POST, Method::GET, Method::DELETE] {
        for (concert, status, code) in [
            ("0", 400, "invalid-id"),
            ("abc", 400, "invalid-id"),
            ("99999999999999999999", 400, "invalid-id"),
            ("999999", 404, "concert-not-found"),
        ] {
            let response = on_queue(&app, 9, method.clone(), concert).await;
            assert_problem(response, status, code).await;
        }
        let response = app
            .client
            .request(method, format!("{}/api/v1/concerts/1/queue", app.address))
            .send()
            .await
            .unwrap();
        assert_problem(response, 401, "unauthorized").await;
    }
    let response = on_queue(&app, 9, Method::PUT, 1).await;
    assert_eq!(response.headers()["allow"], "GET, POST, DELETE");
    assert_problem(response, 405, "method-not-allowed").await;
    let response = on_queue(&app, 9, Method::GET, 1).await;
    assert_problem(response, 404, "queue-entry-not-found").await;
    assert_eq!(leave(&app, 9, 1).await, 404);

    let open = TestApp::spawn(backend).await;
    assert_eq!(hold(&open, 9, 7).await.0, 201, "no gate with the room off");
    let (status, door) = join(&open, 9, 1).await;
    assert_eq!(
        (status, door["status"].as_str()),
        (200, Some("ACTIVE")),
        "{door}"
    );
    assert_eq!(poll(&open, 9, 1).await.1["status"], "ACTIVE");
    assert_eq!(leave(&open, 9, 1).await, 204);
    assert_eq!(join(&open, 9, 999_999).await.0, 404);
}

on_each_backend!(
    the_gate_admits_only_the_admitted,
    admission_is_first_come_first_served,
    idle_waiters_are_dropped,
    a_long_line_polls_at_the_longest_interval,
    bad_input_on_every_route,
);

/// Two instances on one database and one Redis admit at the configured rate together, not
/// twice it: no one-second window holds more than `admit_per_second` admissions, and the
/// admitted are the first joiners, whichever instance they joined through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL and Redis: set MARQUEE_TEST_DATABASE_URL and MARQUEE_TEST_REDIS_URL"]
async fn a_fleet_admits_at_the_configured_rate() {
    let redis = redis_url();
    fleet_admits_at_the_configured_rate(&[("MARQUEE__REDIS__URL", redis.as_str())]).await;
}

/// Two instances on one PostgreSQL database, their waiting room's view on the Redis that
/// `redis` configures, admit at the configured rate together, in join order.
pub async fn fleet_admits_at_the_configured_rate(redis: &[(&str, &str)]) {
    use diesel::prelude::*;
    use marquee_persistence::schema::queue_entries as q;
    let namespace = namespace();
    let mut overrides = vec![
        ("MARQUEE__QUEUE__ENABLED", "true"),
        ("MARQUEE__QUEUE__ADMIT_PER_SECOND", "5"),
        ("MARQUEE__QUEUE__IDLE_TIMEOUT", "1h"),
        ("MARQUEE__REDIS__RESPONSE_TIMEOUT", "2s"),
        ("MARQUEE__CACHE__NAMESPACE", namespace.as_str()),
    ];
    overrides.extend_from_slice(redis);
    let first = TestApp::spawn_with(Backend::Postgres, &overrides).await;
    let second = Instance::start(
        test_settings(first.db.url().as_str(), &overrides),
        Box::new(|repository| repository),
    )
    .await;
    for user in 1..=40 {
        let address = if user % 2 == 0 {
            &first.address
        } else {
            &second.address
        };
        let token = first.token(user);
        let (status, _) = call(address, &token, Method::POST, "/api/v1/concerts/2/queue").await;
        assert_eq!(status, 201);
    }
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let rows: Vec<(i64, Option<chrono::NaiveDateTime>)> = first
        .pool
        .run(|conn| {
            Ok(q::table
                .filter(q::concert_id.eq(2))
                .order(q::seq)
                .select((q::user_id, q::admitted_at))
                .load(conn)?)
        })
        .await
        .unwrap();
    let mut per_second = std::collections::BTreeMap::new();
    for at in rows.iter().filter_map(|(_, at)| *at) {
        *per_second.entry(at.and_utc().timestamp()).or_insert(0) += 1;
    }
    assert!(
        per_second.values().all(|n| *n <= 5),
        "more than 5 in a second: {per_second:?}"
    );
    let admitted = per_second.values().sum::<usize>();
    assert!(admitted >= 15, "the line moves: {per_second:?}");
    // FIFO across both instances: the admitted are the first joiners, users 1 to n.
    let first_joiners: Vec<i64> = rows.iter().take(admitted).map(|(user, _)| *user).collect();
    assert!(
        rows.iter().take(admitted).all(|(_, at)| at.is_some()),
        "admission in join order: {rows:?}"
    );
    assert_eq!(first_joiners, (1..=admitted as i64).collect::<Vec<_>>());
    // Both instances answer the last joiner's poll: it waits behind the rest.
    for address in [&first.address, &second.address] {
        let (status, entry) = call(
            address,
            &first.token(40),
            Method::GET,
            "/api/v1/concerts/2/queue",
        )
        .await;
        assert_eq!(status, 200, "{entry}");
        assert_eq!(entry["status"], "WAITING", "{entry}");
        assert_eq!(entry["position"], 40 - admitted as i64, "{entry}");
    }
}

/// Deletes a key pattern from Redis, as a restart of a Redis that keeps nothing on disk
/// would; returns how many keys went.
fn delete_keys(redis: &str, pattern: &str) -> usize {
    let keys = std::process::Command::new("redis-cli")
        .args(["-u", redis, "--scan", "--pattern", pattern])
        .output()
        .expect("redis-cli runs");
    let keys: Vec<String> = String::from_utf8_lossy(&keys.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    for key in &keys {
        let deleted = std::process::Command::new("redis-cli")
            .args(["-u", redis, "DEL", key])
            .output()
            .expect("redis-cli runs");
        assert!(deleted.status.success());
    }
    keys.len()
}

/// A Redis restart (its keys gone) mid-queue loses no place and no admission, and while
/// Redis is unreachable joins and polls still answer, from the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL and Redis: set MARQUEE_TEST_DATABASE_URL and MARQUEE_TEST_REDIS_URL"]
async fn a_lost_redis_loses_no_place() {
    let redis = redis_url();
    let (proxy, redis_via_proxy) = behind_a_proxy(&redis).await;
    let namespace = namespace();
    let app = TestApp::spawn_with(
        Backend::Postgres,
        &[
            ("MARQUEE__QUEUE__ENABLED", "true"),
            ("MARQUEE__QUEUE__ACTIVE_LIMIT", "2"),
            ("MARQUEE__QUEUE__IDLE_TIMEOUT", "1h"),
            ("MARQUEE__REDIS__URL", redis_via_proxy.as_str()),
            ("MARQUEE__CACHE__NAMESPACE", namespace.as_str()),
        ],
    )
    .await;
    for user in 1..=6 {
        assert_eq!(join(&app, user, 5).await.0, 201);
    }
    let before: Vec<Value> = {
        let mut entries = Vec::new();
        for user in 1..=6 {
            entries.push(poll(&app, user, 5).await.1);
        }
        entries
    };
    // The first admission round builds the view; wait for it, then lose it.
    let pattern = format!("{namespace}:queue:*");
    let started = Instant::now();
    let mut wiped = 0;
    while wiped == 0 && started.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        wiped = delete_keys(&redis, &pattern);
    }
    assert!(wiped > 0, "the queue's view lived in Redis");
    for (user, was) in (1..=6).zip(&before) {
        let (status, now) = poll(&app, user, 5).await;
        assert_eq!(status, 200);
        assert_eq!(
            (&now["status"], &now["position"]),
            (&was["status"], &was["position"]),
            "user {user} after the restart"
        );
    }
    proxy.cut().await;
    let (status, late) = join(&app, 7, 5).await;
    assert_eq!(
        (status, late["position"].as_i64()),
        (201, Some(5)),
        "{late}"
    );
    for user in 1..=7 {
        assert_eq!(
            poll(&app, user, 5).await.0,
            200,
            "user {user} with Redis down"
        );
    }
    proxy.restore();
    assert_eq!(leave(&app, 1, 5).await, 204);
    poll_until(&app, 3, 5, is_active).await;
    assert_eq!(poll(&app, 7, 5).await.1["position"], 4);
}
