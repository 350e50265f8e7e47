//! The catalogue behind the cache, end to end over HTTP: stampedes, fleets, penetration,
//! a Redis outage, and responses identical whichever tier answered. Loads are counted at
//! the repository, below the cache.

use std::sync::Arc;
use std::time::Duration;

use marquee_cache::BreakerState;
use marquee_persistence::Backend;
use marquee_persistence::test_support::TestDatabase;
use marquee_testkit::{ChaosProxy, host_port, redis_url, through};

use crate::helpers::{
    Counting, Instance, TestApp, counted_app, namespace, redis_settings, test_settings,
};

/// Fires `count` concurrent GETs of `path` across `addresses`; returns (status, body) each.
async fn burst(addresses: &[String], path: &str, count: usize) -> Vec<(u16, bytes::Bytes)> {
    let client = reqwest::Client::new();
    let requests: Vec<_> = (0..count)
        .map(|i| {
            let url = format!("{}{path}", addresses[i % addresses.len()]);
            let client = client.clone();
            tokio::spawn(async move {
                let response = client.get(url).send().await.expect("sent");
                (
                    response.status().as_u16(),
                    response.bytes().await.expect("a body"),
                )
            })
        })
        .collect();
    let mut answers = Vec::with_capacity(count);
    for request in requests {
        answers.push(request.await.unwrap());
    }
    answers
}

/// One SQLite database and one namespace on the test Redis, for instances that share both;
/// their repository loads are counted together.
struct SharedBackends {
    redis: String,
    namespace: String,
    counting: Arc<Counting>,
    /// Dropped last: the database outlives the instances using it.
    db: TestDatabase,
}

impl SharedBackends {
    fn new() -> Self {
        Self {
            redis: redis_url(),
            namespace: namespace(),
            counting: Arc::new(Counting::default()),
            db: TestDatabase::sqlite(),
        }
    }

    /// An instance with its cache on the shared Redis, with `more` settings.
    async fn start(&self, more: &[(&str, &str)]) -> Instance {
        let settings = redis_settings(self.db.url().as_str(), &self.redis, &self.namespace, more);
        Instance::start(settings, self.counting.layer()).await
    }

    /// An instance with the in-process cache only.
    async fn start_local(&self) -> Instance {
        let settings = test_settings(self.db.url().as_str(), &[]);
        Instance::start(settings, self.counting.layer()).await
    }
}

/// Fires `count` concurrent GETs of `path` at `app` and asserts that each was answered
/// `status`; returns the bodies.
async fn burst_answered(app: &TestApp, path: &str, count: usize, status: u16) -> Vec<bytes::Bytes> {
    let answers = burst(std::slice::from_ref(&app.address), path, count).await;
    answers
        .into_iter()
        .map(|(answered, body)| {
            assert_eq!(answered, status, "GET {path}");
            body
        })
        .collect()
}

/// The body of one GET of `path` from the instance at `address`.
async fn body_of(address: &str, path: &str) -> bytes::Bytes {
    burst(&[address.to_owned()], path, 1).await.remove(0).1
}

async fn cold_concert_loaded_once(backend: Backend, redis: Option<String>) {
    let db = TestDatabase::new(backend);
    let (app, counting) = counted_app(db, &namespace(), redis.as_deref()).await;

    let bodies = burst_answered(&app, "/api/v1/concerts/5", 500, 200).await;
    assert!(bodies.iter().all(|body| body == &bodies[0]));
    assert_eq!(
        counting.loads(),
        1,
        "500 concurrent requests, one database load"
    );
}

/// 500 concurrent requests for a cold concert on the embedded stack: one load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stampede_on_sqlite_and_the_local_cache_loads_once() {
    cold_concert_loaded_once(Backend::Sqlite, None).await;
}

/// The same on PostgreSQL and Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL and Redis: set MARQUEE_TEST_DATABASE_URL and MARQUEE_TEST_REDIS_URL"]
async fn a_stampede_on_postgres_and_redis_loads_once() {
    let redis = redis_url();
    cold_concert_loaded_once(Backend::Postgres, Some(redis)).await;
}

