//! [`DbPool`]: Marquee's database pool, a [`marquee_pool::Pool`] of [`DbConnection`]s.
//!
//! marquee-pool does the pooling (the semaphore front, the bounded waits, HikariCP's
//! connection hygiene and metrics); this adds what is Marquee's: the backend the URL picks,
//! the per-connection [`SessionTimeouts`], the timing events of the slow-request log,
//! migrations and seeding without `statement_timeout`, and the `database` health check.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use diesel::connection::SimpleConnection;
use marquee_domain::HealthCheck;
use marquee_pool::{Connector, Pool, PoolConfig, PoolError, PoolState};

use crate::config::SessionTimeouts;
use crate::connection::{Backend, DatabaseUrl, DbConnection, DbConnector};
use crate::error::PersistenceError;

/// A cloneable handle on the pool.
#[derive(Clone, Debug)]
pub struct DbPool {
    pool: Pool<DbConnector>,
    timeouts: SessionTimeouts,
    backend: Backend,
    url: DatabaseUrl,
}

impl DbPool {
    /// Validates `config`, opens `minimum_idle` connections, and returns the pool.
    ///
    /// Blocks the calling thread for up to `connection_timeout` while the first connections
    /// open; fails if they cannot, so a misconfigured service stops at start-up instead of
    /// answering 503 to everyone. Call it before the async runtime starts or from a blocking
    /// task.
    ///
    /// Its connections wait for locks and run statements within [`SessionTimeouts::default`];
    /// [`DbPool::build_with`] sets other bounds.
    pub fn build(url: &DatabaseUrl, config: &PoolConfig) -> Result<Self, PersistenceError> {
        Self::build_with(url, config, SessionTimeouts::default())
    }

    /// [`DbPool::build`], with `timeouts` applied to every connection the pool opens.
    pub fn build_with(
        url: &DatabaseUrl,
        config: &PoolConfig,
        timeouts: SessionTimeouts,
    ) -> Result<Self, PersistenceError> {
        config.validate().map_err(PoolError::Config)?;
        timeouts.validate()?;
        let connector = DbConnector {
            url: url.clone(),
            config: config.clone(),
            timeouts,
        };
        if url.backend() == Backend::Sqlite {
            // Switching a new SQLite file to WAL takes a lock; doing it once here keeps the
            // pool's connections from contending for it as they open together.
            drop(
                connector
                    .connect()
                    .map_err(|error| PoolError::Unavailable {
                        reason: error.to_string(),
                    })?,
            );
        }
        Ok(Self {
            pool: Pool::build(connector, config)?,
            timeouts,
            backend: url.backend(),
            url: url.clone(),
        })
    }

    /// The backend the URL named.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The database the pool connects to.
    pub fn url(&self) -> &DatabaseUrl {
        &self.url
    }

    /// The pool's settings.
    pub fn config(&self) -> &PoolConfig {
        self.pool.config()
    }

    /// The bounds every connection applies to its statements.
    pub fn timeouts(&self) -> SessionTimeouts {
        self.timeouts
    }

    /// Sets the pool's gauges (`hikaricp_connections`, `_active`, `_idle`, `_pending`,
    /// `_max`, `_min`) from its current state. Call it when metrics are scraped.
    pub fn record_metrics(&self) {
        self.pool.record_metrics();
    }

    /// The pool's current state, named as HikariCP's metrics are.
    pub fn state(&self) -> PoolState {
        self.pool.state()
    }

    /// Waits, at most `timeout`, until no work runs on the pool:
    /// [`marquee_pool::Pool::wait_until_idle`]. `true` if none does.
    pub async fn wait_until_idle(&self, timeout: Duration) -> bool {
        self.pool.wait_until_idle(timeout).await
    }

