//! What the cache does not take on trust: entries in Redis that claim to live longer than
//! any entry of their group can, and loads that read the source before a write that
//! evicted (or replaced) their key.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use marquee_cache::{Cache, CachePolicy};
use tokio::sync::Notify;

use crate::on_each_tier;
use crate::support::{
    Group, Load, Source, Tier, assert_source_down, build_group, config, group, k, link, link_for,
    namespace, redis_url, spawn_get,
};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// An entry in the crate's wire encoding (version 1): `[1][kind][expires_at: u64 BE]
/// [delta: u32 BE][payload]`, kind 0 for a value and 1 for "does not exist".
fn forge(value: Option<&[u8]>, expires_at: u64) -> Vec<u8> {
    let mut raw = vec![1u8, u8::from(value.is_none())];
    raw.extend_from_slice(&expires_at.to_be_bytes());
    raw.extend_from_slice(&0u32.to_be_bytes());
    raw.extend_from_slice(value.unwrap_or_default());
    raw
}

const TEN_YEARS_MS: u64 = 10 * 365 * 24 * 3600 * 1000;

/// Entries written straight into Redis with an expiry ten years out, a value and an
/// absence, are misses: the loader runs, its answer is returned and replaces them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Redis: set MARQUEE_TEST_REDIS_URL"]
async fn a_forged_far_future_entry_is_not_served() {
    let url = redis_url();
    let source = Source::with_delay(Duration::ZERO);
    let (_cache, group) = group(
        Tier::Redis,
        config(&namespace()),
        CachePolicy::default(),
        &source,
    );
    let redis = link(&url);
    let forever = now_ms() + TEN_YEARS_MS;
    for (key, forged) in [
        ("value", forge(Some(b"{\"forged\":true}"), forever)),
        ("absent", forge(None, forever)),
    ] {
        redis
            .set_px(&group.full_key(&k(key)), &forged, 3_600_000)
            .await
            .unwrap();
        let loads = source.loads();
        let real = format!("{{\"key\":\"{key}\",\"v\":0}}");
        assert_eq!(
            group.get(&k(key)).await.unwrap().as_deref(),
            Some(real.as_bytes()),
            "{key}: the forged entry was served"
        );
        assert_eq!(source.loads(), loads + 1, "{key}: the loader ran");
        // The load replaced the forged entry: the next read is a hit on the real value.
        assert_eq!(
            group.get(&k(key)).await.unwrap().as_deref(),
            Some(real.as_bytes())
        );
        assert_eq!(source.loads(), loads + 1, "{key}: the real entry is a hit");
        let stored = redis.get(&group.full_key(&k(key))).await.unwrap().unwrap();
        assert_ne!(stored, forged, "{key}: the forged bytes are still in Redis");
    }
}

/// A forged entry is not a stale value either: with the source down, the read fails
/// rather than serving it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Redis: set MARQUEE_TEST_REDIS_URL"]
async fn a_forged_entry_is_not_served_as_stale_when_the_source_fails() {
    let url = redis_url();
    let source = Source::with_delay(Duration::ZERO);
    source.failing.store(true, Ordering::SeqCst);
    let cache = Cache::redis(config(&namespace()), link(&url)).unwrap();
    let group = build_group(&cache, CachePolicy::default(), source.loader());
    link(&url)
        .set_px(
            &group.full_key(&k("k")),
            &forge(Some(b"{\"forged\":true}"), now_ms() + TEN_YEARS_MS),
            3_600_000,
        )
        .await
        .unwrap();
    assert_source_down(group.get(&k("k")).await);
}

/// The bound is the group's policy, not a blanket refusal: an entry that expires within
/// `base_ttl + jitter` of now could have been written by any instance, and is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Redis: set MARQUEE_TEST_REDIS_URL"]
async fn an_entry_within_the_policy_is_trusted() {
    let url = redis_url();
    let source = Source::with_delay(Duration::ZERO);
    let policy = CachePolicy::with_ttl(Duration::from_secs(200), Duration::from_secs(60));
    let (_cache, group) = group(Tier::Redis, config(&namespace()), policy, &source);
    link(&url)
        .set_px(
            &group.full_key(&k("k")),
            &forge(Some(b"{\"elsewhere\":true}"), now_ms() + 250_000),
            3_600_000,
        )
        .await
        .unwrap();
    assert_eq!(
        group.get(&k("k")).await.unwrap().as_deref(),
        Some(&b"{\"elsewhere\":true}"[..])
    );
    assert_eq!(source.loads(), 0);
}

/// A source whose first load stops after it has read the data (`version`), until the test
/// releases it: the load of a read that raced a write.
#[derive(Default)]
struct Gated {
    version: AtomicU64,
    loads: AtomicUsize,
    armed: AtomicBool,
    has_read: Notify,
    release: Notify,
}

