//! Expiry: TTLs spread over the jitter window, early refresh so hot keys never miss, stale
//! values when the source fails.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use marquee_cache::{Cache, CachePolicy};

use crate::on_each_tier;
use crate::support::{
    Group, Source, Tier, assert_source_down, build_group, config, group, k, link, namespace,
    redis_url, spawn_get,
};

/// 10,000 keys written at once: every TTL Redis reports is within the policy's window
/// (plus the documented stale grace), and no 1-second bucket holds more than 5 %.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Redis: set MARQUEE_TEST_REDIS_URL"]
async fn ten_thousand_keys_expire_spread_over_the_window() {
    let url = redis_url();
    let source = Source::with_delay(Duration::ZERO);
    let policy = CachePolicy::default();
    let cache = Cache::redis(config(&namespace()), link(&url)).unwrap();
    let group = build_group(&cache, policy, source.loader());
    let keys: Vec<String> = (0..10_000).map(|i| format!("concert:{i}")).collect();
    let started = Instant::now();
    let mut written_at = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(500) {
        let writers: Vec<_> = chunk
            .iter()
            .map(|key| spawn_get(&group, key.as_str()))
            .collect();
        for writer in writers {
            assert!(writer.await.unwrap().unwrap().is_some());
        }
        written_at.extend(std::iter::repeat_n(Instant::now(), chunk.len()));
    }
    let elapsed = started.elapsed();
    assert_eq!(source.loads(), 10_000);

    let redis = link(&url);
    let (low, high) = policy.window();
    let grace = policy.stale_grace;
    let mut buckets = vec![0u32; (policy.jitter.as_secs() + 2) as usize];
    for (key, written) in keys.iter().zip(&written_at) {
        let pttl =
            Duration::from_millis(redis.pttl(&group.full_key(&k(key))).await.unwrap().unwrap());
        let ttl = pttl - grace;
        // Time passed between the write and this read shortens what Redis reports.
        assert!(
            ttl <= high && ttl + elapsed + Duration::from_secs(2) >= low,
            "{key}: ttl {ttl:?} outside {low:?}..={high:?}"
        );
        // The spread is of the TTLs as written: reading 10,000 keys takes seconds, and
        // without adding back the time since each write, the reads' drift would pile the
        // lowest TTLs into the first bucket.
        let as_written = ttl + written.elapsed();
        let last = buckets.len() - 1;
        buckets[(as_written.saturating_sub(low).as_secs() as usize).min(last)] += 1;
    }
    let busiest = buckets.iter().max().copied().unwrap();
    assert!(
        busiest <= 500,
        "busiest 1-second bucket holds {busiest} of 10000: {buckets:?}"
    );
}