    /// Runs `work` with a connection on one of the pool's threads: [`marquee_pool::Pool::run`], which
    /// says how long it waits and what it answers when it cannot. The wait for the
    /// connection and the work are reported as the `pool_wait` and `query` timing events of
    /// the request.
    pub async fn run<T, F>(&self, work: F) -> Result<T, PersistenceError>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, PersistenceError> + Send + 'static,
        T: Send + 'static,
    {
        self.run_as(work).await
    }

    /// [`DbPool::run`] answering in the caller's error type `E`: a repository's refusals
    /// come back in it as they are, and the pool's failures through `From<PoolError>`.
    pub(crate) async fn run_as<T, E, F>(&self, work: F) -> Result<T, E>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<PoolError> + std::error::Error + Send + 'static,
    {
        let called = Instant::now();
        self.pool
            .run(move |conn| {
                timing("pool_wait", called.elapsed());
                let querying = Instant::now();
                let result = work(conn);
                timing("query", querying.elapsed());
                result
            })
            .await
    }

    /// [`DbPool::run`] for an operator's bulk work (migrations, seeding), whose statements
    /// may rightly run longer than `statement_timeout`: on PostgreSQL and MariaDB the bound
    /// is lifted for `work` and set again after it. `lock_timeout` still applies: a migration queued
    /// behind a lock would hold up every request queued behind the migration.
    pub(crate) async fn run_bulk<T, F>(&self, work: F) -> Result<T, PersistenceError>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, PersistenceError> + Send + 'static,
        T: Send + 'static,
    {
        let timeouts = self.timeouts;
        self.run(move |conn| {
            let (lift, restore) = match conn {
                DbConnection::Sqlite(_) => return work(conn),
                DbConnection::Postgres(_) => (
                    "SET statement_timeout = 0;".to_owned(),
                    format!(
                        "SET statement_timeout = {};",
                        timeouts.statement_timeout_ms()
                    ),
                ),
                DbConnection::Mysql(_) => (
                    "SET SESSION max_statement_time = 0;".to_owned(),
                    format!(
                        "SET SESSION max_statement_time = {};",
                        timeouts.statement_timeout.as_secs_f64()
                    ),
                ),
            };
            if let Err(error) = conn.batch_execute(&lift) {
                // MySQL 8 has no `max_statement_time`; its `max_execution_time` bounds
                // SELECTs only, which the bulk work does not run into.
                if matches!(conn, DbConnection::Mysql(_)) {
                    return work(conn);
                }
                return Err(error.into());
            }
            let result = work(conn);
            // Set again even when `work` failed: the connection goes back to serving
            // requests. Should this fail, the link is almost surely gone, and the pool
            // discards the connection.
            let restored = conn.batch_execute(&restore);
            let value = result?;
            restored?;
            Ok(value)
        })
        .await
    }

    /// Applies pending migrations for this pool's backend; returns the versions applied.
    pub async fn migrate(&self) -> Result<Vec<String>, PersistenceError> {
        self.run_bulk(crate::migrations::run_pending).await
    }
}

#[async_trait]
impl HealthCheck for DbPool {
    fn name(&self) -> &'static str {
        "database"
    }

    /// Pings through the pool, within `validation_timeout`
    /// ([`marquee_pool::Pool::check_health`]). A pool too busy to lend a connection counts
    /// as up unless opening connections has been failing meanwhile: otherwise readiness
    /// would take every instance out of rotation exactly when load peaks.
    ///
    /// The reason given is generic: readiness is often reachable from outside, and the
    /// driver's message names hosts and ports. The full error is logged.
    async fn check(&self) -> Result<(), String> {
        self.pool.check_health().await.map_err(|error| {
            tracing::warn!(%error, "database readiness check failed");
            "the database cannot be reached".to_owned()
        })
    }
}

/// Reports where a request's time went (read by the server's slow-request log).
fn timing(phase: &'static str, took: Duration) {
    tracing::trace!(
        target: crate::TIMING_TARGET,
        phase,
        micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
    );
}
