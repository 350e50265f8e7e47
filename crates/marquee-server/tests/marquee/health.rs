//! Liveness, readiness, the OpenAPI document, and what happens when PostgreSQL or Redis
//! goes away under a running app (through a chaos proxy) and comes back.

use std::time::{Duration, Instant};

use marquee_persistence::Backend;
use marquee_persistence::test_support::TestDatabase;

use crate::helpers::{TestApp, assert_problem, behind_a_proxy, test_settings};
use crate::on_each_backend;
use marquee_testkit::redis_url;

async fn live_and_ready(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, live) = app.get_json("/health/live").await;
    assert_eq!((status, live["status"].as_str()), (200, Some("UP")));
    let (status, ready) = app.get_json("/health/ready").await;
    assert_eq!(status, 200);
    assert_eq!(ready["checks"]["database"]["status"], "UP");
    assert!(
        ready["checks"].get("redis").is_none(),
        "no redis configured"
    );
}

/// A connection opened ahead of its first request (as client pools do) is still served
/// when the request comes seconds later: actix's default would answer `408` after 5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_opened_ahead_is_served_later() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn(Backend::Sqlite).await;
    let address = app.address.trim_start_matches("http://");
    let mut connection = tokio::net::TcpStream::connect(address).await.unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    connection
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: marquee\r\n\r\n")
        .await
        .unwrap();
    let mut answer = vec![0; 64];
    let read = connection.read(&mut answer).await.unwrap();
    let head = String::from_utf8_lossy(&answer[..read]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
}

async fn openapi_covers_every_route_and_error(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (status, doc) = app.get_json("/api-docs/openapi.json").await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/api/v1/concerts",
        "/api/v1/concerts/{concertId}",
        "/api/v1/concerts/{concertId}/schedules",
        "/api/v1/schedules/{scheduleId}/seats",
        "/health/live",
        "/health/ready",
    ] {
        let get = &paths[path]["get"];
        assert!(get.is_object(), "{path} is documented");
        let responses = get["responses"].as_object().unwrap();
        assert!(responses.contains_key("200"), "{path} documents 200");
        if path.starts_with("/api/") {
            for code in ["400", "503"] {
                let problem = &responses[code]["content"]["application/problem+json"];
                assert!(
                    problem.is_object(),
                    "{path} documents {code} as problem+json"
                );
            }
        }
    }
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    for (path, method) in [
        ("/api/v1/wallet", "get"),
        ("/api/v1/wallet/charge", "post"),
        ("/api/v1/reservations", "get"),
        ("/api/v1/reservations", "post"),
        ("/api/v1/reservations/{reservationId}", "get"),
        ("/api/v1/reservations/{reservationId}", "delete"),
        ("/api/v1/reservations/{reservationId}/payment", "post"),
    ] {
        let operation = &paths[path][method];
        assert!(operation.is_object(), "{method} {path} is documented");
        assert!(
            operation["responses"]["401"].is_object(),
            "{method} {path} documents 401"
        );
        assert!(
            operation["security"].is_array(),
            "{method} {path} needs the bearer scheme"
        );
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );

    let docs = app.get("/docs/").await;
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.unwrap().contains("swagger"));
}

on_each_backend!(live_and_ready, openapi_covers_every_route_and_error);

async fn poll_until(app: &TestApp, path: &str, want: u16, within: Duration) -> u16 {
    let started = Instant::now();
    loop {
        let status = app.get(path).await.status().as_u16();
        if status == want || started.elapsed() > within {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// PostgreSQL cut under a running app: requests get 503 problems (never a 500 or a hang),
/// readiness reports the database down, and both recover once the link is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: set MARQUEE_TEST_DATABASE_URL"]
async fn a_lost_database_is_503_and_recovers() {
    let db = TestDatabase::postgres();
    let (proxy, db_through_proxy) = behind_a_proxy(db.url().as_str()).await;
    let settings = test_settings(
        &db_through_proxy,
        &[
            ("MARQUEE__DATABASE__POOL__CONNECTION_TIMEOUT", "1s"),
            ("MARQUEE__DATABASE__POOL__VALIDATION_TIMEOUT", "500ms"),
        ],
    );
    let app = TestApp::start(db, settings).await;
    assert_eq!(app.get("/api/v1/concerts/1").await.status(), 200);

    proxy.cut().await;
    for _ in 0..5 {
        let started = Instant::now();
        let response = app.get("/api/v1/concerts/2").await;
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "answered in bounded time"
        );
        assert!(response.headers().contains_key("retry-after"));
        let status = response.status().as_u16();
        let code = if status == 503 {
            let body: serde_json::Value = response.json().await.unwrap();
            body["code"].as_str().unwrap().to_owned()
        } else {
            panic!("expected 503 while the database is gone, got {status}");
        };
        assert!(
            code == "database-unavailable" || code == "database-busy",
            "code {code}"
        );
    }
    let ready = app.get("/health/ready").await;
    let body = assert_problem(ready, 503, "not-ready").await;
    assert_eq!(body["checks"]["database"]["status"], "DOWN");

    proxy.restore();
    assert_eq!(
        poll_until(&app, "/api/v1/concerts/3", 200, Duration::from_secs(10)).await,
        200
    );
    assert_eq!(
        poll_until(&app, "/health/ready", 200, Duration::from_secs(5)).await,
        200
    );
}

/// Readiness reports Redis when it is configured. A Redis outage degrades the instance but
/// keeps it ready (the cache fails open), and the report follows Redis back up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Redis: set MARQUEE_TEST_REDIS_URL"]
async fn readiness_reports_redis_without_depending_on_it() {
    let (proxy, redis_through_proxy) = behind_a_proxy(&redis_url()).await;
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        &[
            ("MARQUEE__REDIS__URL", &redis_through_proxy),
            ("MARQUEE__REDIS__RESPONSE_TIMEOUT", "200ms"),
        ],
    )
    .await;
    let ready = ready_with(&app, "UP").await;
    assert_eq!(ready["checks"]["redis"]["status"], "UP");

    proxy.cut().await;
    let degraded =
        poll_json_until(&app, "/health/ready", |body| body["status"] == "DEGRADED").await;
    assert_eq!(degraded["checks"]["redis"]["status"], "DOWN", "{degraded}");
    assert_eq!(degraded["checks"]["database"]["status"], "UP");
    assert_eq!(app.get("/health/ready").await.status(), 200);
    assert_eq!(app.get("/api/v1/concerts/1").await.status(), 200);

    proxy.restore();
    let up = poll_json_until(&app, "/health/ready", |body| body["status"] == "UP").await;
    assert_eq!(up["checks"]["redis"]["status"], "UP");
}

/// A Redis that is down when the service starts does not stop it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_while_redis_is_down() {
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        &[("MARQUEE__REDIS__URL", "redis://127.0.0.1:1")],
    )
    .await;
    let ready = ready_with(&app, "DEGRADED").await;
    // The reason is a fixed sentence: the client's error (host, port, "connection refused
    // (os error 111)") goes to the log only.
    assert_eq!(
        ready["checks"]["redis"]["reason"], "redis cannot be reached",
        "{ready}"
    );
    let text = ready.to_string();
    for internal in ["os error", "refused", "127.0.0.1", ":1"] {
        assert!(!text.contains(internal), "{internal:?} in {text}");
    }
    assert_eq!(app.get("/api/v1/concerts/1").await.status(), 200);
}