/// Three instances on one Redis and one database, 300 concurrent requests spread over them
/// for a cold key: one load in the whole fleet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Redis: set MARQUEE_TEST_REDIS_URL"]
async fn a_fleet_on_one_redis_loads_a_cold_key_once() {
    let shared = SharedBackends::new();
    let mut fleet = Vec::new();
    for _ in 0..3 {
        let instance = shared
            .start(&[
                // A generous bound, so that a loaded CI machine cannot make a loser stop
                // waiting for the lease holder.
                ("MARQUEE__CACHE__LEASE_WAIT", "10s"),
                // Only the requests below may cause loads.
                ("MARQUEE__CACHE__REFRESH__ENABLED", "false"),
            ])
            .await;
        fleet.push(instance);
    }
    let addresses: Vec<String> = fleet.iter().map(|i| i.address.clone()).collect();
    let answers = burst(&addresses, "/api/v1/concerts/9/schedules", 300).await;
    let odd: Vec<_> = answers
        .iter()
        .filter(|(status, body)| *status != 200 || body != &answers[0].1)
        .collect();
    assert!(
        odd.is_empty(),
        "{} odd answers, e.g. {:?}; first {:?}",
        odd.len(),
        odd.first(),
        answers[0]
    );
    assert_eq!(
        shared.counting.loads(),
        1,
        "one load across three instances"
    );
}

