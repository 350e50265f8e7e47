//! Booking over HTTP: races for seats, money that is never lost or taken twice, ownership,
//! expiry, bad input, and seat listings that follow holds on every instance.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use marquee_persistence::Backend;
use marquee_persistence::test_support::TestDatabase;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Counting, Instance, TestApp, assert_problem, test_settings};
use crate::on_each_backend;

/// Settings for contention: enough connections and patience that queueing is not mistaken
/// for failure.
const BUSY: &[(&str, &str)] = &[
    ("MARQUEE__DATABASE__POOL__MAXIMUM_POOL_SIZE", "8"),
    ("MARQUEE__DATABASE__POOL__CONNECTION_TIMEOUT", "20s"),
];

async fn send(
    client: &reqwest::Client,
    method: Method,
    url: String,
    token: Option<&str>,
    key: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = client.request(method, url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("sent");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// POSTs `body` to `path` as `user`, with `key` as its `Idempotency-Key` when given.
async fn post_as(
    app: &TestApp,
    user: i64,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let url = format!("{}{path}", app.address);
    send(
        &app.client,
        Method::POST,
        url,
        Some(&app.token(user)),
        key,
        body,
    )
    .await
}

/// `method path` as `user`, with no body and no key.
async fn call_as(app: &TestApp, user: i64, method: Method, path: &str) -> (u16, Value) {
    let url = format!("{}{path}", app.address);
    send(&app.client, method, url, Some(&app.token(user)), None, None).await
}

async fn hold(app: &TestApp, user: i64, seat: i64) -> (u16, Value) {
    let body = json!({ "seatId": seat });
    post_as(app, user, "/api/v1/reservations", None, Some(body)).await
}

async fn charge(app: &TestApp, user: i64, amount: i64, key: &str) -> (u16, Value) {
    let body = json!({ "amount": amount });
    post_as(app, user, "/api/v1/wallet/charge", Some(key), Some(body)).await
}

async fn pay(app: &TestApp, user: i64, reservation: i64, key: &str) -> (u16, Value) {
    let path = format!("/api/v1/reservations/{reservation}/payment");
    post_as(app, user, &path, Some(key), None).await
}

/// 200 users hold the same seat at once: exactly one wins, 199 get 409, none a 5xx.
async fn two_hundred_users_one_seat(backend: Backend) {
    let app = TestApp::spawn_with(backend, BUSY).await;
    let app = std::sync::Arc::new(app);
    let attempts: Vec<_> = (1..=200)
        .map(|user| {
            let app = app.clone();
            tokio::spawn(async move { hold(&app, user, 7).await })
        })
        .collect();
    let mut statuses = BTreeMap::new();
    for attempt in attempts {
        let (status, body) = attempt.await.unwrap();
        if status == 409 {
            assert_eq!(body["code"], "seat-taken");
        }
        *statuses.entry(status).or_insert(0) += 1;
    }
    assert_eq!(statuses, BTreeMap::from([(201, 1), (409, 199)]));
}

/// 1,000 users race for the 50 seats of one schedule through two instances: exactly 50
/// holds, and no seat is held twice (checked on the tables).
async fn a_thousand_users_fifty_seats_two_instances(backend: Backend) {
    let db = TestDatabase::new(backend);
    let a = Instance::start(test_settings(db.url().as_str(), BUSY), Box::new(|r| r)).await;
    let b = Instance::start(test_settings(db.url().as_str(), BUSY), Box::new(|r| r)).await;
    let client = reqwest::Client::new();
    let attempts: Vec<_> = (1..=1000i64)
        .map(|user| {
            let instance = if user % 2 == 0 { &a } else { &b };
            let (url, token, client) = (
                format!("{}/api/v1/reservations", instance.address),
                instance.token(user),
                client.clone(),
            );
            // Seats 1..=50 are schedule 1's.
            let seat = 1 + (user * 7) % 50;
            tokio::spawn(async move {
                send(
                    &client,
                    Method::POST,
                    url,
                    Some(&token),
                    None,
                    Some(json!({ "seatId": seat })),
                )
                .await
            })
        })
        .collect();
    let mut won = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            (201, _) => won += 1,
            (409, body) => assert_eq!(body["code"], "seat-taken"),
            (status, body) => panic!("unexpected {status}: {body}"),
        }
    }
    assert_eq!(won, 50);
    let held =
        db.count("SELECT count(*) AS n FROM seats WHERE schedule_id = 1 AND status = 'HELD'");
    let reservations = db.count("SELECT count(*) AS n FROM reservations WHERE status = 'HELD'");
    let distinct =
        db.count("SELECT count(DISTINCT seat_id) AS n FROM reservations WHERE status = 'HELD'");
    assert_eq!((held, reservations, distinct), (50, 50, 50));
}