/// Reads every 10 ms for `span`; returns how many took longer than `slow`.
async fn slow_reads(group: &Group, span: Duration, slow: Duration) -> usize {
    let started = Instant::now();
    let mut count = 0;
    while started.elapsed() < span {
        let read = Instant::now();
        assert!(group.get(&k("hot")).await.unwrap().is_some());
        if read.elapsed() >= slow {
            count += 1;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    count
}

/// Timings chosen with wide margins so a busy two-core machine cannot blur them: a load
/// takes 200 ms, and a read counts as slow from 150 ms.
const LOAD: Duration = Duration::from_millis(200);
const SLOW: Duration = Duration::from_millis(150);
const SPAN: Duration = Duration::from_millis(3_000);

fn short_policy(beta: f64) -> CachePolicy {
    CachePolicy::with_ttl(Duration::from_millis(800), Duration::ZERO).with_early_refresh_beta(beta)
}

/// With XFetch, a key read continuously is recomputed before it expires: after the first
/// (cold) read no read waits for a load. Without it, reads wait at every expiry.
async fn xfetch_refreshes_before_expiry(tier: Tier) {
    let source = Source::with_delay(LOAD);
    let (_cache, eager) = group(tier, config(&namespace()), short_policy(1.0), &source);
    let slow = slow_reads(&eager, SPAN, SLOW).await;
    assert_eq!(slow, 1, "only the cold read waits");
    assert!(source.loads() >= 3, "refreshed {} times", source.loads());

    let control = Source::with_delay(LOAD);
    let (_cache, plain) = group(tier, config(&namespace()), short_policy(0.0), &control);
    let slow = slow_reads(&plain, SPAN, SLOW).await;
    assert!(
        slow >= 2,
        "without early refresh every expiry costs a wait ({slow})"
    );
}

/// The hot-key refresher keeps a hot key loaded with XFetch off.
async fn hot_keys_are_refreshed_ahead(tier: Tier) {
    let source = Source::with_delay(LOAD);
    let mut config = config(&namespace());
    config.refresh.enabled = true;
    config.refresh.interval = Duration::from_millis(100);
    config.refresh.hot_keys = 10;
    config.refresh.min_reads = 2;
    config.refresh.ahead = Duration::from_millis(500);
    let (_cache, group) = group(tier, config, short_policy(0.0), &source);
    let slow = slow_reads(&group, SPAN, SLOW).await;
    assert_eq!(slow, 1, "only the cold read waits");
    assert!(source.loads() >= 3);
}

/// A failing source with a stale value at hand serves the stale value; without one, the
/// error reaches the caller.
async fn a_failing_source_serves_stale(tier: Tier) {
    let source = Source::with_delay(Duration::ZERO);
    let policy = CachePolicy::with_ttl(Duration::from_millis(200), Duration::ZERO)
        .with_stale_grace(Duration::from_secs(10))
        .with_early_refresh_beta(0.0);
    let (_cache, group) = group(tier, config(&namespace()), policy, &source);
    let fresh = group.get(&k("k")).await.unwrap().unwrap();
    source.failing.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        group.get(&k("k")).await.unwrap().unwrap(),
        fresh,
        "stale served"
    );
    assert!(source.loads() >= 2, "a reload was attempted");
    assert_source_down(group.get(&k("never-loaded")).await);
}

/// A write's eviction keeps the value it took out for the stale grace: a load that fails
/// right after (the source restarting) serves it instead of an error, on this instance and,
/// through Redis, on another that never held it. It is never a hit: once the source answers,
/// reads get the new value. Without a stale grace nothing is kept.
async fn an_evicted_value_serves_a_reload_that_fails(tier: Tier) {
    let source = Source::with_delay(Duration::ZERO);
    let policy = |grace| {
        CachePolicy::with_ttl(Duration::from_secs(60), Duration::ZERO)
            .with_stale_grace(grace)
            .with_early_refresh_beta(0.0)
    };
    let namespace = namespace();
    let ten = Duration::from_secs(10);
    let (_cache, writer) = group(tier, config(&namespace), policy(ten), &source);
    let old = writer.get(&k("k")).await.unwrap().unwrap();
    source.version.store(1, Ordering::SeqCst);
    writer.evict(&k("k")).await;
    source.failing.store(true, Ordering::SeqCst);
    let served = writer.get(&k("k")).await.unwrap().unwrap();
    assert_eq!(served, old, "the retired value is served");
    if tier != Tier::Local {
        // Another instance on the same Redis, which never loaded the key.
        let (_peer_cache, peer) = group(tier, config(&namespace), policy(ten), &source);
        let served = peer.get(&k("k")).await.unwrap().unwrap();
        assert_eq!(served, old, "the peer reads the one Redis keeps");
    }
    source.failing.store(false, Ordering::SeqCst);
    let new = writer.get(&k("k")).await.unwrap().unwrap();
    assert_ne!(new, old, "a retired value is no hit");

    let (_cache, graceless) = group(tier, config(&namespace), policy(Duration::ZERO), &source);
    graceless.get(&k("other")).await.unwrap().unwrap();
    graceless.evict(&k("other")).await;
    source.failing.store(true, Ordering::SeqCst);
    assert_source_down(graceless.get(&k("other")).await);
}

/// XFetch alone, with many readers, starts about e^(1/beta) recomputations per expiry (the
/// unit test `uncoordinated_xfetch_recomputes_e_to_the_one_over_beta_times_per_expiry`
/// simulates it), and three instances would each start their own. Here three instances on
/// one Redis read one hot key continuously with XFetch on: the per-process flight and the
/// Redis lease let one load run at a time in the whole fleet, once per expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Redis: set MARQUEE_TEST_REDIS_URL"]
async fn the_lease_caps_early_recomputation_at_one_across_instances() {
    const TTL: Duration = Duration::from_millis(1_000);
    const SPAN: Duration = Duration::from_millis(4_500);
    let url = redis_url();
    let source = Source::with_delay(Duration::from_millis(20));
    let namespace = namespace();
    let policy = CachePolicy::with_ttl(TTL, Duration::ZERO).with_early_refresh_beta(1.0);
    let instances: Vec<_> = (0..3)
        .map(|_| {
            let cache = Cache::redis(config(&namespace), link(&url)).unwrap();
            let group = build_group(&cache, policy, source.loader());
            (cache, group)
        })
        .collect();
    let started = Instant::now();
    let readers: Vec<_> = (0..6)
        .map(|reader| {
            let group = instances[reader % 3].1.clone();
            tokio::spawn(async move {
                while started.elapsed() < SPAN {
                    assert!(group.get(&k("hot")).await.unwrap().is_some());
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        })
        .collect();
    for reader in readers {
        reader.await.unwrap();
    }
    assert_eq!(source.max_in_flight.load(Ordering::SeqCst), 1);
    // The cold load, then one per expiry (each a little early): five in 4.5 s. Three
    // uncoordinated instances would have made three per expiry.
    let expiries = SPAN.as_millis().div_ceil(TTL.as_millis()) as usize;
    let loads = source.loads();
    assert!(
        (3..=expiries + 1).contains(&loads),
        "{loads} loads in {SPAN:?} of a {TTL:?} TTL"
    );
}

on_each_tier!(
    xfetch_refreshes_before_expiry,
    hot_keys_are_refreshed_ahead,
    a_failing_source_serves_stale,
    an_evicted_value_serves_a_reload_that_fails,
);
