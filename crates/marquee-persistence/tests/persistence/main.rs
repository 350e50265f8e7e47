//! marquee-persistence against real databases: SQLite always, PostgreSQL when
//! `MARQUEE_TEST_DATABASE_URL` is set. Every test runs on each backend in its own database.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod booking;
mod catalogue;
mod locks;
mod pool;
mod seed;

use marquee_persistence::test_support::TestDatabase;
use marquee_persistence::{Backend, DbPool, PoolConfig};

/// A pool on a fresh migrated database of `backend`, or `None` where that backend is not
/// available (see `TestDatabase::postgres`).
pub fn pool_on(backend: Backend, config: PoolConfig) -> Option<(TestDatabase, DbPool)> {
    let db = TestDatabase::new(backend)?;
    let pool = DbPool::build(db.url(), &config).expect("the pool builds");
    Some((db, pool))
}

/// A small pool with short timeouts, so failure tests finish quickly.
pub fn quick_config() -> PoolConfig {
    PoolConfig {
        maximum_pool_size: 2,
        connection_timeout: std::time::Duration::from_millis(500),
        validation_timeout: std::time::Duration::from_millis(250),
        ..PoolConfig::default()
    }
}

#[macro_export]
macro_rules! on_each_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(marquee_persistence::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(marquee_persistence::Backend::Postgres).await
                }
            )*
        }
    };
}
