//! Read replicas over HTTP: the application on a private PostgreSQL primary with a real
//! streaming replica (`marquee_testkit::PrivatePostgres`), whose replay a test pauses to
//! make it lag, or which it stops.
//!
//! - cache-miss loads of concerts read the replica (a paused replica's older title is what
//!   the API answers), and both pools are in `/metrics`;
//! - a reservation is read from the primary right after its hold;
//! - a lagging replica never puts a stale seat state into the cache;
//! - with the replica down, or lagging past `database.replica_max_lag`, lookups answer 200
//!   from the primary, quickly, and readiness says `DEGRADED`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use marquee_persistence::Databases;
use marquee_server::Application;
use marquee_testkit::PrivatePostgres;
use serde_json::{Value, json};

use crate::helpers::{namespace, test_settings};

/// A running application on a private primary, with its replica.
struct ReplicatedApp {
    address: String,
    client: reqwest::Client,
    tokens: marquee_api::auth::Tokens,
    databases: Databases,
    handle: marquee_api::ServerHandle,
    /// Shared by the instances of a fleet; stopped when the last one is dropped.
    pg: Arc<PrivatePostgres>,
}

impl ReplicatedApp {
    /// The app with the demo catalogue, its replica caught up and in use.
    async fn start(max_lag: &str) -> Self {
        let pg = tokio::task::spawn_blocking(PrivatePostgres::primary_with_replica)
            .await
            .unwrap();
        Self::start_on(
            Arc::new(pg),
            &[("MARQUEE__DATABASE__REPLICA_MAX_LAG", max_lag)],
        )
        .await
    }

    /// An app on `pg`'s primary and replica, with `overrides`.
    async fn start_on(pg: Arc<PrivatePostgres>, overrides: &[(&str, &str)]) -> Self {
        let replica = pg.replica_url("postgres");
        let mut variables = vec![("MARQUEE__DATABASE__REPLICA_URL", replica.as_str())];
        variables.extend_from_slice(overrides);
        let settings = test_settings(&pg.primary_url("postgres"), &variables);
        marquee_server::telemetry::init(&settings);
        let tokens = settings.auth.tokens();
        let app = Application::build(settings).await.expect("the app builds");
        let started = Self {
            address: format!("http://127.0.0.1:{}", app.port()),
            client: reqwest::Client::new(),
            tokens,
            databases: app.databases().clone(),
            handle: app.handle(),
            pg,
        };
        tokio::spawn(app.run_until_stopped());
        // The migrations and the demo catalogue were written on the primary just now.
        started.pg.wait_for_replay();
        started.until_usable(true).await;
        started
    }