/// 1,000 requests for a concert that does not exist: at most one load per negative TTL.
async fn nonexistent_ids_reach_the_database_once(redis: Option<String>) {
    let db = TestDatabase::sqlite();
    let (app, counting) = counted_app(db, &namespace(), redis.as_deref()).await;
    for _ in 0..10 {
        burst_answered(&app, "/api/v1/concerts/424242", 100, 404).await;
    }
    assert_eq!(counting.loads(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn penetration_is_stopped_by_the_local_cache() {
    nonexistent_ids_reach_the_database_once(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Redis: set MARQUEE_TEST_REDIS_URL"]
async fn penetration_is_stopped_by_redis() {
    let redis = redis_url();
    nonexistent_ids_reach_the_database_once(Some(redis)).await;
}

/// Redis cut mid-run: no request fails, the breaker opens, loads on the database stay within
/// the fallback bound, and reads return to Redis once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Redis: set MARQUEE_TEST_REDIS_URL"]
async fn a_redis_outage_fails_no_request() {
    let redis = redis_url();
    let proxy = ChaosProxy::start(&host_port(&redis)).await;
    let through_proxy = through(&redis, &proxy);
    let db = TestDatabase::sqlite();
    let namespace = namespace();
    let settings = test_settings(
        db.url().as_str(),
        &[
            ("MARQUEE__REDIS__URL", through_proxy.as_str()),
            ("MARQUEE__REDIS__RESPONSE_TIMEOUT", "50ms"),
            ("MARQUEE__REDIS__CONNECTION_TIMEOUT", "100ms"),
            ("MARQUEE__CACHE__NAMESPACE", namespace.as_str()),
            ("MARQUEE__CACHE__L1_TTL", "0s"),
            ("MARQUEE__CACHE__FALLBACK_CONCURRENCY", "2"),
            ("MARQUEE__CACHE__BREAKER__FAILURE_THRESHOLD", "3"),
            ("MARQUEE__CACHE__BREAKER__OPEN_FOR", "300ms"),
        ],
    );
    let counting = Arc::new(Counting::default());
    let app = TestApp::start_layered(db, settings, counting.layer()).await;
    let addresses = [app.address.clone()];

    // Before: Redis serves.
    for id in 1..=20 {
        assert_eq!(
            burst(&addresses, &format!("/api/v1/concerts/{id}"), 5).await[0].0,
            200
        );
    }
    assert_eq!(app.cache.breaker_state(), BreakerState::Closed);

    proxy.cut().await;
    counting.reset_max();
    let mut failed = 0;
    for id in 21..=80 {
        let answers = burst(&addresses, &format!("/api/v1/concerts/{id}"), 4).await;
        failed += answers.iter().filter(|(status, _)| *status != 200).count();
        // Keys cached before the cut are still answered.
        let warm = burst(&addresses, &format!("/api/v1/concerts/{}", id % 20 + 1), 1).await;
        failed += warm.iter().filter(|(status, _)| *status != 200).count();
    }
    assert_eq!(failed, 0, "no request fails while Redis is gone");
    assert_ne!(
        app.cache.breaker_state(),
        BreakerState::Closed,
        "the breaker opened"
    );
    assert!(
        counting.max() <= 2,
        "database loads at once: {}",
        counting.max()
    );

    proxy.restore();
    // Reads that need Redis probe it; the first probe after `open_for` closes the breaker.
    let started = std::time::Instant::now();
    let mut id = 81;
    while app.cache.breaker_state() != BreakerState::Closed {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the breaker never closed"
        );
        assert_eq!(
            burst(&addresses, &format!("/api/v1/concerts/{id}"), 1).await[0].0,
            200
        );
        id += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = counting.loads();
    let first = burst(&addresses, "/api/v1/concerts/110", 1).await;
    let second = burst(&addresses, "/api/v1/concerts/110", 1).await;
    assert_eq!((first[0].0, second[0].0), (200, 200));
    assert_eq!(
        counting.loads(),
        before + 1,
        "the second read came from Redis again"
    );
}

/// A body is byte-identical whether it came from the database, Redis or the L1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Redis: set MARQUEE_TEST_REDIS_URL"]
async fn responses_are_identical_from_every_tier() {
    let shared = SharedBackends::new();
    let counting = &shared.counting;
    let a = shared.start(&[("MARQUEE__CACHE__L1_TTL", "0s")]).await;
    let b = shared.start(&[("MARQUEE__CACHE__L1_TTL", "30s")]).await;
    let c = shared.start_local().await;

    for path in [
        "/api/v1/concerts/3",
        "/api/v1/concerts?page=1&size=5",
        "/api/v1/concerts/3/schedules",
        "/api/v1/schedules/9/seats?status=available",
    ] {
        let loads = counting.loads();
        let from_database = body_of(&a.address, path).await;
        let from_redis = body_of(&a.address, path).await;
        let into_l1 = body_of(&b.address, path).await;
        let from_l1 = body_of(&b.address, path).await;
        // A page of the list also needs the count of concerts, cached once for all pages.
        let cold_loads = if path.starts_with("/api/v1/concerts?") {
            2
        } else {
            1
        };
        assert_eq!(
            counting.loads(),
            loads + cold_loads,
            "{path}: one load (and the count, for a page), then cache hits"
        );
        let from_local = body_of(&c.address, path).await;
        for (tier, body) in [
            ("redis", &from_redis),
            ("l1", &from_l1),
            ("l1 fill", &into_l1),
            ("local", &from_local),
        ] {
            assert_eq!(body, &from_database, "{path} from {tier}");
        }
    }
}

/// The cache's metrics are exported on `/metrics`, per key group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_activity_shows_in_metrics() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    for _ in 0..3 {
        assert_eq!(app.get("/api/v1/concerts/11").await.status(), 200);
    }
    assert_eq!(app.get("/api/v1/concerts/999999").await.status(), 404);
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    for needle in [
        r#"marquee_cache_hits_total{cache="catalogue",group="concert",tier="local"}"#,
        r#"marquee_cache_misses_total{cache="catalogue",group="concert"}"#,
        r#"marquee_cache_loads_total{cache="catalogue",group="concert",outcome="found"}"#,
        r#"marquee_cache_loads_total{cache="catalogue",group="concert",outcome="not_found"}"#,
        r#"marquee_cache_load_seconds_bucket{cache="catalogue",group="concert",le="0.001"}"#,
        r#"marquee_cache_breaker_state{cache="catalogue",dependency="redis"}"#,
        "# HELP marquee_cache_hits_total",
    ] {
        assert!(text.contains(needle), "/metrics lacks {needle}:\n{text}");
    }
}