/// 100 concurrent charges of 10 all land; one key sent 10 times charges once and answers
/// alike.
async fn charges_add_up_and_keys_charge_once(backend: Backend) {
    let app = TestApp::spawn_with(backend, BUSY).await;
    let app = std::sync::Arc::new(app);
    let charges: Vec<_> = (0..100)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move { charge(&app, 5, 10, &format!("charge-{i}")).await })
        })
        .collect();
    for response in charges {
        assert_eq!(response.await.unwrap().0, 200);
    }
    let (_, wallet) = call_as(&app, 5, Method::GET, "/api/v1/wallet").await;
    assert_eq!(wallet, json!({ "userId": 5, "balance": 1000 }));

    let replays: Vec<_> = (0..10)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { charge(&app, 5, 10, "the-same-key").await })
        })
        .collect();
    let mut answers = HashSet::new();
    for replay in replays {
        let (status, body) = replay.await.unwrap();
        assert_eq!(status, 200);
        answers.insert(body.to_string());
    }
    assert_eq!(answers.len(), 1, "{answers:?}");
    let (_, wallet) = charge(&app, 5, 1, "check").await;
    assert_eq!(wallet["balance"], 1011, "the repeated key charged once");
    let (status, body) = charge(&app, 5, 99, "the-same-key").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("idempotency-key-reused"))
    );
}

/// A refused payment stays refused under its key, as with Stripe: the retry after a top-up
/// gets the same 402, marked as a replay. A new key pays; retried 20 times at once it makes
/// one debit and 20 identical answers. A key after that is refused.
async fn a_payment_is_taken_once(backend: Backend) {
    let app = TestApp::spawn_with(backend, BUSY).await;
    let app = std::sync::Arc::new(app);
    let (_, held) = hold(&app, 9, 11).await;
    let id = held["id"].as_i64().unwrap();
    let price = held["price"].as_i64().unwrap();
    let (status, refusal) = pay(&app, 9, id, "pay-1").await;
    assert_eq!(
        (status, refusal["code"].as_str()),
        (402, Some("insufficient-balance"))
    );
    charge(&app, 9, 100_000, "top-up").await;
    let replay = app
        .client
        .post(format!("{}/api/v1/reservations/{id}/payment", app.address))
        .bearer_auth(app.token(9))
        .header("Idempotency-Key", "pay-1")
        .send()
        .await
        .unwrap();
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let replayed = assert_problem(replay, 402, "insufficient-balance").await;
    assert_eq!(replayed, refusal, "the first answer, as it was");

    let retries: Vec<_> = (0..20)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { pay(&app, 9, id, "pay-2").await })
        })
        .collect();
    let mut answers = HashSet::new();
    for retry in retries {
        let (status, body) = retry.await.unwrap();
        assert_eq!(status, 200, "{body}");
        answers.insert(body.to_string());
    }
    assert_eq!(answers.len(), 1, "{answers:?}");
    let answer: Value = serde_json::from_str(answers.iter().next().unwrap()).unwrap();
    assert_eq!(answer["status"], "CONFIRMED");
    assert_eq!(answer["reservationId"], id);
    assert_eq!(answer["amount"], price);
    let (_, wallet) = charge(&app, 9, 1, "check").await;
    assert_eq!(wallet["balance"], 100_000 - price + 1, "one debit");
    let (status, body) = pay(&app, 9, id, "pay-3").await;
    assert_eq!((status, body["code"].as_str()), (409, Some("already-paid")));
    let seats: Value = app
        .get_json("/api/v1/schedules/1/seats?status=sold")
        .await
        .1;
    assert!(seats.as_array().unwrap().iter().any(|s| s["number"] == 11));
}