    async fn until_usable(&self, usable: bool) {
        let started = Instant::now();
        while self.databases.replica_status().unwrap().usable != usable {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the replica did not become {} within 10 s: {:?}",
                if usable { "usable" } else { "unusable" },
                self.databases.replica_status()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .unwrap()
    }

    async fn get_json(&self, path: &str) -> Value {
        let response = self.get(path).await;
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.unwrap()
    }

    /// `GET path` as `user`: status and body.
    async fn get_as(&self, user: i64, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.address))
            .bearer_auth(self.token(user))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    async fn hold(&self, user: i64, seat: i64) -> Value {
        let response = self
            .client
            .post(format!("{}/api/v1/reservations", self.address))
            .bearer_auth(self.token(user))
            .json(&json!({ "seatId": seat }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        response.json().await.unwrap()
    }

    fn token(&self, user: i64) -> String {
        self.tokens
            .mint(
                marquee_domain::UserId::new(user).unwrap(),
                Duration::from_secs(3600),
            )
            .unwrap()
    }

    /// The status of seat `seat` in the listing of schedule 1.
    async fn listed_status(&self, seat: i64) -> String {
        let seats = self.get_json("/api/v1/schedules/1/seats").await;
        seats
            .as_array()
            .unwrap()
            .iter()
            .find(|listed| listed["id"] == seat)
            .map(|listed| listed["status"].as_str().unwrap().to_owned())
            .unwrap()
    }

    /// `availableSeats` of schedule 1, as concert 1's schedules list it.
    async fn available_on_schedule_1(&self) -> i64 {
        let schedules = self.get_json("/api/v1/concerts/1/schedules").await;
        schedules[0]["availableSeats"].as_i64().unwrap()
    }
}

impl Drop for ReplicatedApp {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        tokio::spawn(async move { handle.stop(false).await });
    }
}

/// With the replica's replay paused, a concert whose title changed on the primary is
/// answered with the replica's title: the cache-miss load read the replica. `/metrics`
/// carries the replica pool's HikariCP metrics under `pool="replica"` beside the primary's
/// `pool="marquee"`, and the lag gauges; readiness reports the replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL's server programs: set MARQUEE_TEST_PG_BIN"]
async fn catalogue_misses_read_the_replica_and_both_pools_are_in_the_metrics() {
    let app = ReplicatedApp::start("60s").await;
    let title = app
        .pg
        .primary_sql("postgres", "SELECT title FROM concerts WHERE id = 3");
    app.pg.pause_replay();
    app.pg.primary_sql(
        "postgres",
        "UPDATE concerts SET title = 'Changed on the primary' WHERE id = 3",
    );
    let concert = app.get_json("/api/v1/concerts/3").await;
    assert_eq!(concert["title"], title.trim(), "the load read the replica");
    let page = app.get_json("/api/v1/concerts?page=0&size=5").await;
    assert_eq!(page["items"][2]["title"], title.trim());

    let ready = app.get_json("/health/ready").await;
    assert_eq!(ready["checks"]["replica"]["status"], "UP", "{ready}");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    for needle in [
        r#"hikaricp_connections{pool="replica"}"#,
        r#"hikaricp_connections_max{pool="replica"}"#,
        r#"hikaricp_connections_acquire_seconds_count{pool="replica"}"#,
        r#"hikaricp_connections_timeout_total{pool="replica"}"#,
        r#"hikaricp_connections{pool="marquee"}"#,
        "marquee_db_replica_lag_seconds ",
        "marquee_db_replica_usable ",
    ] {
        assert!(metrics.contains(needle), "/metrics lacks {needle}");
    }
    app.pg.resume_replay();
}

/// The booking path is `db_write`: a reservation is found right after its hold even while
/// the replica has not applied the hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL's server programs: set MARQUEE_TEST_PG_BIN"]
async fn a_reservation_is_read_from_the_primary_right_after_its_hold() {
    let app = ReplicatedApp::start("60s").await;
    app.pg.pause_replay();
    let held = app.hold(5, 2).await;
    let id = held["id"].as_i64().unwrap();
    assert_eq!(
        app.pg
            .replica_sql(
                "postgres",
                &format!("SELECT count(*) FROM reservations WHERE id = {id}")
            )
            .trim(),
        "0",
        "the replica has not applied the hold"
    );
    let (status, body) = app.get_as(5, &format!("/api/v1/reservations/{id}")).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("HELD")),
        "{body}"
    );
    let (status, list) = app.get_as(5, "/api/v1/reservations").await;
    assert_eq!((status, list[0]["id"].as_i64()), (200, Some(id)));
    app.pg.resume_replay();
}

/// The stale case: the seat listing and the schedule's count are cached, the replica stops
/// applying WAL (its lag stays within `replica_max_lag`, so only the WAL fence keeps the
/// loads off it), a hold commits on the primary and evicts the listings; the loads that
/// follow begin after the eviction, and what they cache is the held seat, not the replica's
/// free one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL's server programs: set MARQUEE_TEST_PG_BIN"]
async fn a_lagging_replica_never_puts_a_stale_seat_state_in_the_cache() {
    let app = ReplicatedApp::start("60s").await;
    assert_eq!(app.listed_status(1).await, "AVAILABLE");
    let available = app.available_on_schedule_1().await;

    app.pg.pause_replay();
    app.hold(7, 1).await;
    assert_eq!(
        app.pg
            .replica_sql("postgres", "SELECT status FROM seats WHERE id = 1")
            .trim(),
        "AVAILABLE",
        "the replica really lags"
    );
    assert!(app.databases.replica_status().unwrap().usable);

    assert_eq!(app.listed_status(1).await, "HELD");
    assert_eq!(app.available_on_schedule_1().await, available - 1);
    // What the loads stored is what the next reads get.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.listed_status(1).await, "HELD");
    assert_eq!(app.available_on_schedule_1().await, available - 1);
    let held = app.get_json("/api/v1/schedules/1/seats?status=HELD").await;
    assert_eq!(held.as_array().unwrap().len(), 1, "{held}");

    // A cancellation is a write like the hold: it shows at once too.
    let (_, reservations) = app.get_as(7, "/api/v1/reservations").await;
    let id = reservations[0]["id"].as_i64().unwrap();
    let cancelled = app
        .client
        .delete(format!("{}/api/v1/reservations/{id}", app.address))
        .bearer_auth(app.token(7))
        .send()
        .await
        .unwrap();
    assert_eq!(cancelled.status(), 200);
    assert_eq!(app.listed_status(1).await, "AVAILABLE");
    assert_eq!(app.available_on_schedule_1().await, available);
    app.pg.resume_replay();
}

