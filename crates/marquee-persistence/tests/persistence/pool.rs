//! The pool's promises: bounded waits, the right error for the right trouble, HikariCP's
//! sizing, and no dead connection handed out twice.

use std::time::{Duration, Instant};

use marquee_persistence::test_support::TestDatabase;
use marquee_persistence::{Backend, DatabaseUrl, DbPool, PersistenceError, PoolConfig};

use crate::{on_each_backend, pool_on, quick_config};

async fn opens_minimum_idle_connections(backend: Backend) {
    let config = PoolConfig {
        maximum_pool_size: 4,
        minimum_idle: Some(2),
        ..PoolConfig::default()
    };
    let (_db, pool) = pool_on(backend, config);
    let state = pool.state();
    assert_eq!((state.max, state.min), (4, 2));
    assert!(state.connections >= 2, "{state:?}");
    assert_eq!(state.active, 0);
    assert_eq!(state.pending, 0);
}

async fn a_busy_pool_fails_fast_with_busy(backend: Backend) {
    let (_db, pool) = pool_on(backend, quick_config());
    let holders: Vec<_> = (0..2)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                pool.run(|_| {
                    std::thread::sleep(Duration::from_millis(1500));
                    Ok(())
                })
                .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Waiters are visible as pending while they wait.
    let waiter = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.run(|_| Ok(())).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let state = pool.state();
    assert_eq!((state.active, state.pending), (2, 1), "{state:?}");

    let started = Instant::now();
    let error = pool.run(|_| Ok(())).await.unwrap_err();
    assert!(matches!(error, PersistenceError::Busy { .. }), "{error}");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(matches!(
        waiter.await.unwrap(),
        Err(PersistenceError::Busy { .. })
    ));

    for holder in holders {
        holder.await.unwrap().unwrap();
    }
    pool.run(|_| Ok(())).await.unwrap();
    assert_eq!(pool.state().pending, 0);
}

/// A caller that gives up does not give the connection back early: the work finishes and
/// the permit is returned with it, so the pool never runs more queries than connections.
async fn a_cancelled_caller_does_not_leak_capacity(backend: Backend) {
    let (_db, pool) = pool_on(backend, quick_config());
    let slow = pool.run(|_| {
        std::thread::sleep(Duration::from_millis(400));
        Ok(())
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
        pool.run(|_| Ok(())).await.unwrap();
    }
}

async fn health_check_pings_the_database(backend: Backend) {
    use marquee_domain::HealthCheck;
    let (_db, pool) = pool_on(backend, quick_config());
    assert_eq!(pool.name(), "database");
    assert_eq!(pool.check().await, Ok(()));
}

async fn migrations_are_idempotent(backend: Backend) {
    let (_db, pool) = pool_on(backend, quick_config());
    // The test database is migrated already.
    assert_eq!(pool.migrate().await.unwrap(), Vec::<String>::new());
}

on_each_backend!(
    opens_minimum_idle_connections,
    a_busy_pool_fails_fast_with_busy,
    a_cancelled_caller_does_not_leak_capacity,
    health_check_pings_the_database,
    migrations_are_idempotent,
);

#[test]
fn an_invalid_config_is_refused_before_connecting() {
    let url = DatabaseUrl::parse("postgres://nobody@127.0.0.1:1/none").unwrap();
    let config = PoolConfig {
        minimum_idle: Some(20),
        ..PoolConfig::default()
    };
    let error = DbPool::build(&url, &config).unwrap_err();
    assert!(error.to_string().contains("minimum_idle"), "{error}");
}

/// Start-up against an unreachable PostgreSQL fails within connection_timeout and says why.
#[test]
fn an_unreachable_database_fails_at_build_with_the_reason() {
    let url = DatabaseUrl::parse("postgres://postgres@127.0.0.1:1/marquee").unwrap();
    let started = Instant::now();
    let error = DbPool::build(&url, &quick_config()).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        matches!(error, PersistenceError::Unavailable { .. }),
        "{error}"
    );
    assert!(
        error.to_string().to_lowercase().contains("connect"),
        "{error}"
    );
}

/// A connection whose server side was killed is reported as lost (an outage, not a bug)
/// and is not handed out again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: set MARQUEE_TEST_DATABASE_URL"]
async fn a_killed_connection_is_discarded() {
    use diesel::prelude::*;
    let db = TestDatabase::postgres();
    let config = PoolConfig {
        maximum_pool_size: 1,
        ..quick_config()
    };
    let pool = DbPool::build(db.url(), &config).unwrap();
    let pid: i32 = pool
        .run(|conn| {
            Ok(
                diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>(
                    "pg_backend_pid()",
                ))
                .get_result(conn)?,
            )
        })
        .await
        .unwrap();
    db.execute(&format!("SELECT pg_terminate_backend({pid})"));

    // Within the alive-bypass window the dead connection may be handed out once: the
    // failure must read as a lost connection.
    let first = pool
        .run(|conn| Ok(diesel::sql_query("SELECT 1").execute(conn)?))
        .await;
    if let Err(error) = &first {
        assert!(error.is_connection_lost(), "{error}");
        let domain: marquee_domain::RepositoryError =
            PersistenceError::from(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::ClosedConnection,
                Box::new(String::from("gone")),
            ))
            .into();
        assert!(matches!(
            domain,
            marquee_domain::RepositoryError::Unavailable { .. }
        ));
    }
    // After that, a fresh connection serves.
    let new_pid: i32 = pool
        .run(|conn| {
            Ok(
                diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>(
                    "pg_backend_pid()",
                ))
                .get_result(conn)?,
            )
        })
        .await
        .unwrap();
    assert_ne!(new_pid, pid);
}
