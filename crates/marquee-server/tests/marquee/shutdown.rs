//! A graceful stop lets in-flight requests finish and refuses new connections.

use std::time::Duration;

use marquee_persistence::Backend;

use crate::helpers::TestApp;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_drains_in_flight_requests() {
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        &[
            ("MARQUEE__DATABASE__POOL__MAXIMUM_POOL_SIZE", "1"),
            ("MARQUEE__DATABASE__POOL__CONNECTION_TIMEOUT", "5s"),
            ("MARQUEE__SERVER__SHUTDOWN_TIMEOUT", "10s"),
        ],
    )
    .await;

    // Occupy the only connection, so the next request is still in flight when the stop
    // signal arrives.
    let pool = app.pool.clone();
    let holder = tokio::spawn(async move {
        pool.run(|_| {
            std::thread::sleep(Duration::from_millis(1500));
            Ok(())
        })
        .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let in_flight = tokio::spawn({
        let client = app.client.clone();
        let url = format!("{}/api/v1/concerts/1", app.address);
        async move { client.get(url).send().await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let stopping = tokio::spawn({
        let handle = app.handle.clone();
        async move { handle.stop(true).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Once stopping, the listener is closed: a new connection is refused.
    let refused = reqwest::Client::new()
        .get(format!("{}/health/live", app.address))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    assert!(
        refused.is_err(),
        "a stopping server accepts no new connections"
    );

    let response = in_flight
        .await
        .unwrap()
        .expect("the in-flight request is answered");
    assert_eq!(response.status(), 200);
    holder.await.unwrap().unwrap();
    tokio::time::timeout(Duration::from_secs(5), stopping)
        .await
        .expect("the server stops once drained")
        .unwrap();
}
