//! Stampedes and penetration: many readers, one load.

use std::time::Duration;

use marquee_cache::{Cache, CachePolicy};

use crate::on_each_tier;
use crate::support::{
    Source, Tier, assert_source_down, build_group, config, group, k, link_for, namespace, spawn_get,
};

/// 500 concurrent reads of a cold key: exactly one load, and everyone gets its value.
async fn a_cold_key_is_loaded_once(tier: Tier) {
    let source = Source::with_delay(Duration::from_millis(50));
    let (_cache, group) = group(tier, config(&namespace()), CachePolicy::default(), &source);
    let readers: Vec<_> = (0..500).map(|_| spawn_get(&group, "concert:1")).collect();
    for reader in readers {
        let value = reader.await.unwrap().unwrap().unwrap();
        assert_eq!(&value[..], br#"{"key":"concert:1","v":0}"#);
    }
    assert_eq!(source.loads(), 1);
}

/// 1,000 reads of a key that does not exist: one load per negative TTL, not 1,000.
async fn absence_is_remembered(tier: Tier) {
    let source = Source::with_delay(Duration::from_millis(5));
    let (_cache, group) = group(tier, config(&namespace()), CachePolicy::default(), &source);
    for chunk in 0..10 {
        let readers: Vec<_> = (0..100).map(|_| spawn_get(&group, "missing:42")).collect();
        for reader in readers {
            assert_eq!(reader.await.unwrap().unwrap(), None, "chunk {chunk}");
        }
    }
    assert_eq!(source.loads(), 1);
}

/// A cancelled reader does not cancel the load the others wait for.
async fn a_cancelled_leader_does_not_strand_followers(tier: Tier) {
    let source = Source::with_delay(Duration::from_millis(100));
    let (_cache, group) = group(tier, config(&namespace()), CachePolicy::default(), &source);
    let leader = spawn_get(&group, "k");
    tokio::time::sleep(Duration::from_millis(10)).await;
    let follower = spawn_get(&group, "k");
    leader.abort();
    assert!(follower.await.unwrap().unwrap().is_some());
    assert_eq!(source.loads(), 1);
}

on_each_tier!(
    a_cold_key_is_loaded_once,
    absence_is_remembered,
    a_cancelled_leader_does_not_strand_followers;
    redis only:
    instances_share_one_load_through_the_lease,
    a_dead_lease_holder_delays_but_does_not_block,
    a_load_leaves_no_lease_behind,
    invalidations_reach_every_instances_l1,
);

/// Three instances on one Redis, 300 concurrent reads spread over them: one load in all.
async fn instances_share_one_load_through_the_lease(tier: Tier) {
    let source = Source::with_delay(Duration::from_millis(50));
    let namespace = namespace();
    let mut config = config(&namespace);
    // Generous, so that a loaded machine cannot make a loser give up waiting for the lease
    // holder and load on its own.
    config.lease_wait = Duration::from_secs(10);
    let groups: Vec<_> = (0..3)
        .map(|_| {
            let cache = Cache::redis(config.clone(), link_for(tier)).unwrap();
            let group = build_group(&cache, CachePolicy::default(), source.loader());
            (cache, group)
        })
        .collect();
    let readers: Vec<_> = (0..300)
        .map(|i| spawn_get(&groups[i % 3].1, "concert:7"))
        .collect();
    for reader in readers {
        assert!(reader.await.unwrap().unwrap().is_some());
    }
    assert_eq!(source.loads(), 1);
}

/// A lease whose holder died (it never wrote the value) delays others by at most
/// `lease_wait`, after which they load themselves.
async fn a_dead_lease_holder_delays_but_does_not_block(tier: Tier) {
    let source = Source::with_delay(Duration::from_millis(10));
    let mut config = config(&namespace());
    config.lease_wait = Duration::from_millis(300);
    let cache = Cache::redis(config, link_for(tier)).unwrap();
    let group = build_group(&cache, CachePolicy::default(), source.loader());
    let lease = format!("{}:lease", group.full_key(&k("k")));
    assert!(
        link_for(tier)
            .set_px(&lease, b"crashed", 60_000)
            .await
            .is_ok()
    );

    let started = std::time::Instant::now();
    assert!(group.get(&k("k")).await.unwrap().is_some());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    assert_eq!(source.loads(), 1);
}

/// The lease holder releases its lease when it is done, with its store (one script) or on
/// its own when there is nothing to store (the load failed): the next reader after a
/// write loads at once, without waiting out `lease_wait` for a holder that has finished.
async fn a_load_leaves_no_lease_behind(tier: Tier) {
    let source = Source::with_delay(Duration::ZERO);
    let (_cache, group) = group(tier, config(&namespace()), CachePolicy::default(), &source);
    let link = link_for(tier);
    let lease = |key: &str| format!("{}:lease", group.full_key(&k(key)));

    assert!(group.get(&k("stored")).await.unwrap().is_some());
    assert_eq!(
        link.get(&lease("stored")).await.unwrap(),
        None,
        "released with the store"
    );

    source
        .failing
        .store(true, std::sync::atomic::Ordering::SeqCst);
    assert_source_down(group.get(&k("failed")).await);
    assert_eq!(
        link.get(&lease("failed")).await.unwrap(),
        None,
        "released on its own"
    );

    source
        .failing
        .store(false, std::sync::atomic::Ordering::SeqCst);
    group.evict(&k("stored")).await;
    let started = std::time::Instant::now();
    assert!(group.get(&k("stored")).await.unwrap().is_some());
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(source.loads(), 3);
}

/// An instance's write reaches the other instances' L1 through pub/sub.
async fn invalidations_reach_every_instances_l1(tier: Tier) {
    let source = Source::with_delay(Duration::ZERO);
    let mut config = config(&namespace());
    config.l1_ttl = Duration::from_secs(30);
    let policy = CachePolicy::default();
    let (_a, group_a) = group(tier, config.clone(), policy, &source);
    let (_b, group_b) = group(tier, config, policy, &source);
    // Let both subscriptions settle.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let first = group_b.get(&k("k")).await.unwrap().unwrap();
    assert_eq!(
        group_b.get(&k("k")).await.unwrap().unwrap(),
        first,
        "now in b's L1"
    );

    let newer = bytes::Bytes::from_static(b"{\"new\":true}");
    group_a.update(&k("k"), Some(newer.clone())).await;
    let started = std::time::Instant::now();
    loop {
        let seen = group_b.get(&k("k")).await.unwrap().unwrap();
        if seen == newer {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "b still serves {seen:?} from its L1"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    group_a.evict(&k("k")).await;
    let started = std::time::Instant::now();
    while group_b.get(&k("k")).await.unwrap().unwrap() == newer {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "eviction did not reach b"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