/// User B can neither read, cancel nor pay user A's reservation: 404, as if it did not exist.
async fn another_users_reservation_is_invisible(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, held) = hold(&app, 1, 12).await;
    let id = held["id"].as_i64().unwrap();
    let path = format!("/api/v1/reservations/{id}");
    for (status, body) in [
        call_as(&app, 2, Method::GET, &path).await,
        call_as(&app, 2, Method::DELETE, &path).await,
        post_as(&app, 2, &format!("{path}/payment"), Some("k"), None).await,
    ] {
        assert_eq!(
            (status, body["code"].as_str()),
            (404, Some("reservation-not-found"))
        );
    }
    let (_, mine) = call_as(&app, 2, Method::GET, "/api/v1/reservations").await;
    assert_eq!(mine, json!([]));
    // A can, and cancelling frees the seat for B.
    let (status, cancelled) = call_as(&app, 1, Method::DELETE, &path).await;
    assert_eq!(
        (status, cancelled["status"].as_str()),
        (200, Some("CANCELLED"))
    );
    assert_eq!(hold(&app, 2, 12).await.0, 201);
}

/// A hold with a short configured lifetime expires: the seat can be taken again at once,
/// and the old hold can no longer be paid.
async fn a_short_hold_expires(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("MARQUEE__BOOKING__HOLD_DURATION", "1s")]).await;
    let (_, held) = hold(&app, 1, 13).await;
    let id = held["id"].as_i64().unwrap();
    assert_eq!(hold(&app, 2, 13).await.0, 409);
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(hold(&app, 2, 13).await.0, 201, "free once the hold ran out");
    charge(&app, 1, 100_000, "k").await;
    let (status, body) = pay(&app, 1, id, "late").await;
    assert_eq!((status, body["code"].as_str()), (410, Some("hold-expired")));
    let (_, old) = call_as(&app, 1, Method::GET, &format!("/api/v1/reservations/{id}")).await;
    assert_eq!(old["status"], "EXPIRED");
}

/// Holds outside the booking window are refused with their own code.
async fn holds_respect_the_booking_window(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // Schedule 4 (seats 151..=200) opens in a week.
    let (status, body) = hold(&app, 1, 151).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("booking-closed"))
    );
    let (status, body) = hold(&app, 1, 999_999).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("seat-not-found"))
    );
}

/// A row lock held by another session (a backup, an operator in psql, another instance's
/// long transaction), released after `wait`. SQLite has no row locks: there an immediate
/// transaction holds the database's one write lock, as a second instance or `marquee seed`
/// would.
fn hold_seat_lock(db: &TestDatabase, seat: i64, wait: Duration) -> std::thread::JoinHandle<()> {
    let begin = match db.url().backend() {
        Backend::Sqlite => "BEGIN IMMEDIATE;".to_owned(),
        Backend::Postgres | Backend::Mysql => {
            format!("BEGIN; SELECT id FROM seats WHERE id = {seat} FOR UPDATE;")
        }
    };
    let mut session = db.session();
    let (locked, on_locked) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        session.execute(&begin);
        locked.send(()).unwrap();
        std::thread::sleep(wait);
        session.execute("COMMIT;");
    });
    on_locked.recv().unwrap();
    holder
}

/// Expiry is judged when the payment is decided, not when it arrived: a payment sent while
/// the hold is live, but held up by a lock until after it ran out, is refused 410. And a
/// hold held up by a lock lasts its full duration from when it was written.
async fn decisions_use_the_time_of_the_decision(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("MARQUEE__BOOKING__HOLD_DURATION", "1s")]).await;
    // The locks below are held for less than database.lock_timeout, so the requests wait
    // them out instead of giving up.
    charge(&app, 1, 100_000, "funds").await;
    let (_, held) = hold(&app, 1, 21).await;
    let id = held["id"].as_i64().unwrap();
    let expires: chrono::DateTime<chrono::Utc> =
        held["expiresAt"].as_str().unwrap().parse().unwrap();
    let lock = hold_seat_lock(&app.db, 21, Duration::from_millis(1_500));
    let sent = chrono::Utc::now();
    assert!(sent < expires, "sent while the hold is live");
    let (status, body) = pay(&app, 1, id, "late-by-the-lock").await;
    lock.join().unwrap();
    assert_eq!(
        (status, body["code"].as_str()),
        (410, Some("hold-expired")),
        "{body}"
    );
    assert_eq!(charge(&app, 1, 1, "check").await.1["balance"], 100_001);

    let lock = hold_seat_lock(&app.db, 22, Duration::from_millis(1_200));
    let sent = chrono::Utc::now();
    let (status, held) = hold(&app, 2, 22).await;
    lock.join().unwrap();
    assert_eq!(status, 201, "{held}");
    let expires: chrono::DateTime<chrono::Utc> =
        held["expiresAt"].as_str().unwrap().parse().unwrap();
    let lasts = expires - sent;
    assert!(
        lasts >= chrono::TimeDelta::milliseconds(2_100),
        "1 s counted from the write, 1.2 s after the request: {lasts}"
    );
}