impl Gated {
    fn armed() -> Arc<Self> {
        let gated = Self::default();
        gated.armed.store(true, Ordering::SeqCst);
        Arc::new(gated)
    }

    fn value(version: u64) -> Bytes {
        Bytes::from(format!("{{\"v\":{version}}}"))
    }

    fn loader(self: &Arc<Self>) -> impl Fn(String) -> Load + Send + Sync + 'static {
        let gated = self.clone();
        move |_key: String| -> Load {
            let gated = gated.clone();
            Box::pin(async move {
                gated.loads.fetch_add(1, Ordering::SeqCst);
                let version = gated.version.load(Ordering::SeqCst);
                if gated.armed.swap(false, Ordering::SeqCst) {
                    gated.has_read.notify_one();
                    gated.release.notified().await;
                }
                Ok(Some(Self::value(version)))
            })
        }
    }

    /// The write: the data changes (the transaction commits).
    fn commit(&self) {
        self.version.fetch_add(1, Ordering::SeqCst);
    }
}

/// Two instances on `tier`: on Redis, two `Cache`s sharing one namespace (the load runs on
/// one, the write's eviction on the other); in-process, the same group twice.
fn two_instances(tier: Tier, gated: &Arc<Gated>) -> (Vec<Cache>, Group, Group) {
    let config = config(&namespace());
    let caches = match tier {
        Tier::Local => vec![Cache::local(config).unwrap()],
        Tier::Redis | Tier::Cluster => vec![
            Cache::redis(config.clone(), link_for(tier)).unwrap(),
            Cache::redis(config, link_for(tier)).unwrap(),
        ],
    };
    let groups: Vec<_> = caches
        .iter()
        .map(|cache| build_group(cache, CachePolicy::default(), gated.loader()))
        .collect();
    let loading = groups[0].clone();
    let writing = groups[groups.len() - 1].clone();
    (caches, loading, writing)
}

/// How the write tells the cache.
#[derive(Debug, Clone, Copy)]
enum Write {
    Evict,
    Update,
}

/// The race: a load reads the old data, a write commits and evicts (or replaces) the key,
/// then the load stores what it read. The next reads, on either instance, must not serve
/// the old value.
async fn race_with(tier: Tier, write: Write) {
    let gated = Gated::armed();
    let (_caches, loading, writing) = two_instances(tier, &gated);
    let racing = spawn_get(&loading, "k");
    gated.has_read.notified().await;
    gated.commit();
    match write {
        Write::Evict => writing.evict(&k("k")).await,
        Write::Update => writing.update(&k("k"), Some(Gated::value(1))).await,
    }
    gated.release.notify_one();
    // That read overlapped the write: the old value is a fair answer for it.
    assert_eq!(racing.await.unwrap().unwrap(), Some(Gated::value(0)));

    for (instance, group) in [("loading", &loading), ("writing", &writing)] {
        assert_eq!(
            group.get(&k("k")).await.unwrap(),
            Some(Gated::value(1)),
            "{write:?}: the {instance} instance serves the value read before the write"
        );
    }
    let expected_loads = match write {
        // One reload after the eviction, shared by both instances through Redis.
        Write::Evict => 2,
        Write::Update => 1,
    };
    assert_eq!(gated.loads.load(Ordering::SeqCst), expected_loads);
}

async fn an_eviction_defeats_a_load_that_read_before_it(tier: Tier) {
    race_with(tier, Write::Evict).await;
}

async fn an_update_defeats_a_load_that_read_before_it(tier: Tier) {
    race_with(tier, Write::Update).await;
}

/// A read that starts after an eviction does not join a load of the same key that started
/// before it (in the same instance): it loads anew, and gets the written data.
async fn a_read_after_an_eviction_does_not_join_the_older_load(tier: Tier) {
    let gated = Gated::armed();
    let (_caches, group, _) = two_instances(tier, &gated);
    let older = spawn_get(&group, "k");
    gated.has_read.notified().await;
    gated.commit();
    group.evict(&k("k")).await;
    // Bounded only so that joining the older load (which waits for the release below)
    // fails the test instead of hanging it.
    let after = tokio::time::timeout(Duration::from_secs(30), group.get(&k("k")))
        .await
        .expect("the read after the eviction waited for the load that started before it");
    assert_eq!(after.unwrap(), Some(Gated::value(1)));
    gated.release.notify_one();
    assert_eq!(older.await.unwrap().unwrap(), Some(Gated::value(0)));
    assert_eq!(group.get(&k("k")).await.unwrap(), Some(Gated::value(1)));
    assert_eq!(gated.loads.load(Ordering::SeqCst), 2);
}

on_each_tier!(
    an_eviction_defeats_a_load_that_read_before_it,
    an_update_defeats_a_load_that_read_before_it,
    a_read_after_an_eviction_does_not_join_the_older_load,
);
