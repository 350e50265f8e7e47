//! Waiting for a connection: bounded, visible as pending, and never longer than the work.

use std::time::{Duration, Instant};

use diesel::SqliteConnection;
use marquee_pool::{Pool, PoolConfig, PoolError, UrlConnector};
use tokio::task::JoinHandle;

use crate::{quick_config, sqlite_pool};

/// Occupies both connections of a [`quick_config`] pool for `held`, each from a task of its
/// own; the handles end when the work does.
fn occupy_both(
    pool: &Pool<UrlConnector<SqliteConnection>>,
    held: Duration,
) -> Vec<JoinHandle<Result<(), PoolError>>> {
    (0..2)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                pool.run(move |_| {
                    std::thread::sleep(held);
                    Ok::<_, PoolError>(())
                })
                .await
            })
        })
        .collect()
}

#[tokio::test]
async fn opens_minimum_idle_connections() {
    let config = PoolConfig {
        maximum_pool_size: 4,
        minimum_idle: Some(2),
        ..PoolConfig::default()
    };
    let (_dir, pool) = sqlite_pool(config);
    let state = pool.state();
    assert_eq!((state.max, state.min), (4, 2));
    assert!(state.connections >= 2, "{state:?}");
    assert_eq!(state.active, 0);
    assert_eq!(state.pending, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_pool_fails_fast_with_busy() {
    let (_dir, pool) = sqlite_pool(quick_config());
    let holders = occupy_both(&pool, Duration::from_millis(1500));
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Waiters are visible as pending while they wait.
    let waiter = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.run(|_| Ok::<_, PoolError>(())).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let state = pool.state();
    assert_eq!((state.active, state.pending), (2, 1), "{state:?}");

    let started = Instant::now();
    let error = pool.run(|_| Ok::<_, PoolError>(())).await.unwrap_err();
    assert!(matches!(error, PoolError::Busy { .. }), "{error}");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(matches!(waiter.await.unwrap(), Err(PoolError::Busy { .. })));

    for holder in holders {
        holder.await.unwrap().unwrap();
    }
    pool.run(|_| Ok::<_, PoolError>(())).await.unwrap();
    assert_eq!(pool.state().pending, 0);
}

/// A caller that gives up does not give the connection back early: the work finishes and
/// the permit is returned with it, so the pool never runs more work than connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_caller_does_not_leak_capacity() {
    let (_dir, pool) = sqlite_pool(quick_config());
    let slow = pool.run(|_| {
        std::thread::sleep(Duration::from_millis(400));
        Ok::<_, PoolError>(())
    });
    assert!(
        tokio::time::timeout(Duration::from_millis(50), slow)
            .await
            .is_err()
    );
    assert_eq!(
        pool.state().active,
        1,
        "the abandoned work still holds its connection"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(pool.state().active, 0);
    for _ in 0..5 {
        pool.run(|_| Ok::<_, PoolError>(())).await.unwrap();
    }
}

/// A saturated pool is a busy database, not a down one: the health check passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_check_passes_on_an_idle_and_on_a_saturated_pool() {
    let (_dir, pool) = sqlite_pool(quick_config());
    assert_eq!(pool.check_health().await, Ok(()));
    let holders = occupy_both(&pool, Duration::from_millis(600));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    assert_eq!(pool.check_health().await, Ok(()));
    assert!(started.elapsed() < Duration::from_millis(450));
    for holder in holders {
        holder.await.unwrap().unwrap();
    }
}

/// Work whose caller went away still runs; `wait_until_idle` waits for it, within its bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_until_idle_waits_for_abandoned_work_within_its_bound() {
    let (_dir, pool) = sqlite_pool(quick_config());
    assert!(pool.wait_until_idle(Duration::from_millis(10)).await);
    let slow = pool.run(|_| {
        std::thread::sleep(Duration::from_millis(300));
        Ok::<_, PoolError>(())
    });
    assert!(
        tokio::time::timeout(Duration::from_millis(50), slow)
            .await
            .is_err()
    );
    assert!(
        !pool.wait_until_idle(Duration::from_millis(20)).await,
        "the abandoned work still runs"
    );
    assert!(pool.wait_until_idle(Duration::from_secs(5)).await);
    assert_eq!(pool.state().active, 0);
}
