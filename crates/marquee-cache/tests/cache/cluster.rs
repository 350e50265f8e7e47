//! What only a Redis Cluster has: slots, nodes that die, replicas that take over. The tests
//! shared with a single Redis run on the cluster through `on_each_tier!`'s `cluster` arm;
//! these are the cluster's own. The non-destructive ones use the binary's shared cluster,
//! each destructive one starts its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use marquee_cache::{BreakerState, Cache, CachePolicy, RedisConfig, RedisLink};
use marquee_testkit::RedisCluster;

use crate::support::{Source, Tier, build_group, config, k, link_for, namespace};

/// A link to `cluster` with tight bounds, as in production: a dead master costs a command
/// 50 ms, not seconds.
fn tight_link(cluster: &RedisCluster) -> RedisLink {
    let mut redis = RedisConfig::cluster(cluster.url());
    redis.response_timeout = Duration::from_millis(50);
    redis.connection_timeout = Duration::from_millis(200);
    RedisLink::open(redis).unwrap()
}

/// An entry, its generation and its lease live in one slot, whatever the key holds (braces,
/// `%`, nothing), so every script's keys are on one node; a key that displays alike in two
/// groups shares that slot too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Redis Cluster: set MARQUEE_TEST_REDIS_CLUSTER=1"]
async fn an_entry_its_generation_and_its_lease_share_a_slot() {
    let cluster = RedisCluster::shared();
    let cache = Cache::local(config(&namespace())).unwrap();
    let source = Source::with_delay(Duration::ZERO);
    let concerts = build_group(&cache, CachePolicy::default(), source.loader());
    let schedules = cache
        .group::<String, Bytes>("schedules")
        .codec(marquee_cache::Raw)
        .build(source.loader())
        .unwrap();
    for key in ["42", "a{b}c", "}", "{", "%7D", "", "{}"] {
        let full = concerts.full_key(&k(key));
        let slot = cluster.slot_of(&full);
        for beside in [
            format!("{full}:generation"),
            format!("{full}:lease"),
            format!("{full}:retired"),
        ] {
            assert_eq!(cluster.slot_of(&beside), slot, "{beside} beside {full}");
        }
        assert_eq!(
            cluster.slot_of(&schedules.full_key(&k(key))),
            slot,
            "one key's entries across groups"
        );
    }
    assert_ne!(
        concerts.full_key(&k("%7D")),
        concerts.full_key(&k("}")),
        "escaping keeps keys apart"
    );
    assert_ne!(concerts.full_key(&k("")), concerts.full_key(&k("%")));
}

/// `scan` walks every master: keys spread over the slots are all found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Redis Cluster: set MARQUEE_TEST_REDIS_CLUSTER=1"]
async fn scan_finds_keys_on_every_master() {
    let cluster = RedisCluster::shared();
    let namespace = namespace();
    let cache = Cache::redis(config(&namespace), link_for(Tier::Cluster)).unwrap();
    let source = Source::with_delay(Duration::ZERO);
    let group = build_group(&cache, CachePolicy::default(), source.loader());
    let mut masters = std::collections::BTreeSet::new();
    for i in 0..60 {
        assert!(group.get(&format!("key-{i}")).await.unwrap().is_some());
        masters.insert(cluster.master_of(&group.full_key(&format!("key-{i}"))));
    }
    assert_eq!(masters.len(), 3, "60 keys land on all three masters");
    let found = link_for(Tier::Cluster)
        .scan(&format!("{namespace}:*"))
        .await
        .unwrap();
    assert_eq!(found.len(), 60, "{found:?}");
}

