//! Two Marquee instances on PostgreSQL and a six-node Redis Cluster (`redis.mode =
//! "cluster"`): one database load for a stampede across both, a hold seen on the other
//! instance within a second, and a master killed mid-load without a failed lookup.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use marquee_cache::BreakerState;
use marquee_persistence::test_support::TestDatabase;
use marquee_testkit::RedisCluster;

use crate::helpers::{Counting, Instance, namespace, test_settings};

/// Settings of an instance on `db` whose Redis is `cluster`, under `namespace`, with `more`.
fn cluster_settings(
    db: &TestDatabase,
    cluster: &RedisCluster,
    namespace: &str,
    more: &[(&str, &str)],
) -> marquee_server::Settings {
    let url = cluster.url();
    let mut overrides = vec![
        ("MARQUEE__REDIS__MODE", "cluster"),
        ("MARQUEE__REDIS__URL", url.as_str()),
        ("MARQUEE__CACHE__NAMESPACE", namespace),
    ];
    overrides.extend_from_slice(more);
    test_settings(db.url().as_str(), &overrides)
}

/// Two instances on one database and one cluster, their repository loads counted together.
async fn two_instances(
    db: &TestDatabase,
    cluster: &RedisCluster,
    more: &[(&str, &str)],
) -> (Instance, Instance, Arc<Counting>) {
    let namespace = namespace();
    let counting = Arc::new(Counting::default());
    let a = Instance::start(
        cluster_settings(db, cluster, &namespace, more),
        counting.layer(),
    )
    .await;
    let b = Instance::start(
        cluster_settings(db, cluster, &namespace, more),
        counting.layer(),
    )
    .await;
    (a, b, counting)
}