/// A replica that goes down: lookups keep answering 200 from the primary, the ones after
/// the monitor noticed without waiting for the replica, and readiness is `DEGRADED` (200),
/// not down. When it is back it is read again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL's server programs: set MARQUEE_TEST_PG_BIN"]
async fn lookups_fall_back_to_the_primary_when_the_replica_is_down() {
    let app = ReplicatedApp::start("1s").await;
    app.pg.stop_replica();
    for id in 1..=3 {
        let started = Instant::now();
        assert_eq!(
            app.get(&format!("/api/v1/concerts/{id}")).await.status(),
            200
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "concert {id} took {:?}",
            started.elapsed()
        );
    }
    app.until_usable(false).await;
    for id in 4..=9 {
        let started = Instant::now();
        assert_eq!(
            app.get(&format!("/api/v1/concerts/{id}")).await.status(),
            200
        );
        assert_eq!(
            app.get(&format!("/api/v1/schedules/{id}/seats"))
                .await
                .status(),
            200
        );
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "two lookups with the replica known down took {:?}",
            started.elapsed()
        );
    }
    let ready = app.get_json("/health/ready").await;
    assert_eq!(ready["status"], "DEGRADED", "{ready}");
    assert_eq!(ready["checks"]["replica"]["status"], "DOWN", "{ready}");
    assert_eq!(ready["checks"]["replica"]["critical"], false, "{ready}");

    app.pg.start_replica();
    app.until_usable(true).await;
    assert_eq!(app.get("/api/v1/concerts/10").await.status(), 200);
    assert_eq!(app.get_json("/health/ready").await["status"], "UP");
}

/// A replica whose lag passes `replica_max_lag` (1 s) is not read: a concert changed on the
/// primary is answered with its new title while the replica still has the old one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL's server programs: set MARQUEE_TEST_PG_BIN"]
async fn lookups_fall_back_to_the_primary_when_the_replica_lags_past_max_lag() {
    let app = ReplicatedApp::start("1s").await;
    app.pg.pause_replay();
    app.pg.primary_sql(
        "postgres",
        "UPDATE concerts SET title = 'Changed on the primary' WHERE id = 4",
    );
    app.until_usable(false).await;
    let lag = app.databases.replica_status().unwrap().lag.unwrap();
    assert!(lag > Duration::from_secs(1), "{lag:?}");
    assert_ne!(
        app.pg
            .replica_sql("postgres", "SELECT title FROM concerts WHERE id = 4")
            .trim(),
        "Changed on the primary"
    );
    let concert = app.get_json("/api/v1/concerts/4").await;
    assert_eq!(concert["title"], "Changed on the primary");
    let ready = app.get_json("/health/ready").await;
    assert_eq!(ready["checks"]["replica"]["status"], "DOWN", "{ready}");

    app.pg.resume_replay();
    app.until_usable(true).await;
}

/// The fleet case, which a lag bound or a window after one's own writes would not cover: two
/// instances share one Redis, the hold is made through the first, and the second, which made
/// no write and was told only through Redis, loads the listing while the replica lags. It
/// shows the hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL's server programs and Redis: set MARQUEE_TEST_PG_BIN and MARQUEE_TEST_REDIS_URL"]
async fn another_instance_never_caches_a_stale_seat_state_from_a_lagging_replica() {
    let pg = Arc::new(
        tokio::task::spawn_blocking(PrivatePostgres::primary_with_replica)
            .await
            .unwrap(),
    );
    let redis = marquee_testkit::redis_url();
    let namespace = namespace();
    let shared = [
        ("MARQUEE__DATABASE__REPLICA_MAX_LAG", "60s"),
        ("MARQUEE__REDIS__URL", redis.as_str()),
        ("MARQUEE__CACHE__NAMESPACE", namespace.as_str()),
        ("MARQUEE__REDIS__RESPONSE_TIMEOUT", "2s"),
    ];
    let first = ReplicatedApp::start_on(pg.clone(), &shared).await;
    let second = ReplicatedApp::start_on(pg.clone(), &shared).await;
    assert_eq!(second.listed_status(1).await, "AVAILABLE");
    assert_eq!(first.listed_status(1).await, "AVAILABLE");

    pg.pause_replay();
    first.hold(3, 1).await;
    assert_eq!(
        pg.replica_sql("postgres", "SELECT status FROM seats WHERE id = 1")
            .trim(),
        "AVAILABLE",
        "the replica really lags"
    );
    assert!(second.databases.replica_status().unwrap().usable);
    // The second instance's L1 learns of the eviction through Redis; until then it may show
    // its copy, for at most `cache.l1_ttl` (1 s). What it loads afterwards is the hold.
    let started = Instant::now();
    while second.listed_status(1).await != "HELD" {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "the second instance still lists the seat as free"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(second.listed_status(1).await, "HELD");
    assert_eq!(first.listed_status(1).await, "HELD");
    pg.resume_replay();
}