/// The invalidation listener is subscribed on one node; when that node dies, it subscribes
/// on another, and the other instance's writes reach its L1 again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Redis Cluster: set MARQUEE_TEST_REDIS_CLUSTER=1"]
async fn the_invalidation_listener_moves_when_its_node_dies() {
    let cluster = RedisCluster::start();
    let namespace = namespace();
    let mut config = config(&namespace);
    config.l1_ttl = Duration::from_secs(30);
    let source = Source::with_delay(Duration::ZERO);
    let a = Cache::redis(config.clone(), tight_link(&cluster)).unwrap();
    let b = Cache::redis(config, tight_link(&cluster)).unwrap();
    let group_a = build_group(&a, CachePolicy::default(), source.loader());
    let group_b = build_group(&b, CachePolicy::default(), source.loader());
    let channel = format!("{namespace}:invalidate");
    let started = Instant::now();
    while cluster.subscribed_to(&channel).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "never subscribed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for port in cluster.subscribed_to(&channel) {
        cluster.kill(port);
    }
    cluster.wait_until_ok();
    let started = Instant::now();
    while cluster.subscribed_to(&channel).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the listeners never subscribed again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Both listeners are back (one node may hold both).
    tokio::time::sleep(Duration::from_millis(500)).await;

    // b reads (and keeps in its L1); a updates; b sees the update within a second.
    let key = k("moved");
    let started = Instant::now();
    while group_b.get(&key).await.is_err() || b.breaker_state() != BreakerState::Closed {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "b never reads Redis again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let newer = Bytes::from_static(b"{\"new\":true}");
    group_a.update(&key, Some(newer.clone())).await;
    let started = Instant::now();
    while group_b.get(&key).await.unwrap().as_ref() != Some(&newer) {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "b still serves its L1 copy"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A master killed while reads run: no read fails (they fail open, as in an outage: the
/// breaker, bounded fallback loads), the replica takes over, and the link recovers by itself:
/// the breaker closes and entries are stored in and read from the cluster again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Redis Cluster: set MARQUEE_TEST_REDIS_CLUSTER=1"]
async fn reads_fail_open_through_a_failover_and_the_link_recovers() {
    let cluster = RedisCluster::start();
    let mut config = config(&namespace());
    config.l1_ttl = Duration::ZERO;
    config.fallback_concurrency = 2;
    config.breaker.failure_threshold = 3;
    config.breaker.open_for = Duration::from_millis(300);
    let cache = Cache::redis(config, tight_link(&cluster)).unwrap();
    let source = Source::with_delay(Duration::from_millis(5));
    let group = build_group(
        &cache,
        CachePolicy::with_ttl(Duration::from_millis(500), Duration::ZERO),
        source.loader(),
    );
    assert!(group.get(&k("hot")).await.unwrap().is_some());

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let failed = Arc::new(AtomicUsize::new(0));
    let reads = Arc::new(AtomicUsize::new(0));
    let worst = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let readers: Vec<_> = (0..8)
        .map(|reader| {
            let (group, stop, failed, reads, worst) = (
                group.clone(),
                stop.clone(),
                failed.clone(),
                reads.clone(),
                worst.clone(),
            );
            tokio::spawn(async move {
                let mut i = 0usize;
                while !stop.load(Ordering::SeqCst) {
                    // The hot key, and keys spread over every master.
                    let key = if i.is_multiple_of(2) {
                        k("hot")
                    } else {
                        format!("spread-{reader}-{}", i % 50)
                    };
                    let started = Instant::now();
                    if !matches!(group.get(&key).await, Ok(Some(_))) {
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                    let micros = started.elapsed().as_micros() as u64;
                    worst.fetch_max(micros, Ordering::SeqCst);
                    reads.fetch_add(1, Ordering::SeqCst);
                    i += 1;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed_at = Instant::now();
    let port = cluster.kill_master_of(&group.full_key(&k("hot")));
    cluster.wait_until_ok();
    let failed_over = killed_at.elapsed();
    // The link finds the new master by itself: the breaker closes, and a write lands.
    let started = Instant::now();
    loop {
        let marked = Bytes::from_static(b"{\"after\":\"failover\"}");
        group.update(&k("hot"), Some(marked)).await;
        let stored = tight_link(&cluster).get(&group.full_key(&k("hot"))).await;
        if cache.breaker_state() == BreakerState::Closed
            && stored.is_ok_and(|raw| raw.is_some_and(|raw| raw.ends_with(b"failover\"}")))
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the link did not recover after the failover"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let recovered = killed_at.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    for reader in readers {
        reader.await.unwrap();
    }
    let (reads, failed) = (reads.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    let worst = Duration::from_micros(worst.load(Ordering::SeqCst));
    eprintln!(
        "failover of the master on port {port}: cluster ok after {failed_over:?}, cache back on \
         the cluster after {recovered:?}; {reads} reads, {failed} failed, worst {worst:?}"
    );
    assert_eq!(failed, 0, "no read fails through the failover");
}

/// A cluster that is not up when the link is first used is found once it is: the link opens
/// without connecting, its first commands fail (fast), and it connects when the nodes answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Redis Cluster: set MARQUEE_TEST_REDIS_CLUSTER=1"]
async fn a_cluster_down_at_start_up_is_found_when_it_comes_up() {
    marquee_testkit::require_redis_cluster();
    let ports = RedisCluster::free_ports();
    let seeds: Vec<String> = ports
        .iter()
        .map(|port| format!("redis://127.0.0.1:{port}"))
        .collect();
    let mut redis = RedisConfig::cluster(seeds.join(","));
    redis.response_timeout = Duration::from_millis(200);
    redis.connection_timeout = Duration::from_millis(200);
    let link = RedisLink::open(redis).unwrap();
    assert!(link.get("k").await.is_err(), "nothing answers yet");
    let cluster = RedisCluster::start_on(&ports);
    let started = Instant::now();
    loop {
        let written = link.set_px("{k}", b"v", 60_000).await;
        if written.is_ok()
            && link
                .get("{k}")
                .await
                .is_ok_and(|v| v.as_deref() == Some(&b"v"[..]))
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the link never found the cluster: {written:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("found the cluster {:?} after it came up", started.elapsed());
    drop(cluster);
}