/// One user may hold `booking.max_holds_per_user` seats in all, whatever the schedules.
async fn holds_are_capped_per_user_across_schedules(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("MARQUEE__BOOKING__MAX_HOLDS_PER_USER", "5")]).await;
    // Four on schedule 1 (its own cap), one on schedule 2.
    for seat in [1, 2, 3, 4, 51] {
        assert_eq!(hold(&app, 1, seat).await.0, 201);
    }
    let (status, body) = hold(&app, 1, 101).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("hold-limit-reached")),
        "{body}"
    );
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("across all schedules")
    );
    assert_eq!(
        hold(&app, 2, 101).await.0,
        201,
        "another user is not affected"
    );
}

/// Idempotency keys are purged after `booking.idempotency_retention` by the server's own job:
/// the table does not grow without bound, and a purged key is a new request.
async fn idempotency_keys_are_purged_after_the_retention(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        &[("MARQUEE__BOOKING__IDEMPOTENCY_RETENTION", "1s")],
    )
    .await;
    assert_eq!(charge(&app, 4, 100, "once").await.1["balance"], 100);
    assert_eq!(
        app.db.count("SELECT count(*) AS n FROM idempotency_keys"),
        1
    );
    let started = Instant::now();
    while app.db.count("SELECT count(*) AS n FROM idempotency_keys") > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the key was not purged"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(charge(&app, 4, 100, "once").await.1["balance"], 200);
}

/// After a hold and after a payment, every listing shows the change at once, though all of
/// them were cached for a minute; and only the listings the change touches are loaded again:
/// a hold reloads the schedule's seats, available and held seats and the concert's counts, a
/// payment (held to sold) its seats, held and sold seats, and leaves the available seats and
/// the counts cached.
async fn a_write_reloads_only_the_listings_it_changes(backend: Backend) {
    let db = TestDatabase::new(backend);
    let settings = test_settings(
        db.url().as_str(),
        &[
            ("MARQUEE__CACHE_TTL__SEATS__BASE_TTL", "60s"),
            ("MARQUEE__CACHE_TTL__SCHEDULES__BASE_TTL", "60s"),
        ],
    );
    let counting = std::sync::Arc::new(Counting::default());
    let app = TestApp::start_layered(db, settings, counting.layer()).await;
    let numbers = |listing: &Value| -> Vec<(i64, String)> {
        listing
            .as_array()
            .unwrap()
            .iter()
            .map(|seat| {
                let number = seat["number"].as_i64().unwrap();
                (number, seat["status"].as_str().unwrap().to_owned())
            })
            .collect()
    };
    let look = || async {
        let mut seen = BTreeMap::new();
        for filter in ["", "?status=available", "?status=held", "?status=sold"] {
            let (status, listing) = app
                .get_json(&format!("/api/v1/schedules/1/seats{filter}"))
                .await;
            assert_eq!(status, 200);
            seen.insert(filter, numbers(&listing));
        }
        let (_, schedules) = app.get_json("/api/v1/concerts/1/schedules").await;
        let available = schedules[0]["availableSeats"].as_i64().unwrap();
        (seen, available)
    };
    let state_of = |seen: &BTreeMap<&str, Vec<(i64, String)>>, filter: &str| {
        seen[filter]
            .iter()
            .find(|(number, _)| *number == 11)
            .map(|(_, status)| status.clone())
    };

    let (seen, available_before) = look().await;
    assert_eq!(state_of(&seen, "").as_deref(), Some("AVAILABLE"));
    let loads = counting.loads();
    assert_eq!(look().await.1, available_before);
    assert_eq!(counting.loads(), loads, "every listing is cached");

    let (status, held) = hold(&app, 9, 11).await;
    assert_eq!(status, 201, "{held}");
    let (seen, available) = look().await;
    assert_eq!(state_of(&seen, "").as_deref(), Some("HELD"));
    assert_eq!(state_of(&seen, "?status=available"), None);
    assert_eq!(state_of(&seen, "?status=held").as_deref(), Some("HELD"));
    assert_eq!(state_of(&seen, "?status=sold"), None);
    assert_eq!(available, available_before - 1);
    assert_eq!(
        counting.loads() - loads,
        4,
        "all, available, held and the counts"
    );

    let id = held["id"].as_i64().unwrap();
    charge(&app, 9, 100_000, "top-up").await;
    let (status, paid) = pay(&app, 9, id, "pay").await;
    assert_eq!(status, 200, "{paid}");
    let loads = counting.loads();
    let (seen, available) = look().await;
    assert_eq!(state_of(&seen, "").as_deref(), Some("SOLD"));
    assert_eq!(state_of(&seen, "?status=available"), None);
    assert_eq!(state_of(&seen, "?status=held"), None);
    assert_eq!(state_of(&seen, "?status=sold").as_deref(), Some("SOLD"));
    assert_eq!(available, available_before - 1);
    assert_eq!(
        counting.loads() - loads,
        3,
        "all, held and sold; not available, not the counts"
    );
}

