//! The caller's error type carries the caller's refusals; the pool's own failures are
//! `PoolError`s with their own variants, not borrowed diesel ones.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use diesel::SqliteConnection;
use diesel::prelude::*;
use marquee_pool::{Connector, Pool, PoolConfig, PoolError, UrlConnector};

use crate::{AppError, quick_config, sqlite_pool};

#[tokio::test]
async fn a_refusal_comes_back_in_the_callers_own_type() {
    let (_dir, pool) = sqlite_pool(quick_config());
    let refused = pool
        .run(|_| Err::<(), _>(AppError::Refused("seat taken")))
        .await;
    assert!(
        matches!(refused, Err(AppError::Refused("seat taken"))),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_panic_is_reported_as_panicked_not_as_a_query_error() {
    let (_dir, pool) = sqlite_pool(quick_config());
    let error = pool
        .run(|_| -> Result<(), AppError> { panic!("boom") })
        .await
        .unwrap_err();
    match error {
        AppError::Pool(PoolError::Panicked { message }) => {
            assert!(message.contains("boom"), "{message}");
        }
        other => panic!("expected Panicked, got {other:?}"),
    }
    // The worker survived, and the pool still serves.
    pool.run(|_| Ok::<_, AppError>(())).await.unwrap();
    assert_eq!(pool.state().active, 0);
}

#[test]
fn an_invalid_config_is_refused_before_connecting() {
    let config = PoolConfig {
        minimum_idle: Some(20),
        ..PoolConfig::default()
    };
    // The file's folder does not exist: connecting would fail, but validation comes first.
    let connector = UrlConnector::<SqliteConnection>::new("/nonexistent/folder/x.sqlite3");
    let error = Pool::build(connector, &config).unwrap_err();
    match &error {
        PoolError::Config(config) => assert_eq!(config.field, "minimum_idle"),
        other => panic!("expected Config, got {other:?}"),
    }
    assert!(error.to_string().contains("minimum_idle"), "{error}");
}

/// Start-up against a database that cannot be opened fails within connection_timeout and
/// says why, with the connector's own message.
#[test]
fn an_unreachable_database_fails_at_build_with_the_reason() {
    let connector = UrlConnector::<SqliteConnection>::new("/nonexistent/folder/x.sqlite3");
    let started = Instant::now();
    let error = Pool::build(connector, &quick_config()).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    match &error {
        PoolError::Unavailable { reason } => {
            assert!(reason.contains("unable to open database file"), "{reason}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

/// Opens SQLite connections until `down` is set, then fails as a database that went away.
#[derive(Debug)]
struct Switchable {
    file: String,
    down: Arc<AtomicBool>,
}

impl Connector for Switchable {
    type Connection = SqliteConnection;

    fn connect(&self) -> Result<SqliteConnection, diesel::ConnectionError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(diesel::ConnectionError::BadConnection(
                "connection refused".into(),
            ));
        }
        SqliteConnection::establish(&self.file)
    }
}

/// A pool of one whose connection is discarded while connects fail: a caller's wait ends in
/// `Unavailable` with the connector's reason, not in `Busy`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_during_failing_connects_ends_in_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let down = Arc::new(AtomicBool::new(false));
    let connector = Switchable {
        file: dir.path().join("x.sqlite3").to_string_lossy().into_owned(),
        down: down.clone(),
    };
    let config = PoolConfig {
        maximum_pool_size: 1,
        ..quick_config()
    };
    let pool = Pool::build(connector, &config).unwrap();
    down.store(true, Ordering::SeqCst);
    // A panic discards the one connection, and it cannot be opened again.
    let _ = pool
        .run(|_| -> Result<(), AppError> { panic!("discard") })
        .await;
    let started = Instant::now();
    let error = pool.run(|_| Ok::<_, AppError>(())).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        matches!(&error, AppError::Pool(PoolError::Unavailable { reason }) if reason == "connection refused"),
        "{error:?}"
    );
    assert!(pool.check_health().await.is_err());
    down.store(false, Ordering::SeqCst);
    // Once connects succeed again, so does the work.
    tokio::time::sleep(Duration::from_millis(300)).await;
    pool.run(|_| Ok::<_, AppError>(())).await.unwrap();
}
