//! marquee-persistence against real databases: SQLite always, PostgreSQL when asked for.
//! Every test runs on each backend in its own database. The PostgreSQL tests are ignored
//! unless run with `--include-ignored` and `MARQUEE_TEST_DATABASE_URL` set (see
//! `marquee_testkit::backends`); the read replica's (`replica`) start a private primary and
//! standby with the server programs `MARQUEE_TEST_PG_BIN` names.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod booking;
mod catalogue;
mod locks;
mod pool;
mod queue;
mod replica;
mod seed;

use std::sync::Arc;

use marquee_persistence::test_support::{MYSQL_URL_VAR, POSTGRES_URL_VAR, TestDatabase};
use marquee_persistence::{Backend, DbPool, PoolConfig};
// Test modules name it `crate::on_each_backend`.
use marquee_testkit::on_each_backend;

/// A pool on a fresh migrated database of `backend`.
pub fn pool_on(backend: Backend, config: PoolConfig) -> (TestDatabase, DbPool) {
    let db = TestDatabase::new(backend);
    let pool = DbPool::build(db.url(), &config).expect("the pool builds");
    (db, pool)
}

/// The instance user `u` goes through when users alternate between two instances: even
/// users the first, odd ones the second.
pub fn instance_for<T>(u: i64, first: &Arc<T>, second: &Arc<T>) -> Arc<T> {
    Arc::clone(if u % 2 == 0 { first } else { second })
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

/// The statements prepared on a PostgreSQL pool's connection (`pg_prepared_statements`): with
/// a pool of one connection, every statement diesel prepared and kept for reuse.
pub async fn prepared_statements(pool: &DbPool) -> Vec<String> {
    use diesel::prelude::*;

    #[derive(QueryableByName)]
    struct Prepared {
        #[diesel(sql_type = diesel::sql_types::Text)]
        statement: String,
    }
    pool.run(|conn| {
        let marquee_persistence::connection::DbConnection::Postgres(c) = conn else {
            unreachable!("a PostgreSQL pool");
        };
        Ok(
            diesel::sql_query("SELECT statement FROM pg_prepared_statements")
                .load::<Prepared>(c)?
                .into_iter()
                .map(|row| row.statement)
                .collect(),
        )
    })
    .await
    .expect("read the prepared statements")
}

marquee_testkit::backend_guards!(
    needs: [POSTGRES_URL_VAR, MYSQL_URL_VAR, marquee_testkit::PG_BIN_VAR],
    modules: ["postgres", "mysql", "replica"]
);
