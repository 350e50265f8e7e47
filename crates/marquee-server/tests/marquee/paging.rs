//! Pages past the end of the concert list: answered correctly, from one shared cache
//! entry (the count), without an entry per page number and without a database query per
//! request.

use std::time::Duration;

use marquee_cache::{RedisConfig, RedisLink};
use marquee_persistence::Backend;
use marquee_persistence::test_support::TestDatabase;
use marquee_testkit::redis_url;
use serde_json::json;

use crate::helpers::{TestApp, counted_app, namespace};

/// Sends the 100 requests for pages 100000 to 100099 of size 20; each must be the empty
/// page with the true count of the demo catalogue (120 concerts).
async fn request_100_pages_past_the_end(app: &TestApp) {
    for page in 100_000..100_100 {
        let (status, body) = app
            .get_json(&format!("/api/v1/concerts?page={page}&size=20"))
            .await;
        assert_eq!(status, 200, "page {page}");
        assert_eq!(
            body,
            json!({"items": [], "page": page, "size": 20, "total": 120}),
            "page {page}"
        );
    }
}

/// On Redis: the 100 requests add at most 2 keys under the app's namespace (the count
/// is the one expected), none of them a page, and reach the database at most twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL and Redis: set MARQUEE_TEST_DATABASE_URL and MARQUEE_TEST_REDIS_URL"]
async fn pages_past_the_end_add_no_key_per_page_in_redis() {
    let url = redis_url();
    let db = TestDatabase::new(Backend::Postgres);
    let namespace = namespace();
    let (app, counting) = counted_app(db, &namespace, Some(&url)).await;
    // SCAN walks the shared Redis's whole keyspace: give each step more than the cache's 50 ms.
    let mut config = RedisConfig::new(&url);
    config.response_timeout = Duration::from_secs(2);
    let redis = RedisLink::open(config).unwrap();
    let pattern = format!("{namespace}:*");
    assert_eq!(redis.scan(&pattern).await.unwrap(), Vec::<String>::new());

    request_100_pages_past_the_end(&app).await;

    let keys = redis.scan(&pattern).await.unwrap();
    assert!(
        keys.len() <= 2,
        "100 pages past the end left {} keys, such as {:?}",
        keys.len(),
        &keys[..3]
    );
    assert!(
        !keys.iter().any(|key| key.ends_with(":20}")),
        "a page past the end has a key of its own: {keys:?}"
    );
    let listed = counting.listings();
    assert!(
        (1..=2).contains(&listed),
        "100 pages past the end made {listed} database listings"
    );

    // Pages within the list are still cached one by one, and still right.
    let (_, first) = app.get_json("/api/v1/concerts?page=5&size=20").await;
    assert_eq!(first["items"].as_array().unwrap().len(), 20);
    assert_eq!(first["items"][0]["id"], 101);
    let (_, again) = app.get_json("/api/v1/concerts?page=5&size=20").await;
    assert_eq!(again, first);
    assert_eq!(counting.listings(), listed + 1);
    assert!(
        redis
            .scan(&pattern)
            .await
            .unwrap()
            .iter()
            .any(|key| key.ends_with(":concerts_page:{5:20}"))
    );
}

/// The same on the in-process cache: at most 2 new entries for the 100 requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_past_the_end_add_no_entry_per_page_in_process() {
    let (app, counting) = counted_app(TestDatabase::sqlite(), &namespace(), None).await;
    let entries = app.cache.local_entry_count();

    request_100_pages_past_the_end(&app).await;

    let added = app.cache.local_entry_count() - entries;
    assert!(added <= 2, "100 pages past the end added {added} entries");
    let listed = counting.listings();
    assert!(
        (1..=2).contains(&listed),
        "100 pages past the end made {listed} database listings"
    );
}
