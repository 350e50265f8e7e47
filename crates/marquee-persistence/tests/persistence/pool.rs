//! Marquee's pool on both backends: the pool's failures read as the domain's, the health
//! check, migrations, and no dead PostgreSQL connection handed out twice. The pool's own
//! promises (bounded waits, sizing, which connections are kept) are marquee-pool's tests.

use std::time::{Duration, Instant};

use marquee_domain::{BusyCause, RepositoryError};
use marquee_persistence::test_support::TestDatabase;
use marquee_persistence::{Backend, DatabaseUrl, DbPool, PersistenceError, PoolConfig, PoolError};

use crate::{on_each_backend, pool_on, quick_config};

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

/// A busy pool reads as the domain's `Busy` with the wait as its cause (503 `database-busy`).
async fn a_busy_pool_is_a_connection_wait(backend: Backend) {
    let (_db, pool) = pool_on(backend, quick_config());
    let holders: Vec<_> = (0..2)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                pool.run(|_| {
                    std::thread::sleep(Duration::from_millis(800));
                    Ok::<_, PersistenceError>(())
                })
                .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let error = pool
        .run(|_| Ok::<_, PersistenceError>(()))
        .await
        .unwrap_err();
    assert!(
        matches!(error, PersistenceError::Pool(PoolError::Busy { .. })),
        "{error}"
    );
    assert!(matches!(
        RepositoryError::from(error),
        RepositoryError::Busy {
            cause: BusyCause::ConnectionWait { .. }
        }
    ));
    for holder in holders {
        holder.await.unwrap().unwrap();
    }
}

/// A panic inside the work is the pool's `Panicked`, not a borrowed diesel variant, and
/// reads as an internal error (500), not as contention or an outage.
async fn a_panic_is_a_pool_failure_not_a_query_error(backend: Backend) {
    let (_db, pool) = pool_on(backend, quick_config());
    let error = pool
        .run(|_| -> Result<(), PersistenceError> { panic!("boom") })
        .await
        .unwrap_err();
    assert!(
        matches!(error, PersistenceError::Pool(PoolError::Panicked { .. })),
        "{error:?}"
    );
    assert!(matches!(
        RepositoryError::from(error),
        RepositoryError::Query { .. }
    ));
    pool.run(|_| Ok::<_, PersistenceError>(())).await.unwrap();
}

on_each_backend!(
    a_busy_pool_is_a_connection_wait,
    a_panic_is_a_pool_failure_not_a_query_error,
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
        matches!(error, PersistenceError::Pool(PoolError::Unavailable { .. })),
        "{error}"
    );
    assert!(
        error.to_string().to_lowercase().contains("connect"),
        "{error}"
    );
}

/// The PostgreSQL server process behind the connection `pool` hands out.
async fn backend_pid(pool: &DbPool) -> i32 {
    use diesel::prelude::*;
    pool.run(|conn| -> Result<_, PersistenceError> {
        Ok(
            diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>(
                "pg_backend_pid()",
            ))
            .get_result(conn)?,
        )
    })
    .await
    .unwrap()
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
    let pid: i32 = backend_pid(&pool).await;
    db.execute(&format!("SELECT pg_terminate_backend({pid})"));

    // Within the alive-bypass window the dead connection may be handed out once: the
    // failure must read as a lost connection.
    let first = pool
        .run(|conn| -> Result<_, PersistenceError> {
            Ok(diesel::sql_query("SELECT 1").execute(conn)?)
        })
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
    let new_pid: i32 = backend_pid(&pool).await;
    assert_ne!(new_pid, pid);
}
