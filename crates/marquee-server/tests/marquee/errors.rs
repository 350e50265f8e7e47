//! A client's mistakes get a 4xx problem; the server's troubles get a 503 problem with
//! Retry-After. Never a 500 or a hang.

use std::time::{Duration, Instant};

use marquee_persistence::Backend;

use crate::helpers::{TestApp, assert_problem};
use crate::on_each_backend;

async fn bad_ids_are_400(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for id in [
        "abc",
        "0",
        "-1",
        "1.5",
        "%2B1",
        "007",
        "9223372036854775808",
        "99999999999999999999999999",
    ] {
        for path in [
            format!("/api/v1/concerts/{id}"),
            format!("/api/v1/concerts/{id}/schedules"),
            format!("/api/v1/schedules/{id}/seats"),
        ] {
            let body = assert_problem(app.get(&path).await, 400, "invalid-id").await;
            assert!(body["detail"].as_str().unwrap().contains("Id"), "{body}");
        }
    }
}

async fn bad_query_parameters_are_400(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let cases = [
        ("/api/v1/concerts?page=-1", "invalid-page"),
        ("/api/v1/concerts?size=0", "invalid-page"),
        ("/api/v1/concerts?size=101", "invalid-page"),
        (
            "/api/v1/concerts?page=9223372036854775807&size=100",
            "invalid-page",
        ),
        ("/api/v1/concerts?page=abc", "invalid-query"),
        ("/api/v1/concerts?size=1.5", "invalid-query"),
        (
            "/api/v1/concerts?page=99999999999999999999",
            "invalid-query",
        ),
        ("/api/v1/schedules/1/seats?status=free", "invalid-query"),
    ];
    app.assert_get_problems(400, &cases).await;
}

async fn wrong_methods_are_405_with_allow(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for (method, path) in [
        (reqwest::Method::POST, "/api/v1/concerts"),
        (reqwest::Method::DELETE, "/api/v1/concerts/1"),
        (reqwest::Method::PUT, "/api/v1/schedules/1/seats"),
        (reqwest::Method::PATCH, "/health/ready"),
    ] {
        let response = app
            .client
            .request(method, format!("{}{path}", app.address))
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["allow"], "GET, HEAD");
        assert_problem(response, 405, "method-not-allowed").await;
    }

    let head = app
        .client
        .head(format!("{}/api/v1/concerts/1", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-type"], "application/json");
    assert!(head.bytes().await.unwrap().is_empty(), "HEAD has no body");
}

/// Every connection busy for longer than connection_timeout: the request gets 503 with
/// Retry-After promptly, and the service answers normally once the connections free up.
async fn an_exhausted_pool_is_503_not_a_hang(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        &[
            ("MARQUEE__DATABASE__POOL__MAXIMUM_POOL_SIZE", "2"),
            ("MARQUEE__DATABASE__POOL__CONNECTION_TIMEOUT", "500ms"),
            ("MARQUEE__DATABASE__POOL__VALIDATION_TIMEOUT", "250ms"),
        ],
    )
    .await;
    // A slow database: both connections stuck in work that takes 3 s.
    let mut slow = Vec::new();
    for _ in 0..2 {
        let pool = app.pool.clone();
        slow.push(tokio::spawn(async move {
            pool.run(|_| {
                std::thread::sleep(Duration::from_secs(3));
                Ok(())
            })
            .await
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(app.pool.state().active, 2);

    let started = Instant::now();
    let response = app.get("/api/v1/concerts/1").await;
    let waited = started.elapsed();
    assert_eq!(response.headers()["retry-after"], "1");
    assert_problem(response, 503, "database-busy").await;
    assert!(
        waited >= Duration::from_millis(450) && waited < Duration::from_secs(2),
        "answered after {waited:?}"
    );

    for task in slow {
        task.await.unwrap().unwrap();
    }
    let (status, _) = app.get_json("/api/v1/concerts/1").await;
    assert_eq!(status, 200);
}

on_each_backend!(
    bad_ids_are_400,
    bad_query_parameters_are_400,
    wrong_methods_are_405_with_allow,
    an_exhausted_pool_is_503_not_a_hang,
);