/// The readiness report, asserted to answer 200 with the overall `status`.
async fn ready_with(app: &TestApp, status: &str) -> serde_json::Value {
    let (code, ready) = app.get_json("/health/ready").await;
    assert_eq!(
        (code, ready["status"].as_str()),
        (200, Some(status)),
        "{ready}"
    );
    ready
}

async fn poll_json_until(
    app: &TestApp,
    path: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let (_, body) = app.get_json(path).await;
        if done(&body) || started.elapsed() > Duration::from_secs(10) {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `/metrics` carries the Spring/Micrometer HTTP histogram (route templates, never raw
/// paths), HikariCP's pool metrics, process metrics and the build info.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_cover_http_pool_process_and_build() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    assert_eq!(app.get("/api/v1/concerts/12").await.status(), 200);
    assert_eq!(app.get("/api/v1/concerts/abc").await.status(), 400);
    assert_eq!(app.get("/no/such/route").await.status(), 404);
    let refused = reqwest::Client::new()
        .delete(format!("{}/api/v1/concerts/12", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 405);
    let text = app.get("/metrics").await.text().await.unwrap();
    for needle in [
        r#"http_server_requests_seconds_count{method="DELETE",uri="/api/v1/concerts/{concertId}",status="405",outcome="CLIENT_ERROR"}"#,
        r#"http_server_requests_seconds_count{method="GET",uri="/api/v1/concerts/{concertId}",status="200",outcome="SUCCESS"}"#,
        r#"http_server_requests_seconds_count{method="GET",uri="/api/v1/concerts/{concertId}",status="400",outcome="CLIENT_ERROR"}"#,
        r#"http_server_requests_seconds_count{method="GET",uri="NOT_FOUND",status="404",outcome="CLIENT_ERROR"}"#,
        r#"http_server_requests_seconds_bucket{method="GET",uri="/api/v1/concerts/{concertId}",status="200",outcome="SUCCESS",le="0.005"}"#,
        r#"hikaricp_connections{pool="marquee"}"#,
        r#"hikaricp_connections_active{pool="marquee"}"#,
        r#"hikaricp_connections_idle{pool="marquee"}"#,
        r#"hikaricp_connections_pending{pool="marquee"}"#,
        r#"hikaricp_connections_max{pool="marquee"}"#,
        r#"hikaricp_connections_min{pool="marquee"}"#,
        r#"hikaricp_connections_timeout_total{pool="marquee"}"#,
        r#"hikaricp_connections_acquire_seconds_count{pool="marquee"}"#,
        r#"hikaricp_connections_usage_seconds_count{pool="marquee"}"#,
        r#"hikaricp_connections_creation_seconds_count{pool="marquee"}"#,
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "marquee_build_info{version=",
        r#"marquee_cache_stale_served_total{cache="catalogue",group="seats"} "#,
    ] {
        assert!(text.contains(needle), "/metrics lacks {needle}");
    }
    assert!(
        !text.contains("/no/such/route"),
        "raw paths never become labels"
    );
    assert!(
        !text.contains("concerts/12"),
        "raw paths never become labels"
    );
}

/// Every HTTP worker records how late its event loop wakes (`marquee_http_worker_lag_seconds`),
/// about a hundred times a second each, from its start and without any request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_http_worker_reports_its_lag() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let samples = || async {
        let text = app.get("/metrics").await.text().await.unwrap();
        assert!(
            text.contains(r#"marquee_http_worker_lag_seconds_bucket{le="0.01"}"#),
            "{text}"
        );
        text.lines()
            .find_map(|line| line.strip_prefix("marquee_http_worker_lag_seconds_count "))
            .and_then(|count| count.trim().parse::<f64>().ok())
            .expect("/metrics has the lag histogram's count")
    };
    let before = samples().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = samples().await;
    // One worker alone takes 50 samples in 500 ms; the bound leaves room for a slow machine.
    assert!(after - before >= 20.0, "{before} then {after}");
}