on_each_backend!(
    a_write_reloads_only_the_listings_it_changes,
    decisions_use_the_time_of_the_decision,
    holds_are_capped_per_user_across_schedules,
    idempotency_keys_are_purged_after_the_retention,
    two_hundred_users_one_seat,
    a_thousand_users_fifty_seats_two_instances,
    charges_add_up_and_keys_charge_once,
    a_payment_is_taken_once,
    another_users_reservation_is_invisible,
    a_short_hold_expires,
    holds_respect_the_booking_window,
);

/// Every write endpoint answers bad input with a 4xx problem, and nothing without a valid
/// token gets past 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_a_problem() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let token = app.token(1);
    let url = |path: &str| format!("{}{path}", app.address);
    let raw = |path: &str, body: &'static str, key: Option<&'static str>| {
        let mut request = app
            .client
            .post(url(path))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        request
    };
    const CHARGE: &str = "/api/v1/wallet/charge";
    const HOLD: &str = "/api/v1/reservations";
    const K1: Option<&str> = Some("k1");
    // JSON bodies (and headers) a 400 refuses: (path, body, Idempotency-Key, code).
    let bad_requests: [(&str, &'static str, Option<&'static str>, &str); 19] = [
        (CHARGE, r#"{"amount": "#, K1, "invalid-json"),
        (CHARGE, r#"{"amount": "10"}"#, K1, "invalid-json"),
        (CHARGE, r#"{"amount": 1.5}"#, K1, "invalid-json"),
        (
            CHARGE,
            r#"{"amount": 99999999999999999999}"#,
            K1,
            "invalid-json",
        ),
        (CHARGE, "{}", K1, "invalid-json"),
        (CHARGE, r#"{"amount": 10, "extra": 1}"#, K1, "invalid-json"),
        (CHARGE, r#"{"amount": 0}"#, K1, "invalid-amount"),
        (CHARGE, r#"{"amount": -10}"#, K1, "invalid-amount"),
        (CHARGE, r#"{"amount": 10000000000}"#, K1, "invalid-amount"),
        (
            CHARGE,
            r#"{"amount": 10}"#,
            None,
            "idempotency-key-required",
        ),
        (
            CHARGE,
            r#"{"amount": 10}"#,
            Some(" "),
            "idempotency-key-invalid",
        ),
        (HOLD, "[1]", None, "invalid-json"),
        // A duplicate key is refused, not resolved to either value.
        (
            CHARGE,
            r#"{"amount": 1, "amount": 5000}"#,
            Some("k2"),
            "invalid-json",
        ),
        (HOLD, r#"{"seatId": 3, "seatId": 4}"#, None, "invalid-json"),
        (HOLD, r#"{"seatId": "7"}"#, None, "invalid-json"),
        (HOLD, r#"{"seatId": 0}"#, None, "invalid-id"),
        (HOLD, r#"{"seatId": -3}"#, None, "invalid-id"),
        (HOLD, r#"{"seat": 3}"#, None, "invalid-json"),
        (
            "/api/v1/reservations/abc/payment",
            "",
            Some("k"),
            "invalid-id",
        ),
    ];
    let mut cases: Vec<(reqwest::RequestBuilder, u16, &str)> = bad_requests
        .into_iter()
        .map(|(path, body, key, code)| (raw(path, body, key), 400, code))
        .collect();
    cases.extend([
        (
            app.client
                .post(url(HOLD))
                .bearer_auth(&token)
                .body("seatId=3"),
            415,
            "unsupported-media-type",
        ),
        (
            raw("/api/v1/reservations/99999999999999999999", "", None),
            405,
            "method-not-allowed",
        ),
        (
            app.client.post(url(HOLD)).json(&json!({ "seatId": 3 })),
            401,
            "unauthorized",
        ),
        (
            app.client
                .get(url("/api/v1/wallet"))
                .header("Authorization", "Basic abc"),
            401,
            "unauthorized",
        ),
        (
            app.client
                .get(url("/api/v1/wallet"))
                .bearer_auth("not.a.token"),
            401,
            "unauthorized",
        ),
    ]);
    for (request, status, code) in cases {
        let response = request.send().await.unwrap();
        if status == 401 {
            assert_eq!(response.headers()["www-authenticate"], "Bearer");
        }
        assert_problem(response, status, code).await;
    }
    let (_, wallet) = call_as(&app, 1, Method::GET, "/api/v1/wallet").await;
    assert_eq!(wallet["balance"], 0, "no bad request changed anything");
}

/// A held seat stops being listed as available on every instance within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Redis: set MARQUEE_TEST_REDIS_URL"]
async fn a_hold_reaches_every_instances_listing_within_a_second() {
    let redis = marquee_testkit::redis_url();
    let db = TestDatabase::sqlite();
    a_hold_on_one_instance_is_seen_on_the_other(&db, &[("MARQUEE__REDIS__URL", redis.as_str())])
        .await;
}

/// Two instances on `db` with their caches on the Redis that `redis` configures: a seat held
/// through one stops being listed as available by the other within a second.
pub async fn a_hold_on_one_instance_is_seen_on_the_other(
    db: &TestDatabase,
    redis: &[(&str, &str)],
) {
    let namespace = crate::helpers::namespace();
    let mut overrides = vec![
        ("MARQUEE__CACHE__NAMESPACE", namespace.as_str()),
        // Long lifetimes, so only invalidation can make the listing change.
        ("MARQUEE__CACHE__L1_TTL", "60s"),
        ("MARQUEE__CACHE_TTL__SEATS__BASE_TTL", "60s"),
    ];
    overrides.extend_from_slice(redis);
    let a = Instance::start(
        test_settings(db.url().as_str(), &overrides),
        Box::new(|r| r),
    )
    .await;
    let b = Instance::start(
        test_settings(db.url().as_str(), &overrides),
        Box::new(|r| r),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let client = reqwest::Client::new();
    let available = |instance: &Instance| {
        let url = format!(
            "{}/api/v1/schedules/2/seats?status=available",
            instance.address
        );
        let client = client.clone();
        async move {
            let seats: Value = client.get(url).send().await.unwrap().json().await.unwrap();
            seats
                .as_array()
                .unwrap()
                .iter()
                .any(|seat| seat["number"] == 5)
        }
    };
    assert!(
        available(&a).await && available(&b).await,
        "listed, and now cached"
    );

    let (status, _) = send(
        &client,
        Method::POST,
        format!("{}/api/v1/reservations", a.address),
        Some(&a.token(1)),
        None,
        Some(json!({ "seatId": 55 })),
    )
    .await;
    assert_eq!(status, 201);
    let started = Instant::now();
    while available(&b).await {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "still listed on b after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "the hold was seen on the other instance after {:?}",
        started.elapsed()
    );
    assert!(!available(&a).await);
}
