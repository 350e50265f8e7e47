//! marquee-pool against real SQLite files (bundled SQLite, no server needed): bounded waits,
//! the right error for the right trouble, HikariCP's sizing, and no broken connection handed
//! out twice.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod connections;
mod errors;
mod waits;

use std::time::Duration;

use diesel::SqliteConnection;
use marquee_pool::{Pool, PoolConfig, PoolError, UrlConnector};

/// A pool on a SQLite file in a temporary folder, removed when the folder is dropped.
pub fn sqlite_pool(
    config: PoolConfig,
) -> (tempfile::TempDir, Pool<UrlConnector<SqliteConnection>>) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pool.sqlite3");
    let pool = Pool::build(UrlConnector::new(file.to_string_lossy()), &config).unwrap();
    (dir, pool)
}

/// A small pool with short timeouts, so failure tests finish quickly.
pub fn quick_config() -> PoolConfig {
    PoolConfig {
        maximum_pool_size: 2,
        connection_timeout: Duration::from_millis(500),
        validation_timeout: Duration::from_millis(250),
        ..PoolConfig::default()
    }
}

/// A caller's error type, as a service would have one: its own refusals, the pool's failures
/// and diesel's.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("refused: {0}")]
    Refused(&'static str),
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error("query failed: {0}")]
    Query(#[from] diesel::result::Error),
}