/// 300 concurrent cold reads of one concert, spread over two instances on a cluster: one
/// database load (single-flight in each instance, the lease in the cluster across them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Redis Cluster and PostgreSQL: set MARQUEE_TEST_REDIS_CLUSTER=1 and MARQUEE_TEST_DATABASE_URL"]
async fn single_flight_across_two_instances_on_a_cluster() {
    let cluster = RedisCluster::shared();
    let db = TestDatabase::postgres();
    let (a, b, counting) = two_instances(
        &db,
        cluster,
        &[
            // Generous bounds, so that a loaded machine cannot make a lease loser give up.
            ("MARQUEE__CACHE__LEASE_WAIT", "10s"),
            ("MARQUEE__REDIS__RESPONSE_TIMEOUT", "2s"),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let requests: Vec<_> = (0..300)
        .map(|i| {
            let address = if i % 2 == 0 { &a.address } else { &b.address };
            let request = client.get(format!("{address}/api/v1/concerts/7")).send();
            tokio::spawn(async move {
                let response = request.await.expect("sent");
                (
                    response.status().as_u16(),
                    response.bytes().await.expect("a body"),
                )
            })
        })
        .collect();
    let mut answers = Vec::new();
    for request in requests {
        answers.push(request.await.unwrap());
    }
    assert!(
        answers
            .iter()
            .all(|(status, body)| *status == 200 && body == &answers[0].1),
        "every answer is the same 200"
    );
    assert_eq!(counting.loads(), 1, "300 cold reads, one database load");
}

/// A seat held through one instance stops being listed by the other within a second: the
/// eviction's invalidation crosses the cluster's pub/sub.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Redis Cluster and PostgreSQL: set MARQUEE_TEST_REDIS_CLUSTER=1 and MARQUEE_TEST_DATABASE_URL"]
async fn a_hold_on_one_instance_is_seen_on_the_other_on_a_cluster() {
    let cluster = RedisCluster::shared();
    let db = TestDatabase::postgres();
    let url = cluster.url();
    crate::booking::a_hold_on_one_instance_is_seen_on_the_other(
        &db,
        &[
            ("MARQUEE__REDIS__MODE", "cluster"),
            ("MARQUEE__REDIS__URL", url.as_str()),
        ],
    )
    .await;
}

/// The waiting room with its view on a cluster: two instances admit at the configured rate,
/// in join order, and both answer polls with the same position.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Redis Cluster and PostgreSQL: set MARQUEE_TEST_REDIS_CLUSTER=1 and MARQUEE_TEST_DATABASE_URL"]
async fn the_waiting_room_runs_on_a_cluster() {
    let url = RedisCluster::shared().url();
    crate::queue::fleet_admits_at_the_configured_rate(&[
        ("MARQUEE__REDIS__MODE", "cluster"),
        ("MARQUEE__REDIS__URL", url.as_str()),
    ])
    .await;
}

/// Lookups run on two instances while the master serving the hot concert's slot is killed:
/// none fails (reads fail open, as in a Redis outage), the replica takes over, and both
/// instances come back to the cluster by themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Redis Cluster and PostgreSQL: set MARQUEE_TEST_REDIS_CLUSTER=1 and MARQUEE_TEST_DATABASE_URL"]
async fn a_master_killed_mid_load_fails_no_lookup() {
    marquee_testkit::require_redis_cluster();
    let db = TestDatabase::postgres();
    let cluster = RedisCluster::start();
    let (a, b, counting) = two_instances(
        &db,
        &cluster,
        &[
            // Production's bounds: a dead master costs a command 50 ms.
            ("MARQUEE__REDIS__RESPONSE_TIMEOUT", "50ms"),
            ("MARQUEE__REDIS__CONNECTION_TIMEOUT", "200ms"),
            ("MARQUEE__CACHE__BREAKER__OPEN_FOR", "300ms"),
            // Short lifetimes, so that lookups keep reaching Redis and the database.
            ("MARQUEE__CACHE__L1_TTL", "0s"),
            ("MARQUEE__CACHE_TTL__CONCERT__BASE_TTL", "1s"),
            ("MARQUEE__CACHE_TTL__CONCERT__JITTER", "0s"),
        ],
    )
    .await;
    let addresses = [a.address.clone(), b.address.clone()];
    let client = reqwest::Client::new();
    let stop = Arc::new(AtomicBool::new(false));
    let (lookups, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let worst = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..8)
        .map(|worker| {
            let (client, address) = (client.clone(), addresses[worker % 2].clone());
            let (stop, lookups, failed, worst) =
                (stop.clone(), lookups.clone(), failed.clone(), worst.clone());
            tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    // The hot concert, and the others, whose keys spread over every master.
                    let id = if i.is_multiple_of(2) {
                        5
                    } else {
                        1 + (i / 2 + worker as u64) % 40
                    };
                    let started = Instant::now();
                    let ok = client
                        .get(format!("{address}/api/v1/concerts/{id}"))
                        .send()
                        .await
                        .is_ok_and(|response| response.status().is_success());
                    worst.fetch_max(started.elapsed().as_micros() as u64, Ordering::SeqCst);
                    lookups.fetch_add(1, Ordering::SeqCst);
                    if !ok {
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                    i += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_secs(1)).await;
    let killed_at = Instant::now();
    // Concert 5's entries (`<namespace>:concert:{5}`, its schedules, ...) hash by their tag.
    let port = cluster.kill_master_of("{5}");
    cluster.wait_until_ok();
    let failed_over = killed_at.elapsed();
    // Both instances find the new master by themselves: their breakers close again.
    let started = Instant::now();
    while [&a, &b]
        .iter()
        .any(|instance| instance.cache.breaker_state() != BreakerState::Closed)
    {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "an instance did not come back to the cluster"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And keep serving from it for a while.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.await.unwrap();
    }
    let (lookups, failed) = (
        lookups.load(Ordering::SeqCst),
        failed.load(Ordering::SeqCst),
    );
    let worst = Duration::from_micros(worst.load(Ordering::SeqCst));
    eprintln!(
        "master on port {port} killed: replica serving after {failed_over:?}, both instances \
         back on the cluster after {:?}; {lookups} lookups, {failed} failed, worst {worst:?}, \
         {} database loads",
        killed_at.elapsed(),
        counting.loads()
    );
    assert_eq!(failed, 0, "no lookup fails through the failover");
    assert!(
        a.cache.breaker_state() == BreakerState::Closed
            && b.cache.breaker_state() == BreakerState::Closed
    );
}
