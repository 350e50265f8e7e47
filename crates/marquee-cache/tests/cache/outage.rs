//! Redis going away mid-run: reads keep succeeding, the breaker opens, the load on the
//! source stays bounded, and everything recovers when Redis returns.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use marquee_cache::{BreakerState, Cache, CachePolicy, RedisConfig, RedisLink};
use marquee_testkit::{ChaosProxy, host_port, through};

use crate::support::{Source, build_group, config, k, namespace, redis_url, spawn_get};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Redis: set MARQUEE_TEST_REDIS_URL"]
async fn reads_survive_a_redis_outage_within_the_fallback_bound() {
    let url = redis_url();
    let proxy = ChaosProxy::start(&host_port(&url)).await;
    let mut redis = RedisConfig::new(through(&url, &proxy));
    redis.response_timeout = Duration::from_millis(50);
    redis.connection_timeout = Duration::from_millis(100);
    let link = RedisLink::open(redis).unwrap();
    let mut config = config(&namespace());
    config.fallback_concurrency = 2;
    config.breaker.failure_threshold = 3;
    config.breaker.open_for = Duration::from_millis(300);
    let cache = Cache::redis(config, link).unwrap();
    let source = Source::with_delay(Duration::from_millis(20));
    let group = build_group(&cache, CachePolicy::default(), source.loader());

    assert!(group.get(&k("warm")).await.unwrap().is_some());
    assert_eq!(cache.breaker_state(), BreakerState::Closed);

    proxy.cut().await;
    let started = Instant::now();
    let readers: Vec<_> = (0..200)
        .map(|i| spawn_get(&group, format!("cold:{i}")))
        .collect();
    for reader in readers {
        assert!(reader.await.unwrap().unwrap().is_some(), "no read fails");
    }
    assert_ne!(
        cache.breaker_state(),
        BreakerState::Closed,
        "the breaker opened"
    );
    assert!(
        source.max_in_flight.load(Ordering::SeqCst) <= 2,
        "at most fallback_concurrency loads at once, saw {}",
        source.max_in_flight.load(Ordering::SeqCst)
    );
    // 200 loads of 20 ms two at a time take about 2 s; far longer would mean reads waited
    // on Redis timeouts instead of skipping Redis.
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );

    proxy.restore();
    // Reads that need Redis probe it (keys cached during the outage are answered from
    // memory and need not); the first probe after `open_for` closes the breaker.
    let started = Instant::now();
    let mut probe = 0;
    while cache.breaker_state() != BreakerState::Closed {
        assert!(
            group
                .get(&format!("probe:{probe}"))
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the breaker never closed"
        );
        probe += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Back on Redis: new keys are stored there again. A load runs on a runtime thread of its
    // own, and a thread whose connection has not been used since the outage fails its first
    // command while the connection reopens (docs/ARCHITECTURE.md, "Reads on the caller's
    // thread"): that load stores in memory only. Each of the runtime's two threads does so at
    // most once, so one of the first few new keys reaches Redis.
    let check = RedisLink::open(RedisConfig::new(&url)).unwrap();
    let mut in_redis = None;
    for attempt in 0..6 {
        let key = k(&format!("after-recovery:{attempt}"));
        let loads = source.loads();
        assert!(group.get(&key).await.unwrap().is_some());
        assert_eq!(source.loads(), loads + 1);
        if check.get(&group.full_key(&key)).await.unwrap().is_some() {
            in_redis = Some(attempt);
            break;
        }
    }
    assert!(
        in_redis.is_some_and(|attempt| attempt <= 2),
        "the first new key stored in Redis: {in_redis:?}"
    );
}
