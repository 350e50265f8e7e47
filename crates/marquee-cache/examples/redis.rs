//! Two instances of a service sharing one Redis: a value loaded by one is served by the
//! other without a second load, and an eviction on one reaches the other's in-process L1.
//!
//! ```text
//! REDIS_URL=redis://127.0.0.1:6379 cargo run -p marquee-cache --example redis
//! ```

#![allow(clippy::print_stdout)] // An example prints what it shows.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use marquee_cache::{Cache, CacheConfig, CacheGroup, RedisConfig, RedisLink};

#[derive(Debug, thiserror::Error)]
#[error("the accounts database is unavailable")]
struct DatabaseDown;

/// One instance: its own cache engine on the shared Redis, and a group of account names.
fn instance(
    url: &str,
    namespace: &str,
    loads: &Arc<AtomicUsize>,
) -> Result<CacheGroup<u64, String, DatabaseDown>, Box<dyn std::error::Error>> {
    let mut config = CacheConfig::default();
    config.namespace = namespace.to_owned();
    config.refresh.enabled = false;
    let cache = Cache::redis(config, RedisLink::open(RedisConfig::new(url))?)?;
    let loads = loads.clone();
    let group = cache
        .group::<u64, String>("account_name")
        .build(move |id: u64| {
            loads.fetch_add(1, Ordering::SeqCst);
            async move { Ok::<_, DatabaseDown>(Some(format!("account {id}"))) }
        })?;
    Ok(group)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    // A namespace of its own per run, so that earlier runs' entries are not found.
    let run = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
    let namespace = format!("example:{run}:v1");
    let loads = Arc::new(AtomicUsize::new(0));
    let first = instance(&url, &namespace, &loads)?;
    let second = instance(&url, &namespace, &loads)?;

    assert_eq!(first.get(&7).await?.as_deref(), Some("account 7"));
    assert_eq!(second.get(&7).await?.as_deref(), Some("account 7"));
    println!(
        "read on both instances: {} load (the second read came from Redis)",
        loads.load(Ordering::SeqCst)
    );

    second.update(&7, Some("renamed".to_owned())).await;
    // The update reached Redis at once; the first instance's L1 copy is dropped when the
    // invalidation message arrives (and lives `l1_ttl` at most anyway).
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(first.get(&7).await?.as_deref(), Some("renamed"));
    println!(
        "after an update on the second instance, the first reads the new name; {} load in all",
        loads.load(Ordering::SeqCst)
    );
    first.evict(&7).await;
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    Ok(())
}
