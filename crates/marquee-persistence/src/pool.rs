//! [`DbPool`]: an r2d2 pool run the way an async service needs it.
//!
//! diesel is synchronous, so every query runs on tokio's blocking thread pool, never on the
//! async executor. A semaphore with one permit per connection sits in front of r2d2: a
//! request waits for a permit asynchronously (holding no thread), and only a request that
//! holds one moves to a blocking thread, where a connection is then free. Without it, a burst
//! of N requests would park N blocking threads inside `r2d2::Pool::get`, and tokio's limit
//! of 512 such threads would become the real queue.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use diesel::connection::SimpleConnection;
use marquee_domain::HealthCheck;
use tokio::sync::Semaphore;

use crate::config::{PoolConfig, SessionTimeouts};
use crate::connection::{Backend, ConnectionManager, DatabaseUrl, DbConnection};
use crate::error::PersistenceError;

/// A cloneable handle on the pool.
#[derive(Clone, Debug)]
pub struct DbPool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: r2d2::Pool<ConnectionManager>,
    permits: Arc<Semaphore>,
    /// Requests waiting for a permit: HikariCP's "pending" threads.
    pending: AtomicUsize,
    config: PoolConfig,
    timeouts: SessionTimeouts,
    backend: Backend,
    last_error: Arc<LastError>,
}

/// A snapshot of the pool, named as HikariCP's metrics are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolState {
    /// Open connections, busy or idle.
    pub connections: u32,
    /// Open connections not in use.
    pub idle: u32,
    /// Connections in use.
    pub active: u32,
    /// Requests waiting for a connection.
    pub pending: u32,
    pub max: u32,
    pub min: u32,
}

/// The most recent failure to open a connection, so that a checkout that times out can say
/// *why* (the database is down) rather than only that it waited.
#[derive(Debug, Default)]
struct LastError(Mutex<Option<(Instant, String)>>);

impl LastError {
    fn record(&self, message: String) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some((Instant::now(), message));
        }
    }

    fn since(&self, start: Instant) -> Option<String> {
        let slot = self.0.lock().ok()?;
        slot.as_ref()
            .filter(|(at, _)| *at >= start)
            .map(|(_, message)| message.clone())
    }
}

impl r2d2::HandleError<diesel::r2d2::Error> for LastError {
    fn handle_error(&self, error: diesel::r2d2::Error) {
        match error {
            // r2d2 reports a failed connect here...
            diesel::r2d2::Error::ConnectionError(error) => {
                tracing::warn!(%error, "could not open a database connection");
                self.record(error.to_string());
            }
            // ...and also a connection refused at checkout (retired for age, or a failed
            // ping), which r2d2 replaces with a fresh one: routine, not an outage.
            diesel::r2d2::Error::QueryError(error) => {
                tracing::debug!(%error, "discarded a pooled connection");
            }
        }
    }
}

/// r2d2 wants the handler boxed and owned; this forwards to the shared [`LastError`].
#[derive(Debug)]
struct ForwardErrors(Arc<LastError>);

impl r2d2::HandleError<diesel::r2d2::Error> for ForwardErrors {
    fn handle_error(&self, error: diesel::r2d2::Error) {
        self.0.handle_error(error);
    }
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
        config.validate()?;
        timeouts.validate()?;
        let last_error = Arc::new(LastError::default());
        let manager = ConnectionManager {
            url: url.clone(),
            config: config.clone(),
            timeouts,
        };
        let max = config.maximum_pool_size;
        let min = config.min_idle();
        // HikariCP retires idle connections only above minimumIdle; r2d2 would close and
        // reopen them even in a fixed-size pool, so idle_timeout is passed on only when the
        // pool can shrink.
        let idle_timeout =
            (min < max && !config.idle_timeout.is_zero()).then_some(config.idle_timeout);
        // The jittered lifetime is enforced at checkout and return (ConnectionManager); r2d2's
        // own reaper, which runs every 30 s, is the backstop for connections that stay idle.
        let max_lifetime = (!config.max_lifetime.is_zero()).then_some(config.max_lifetime);
        if url.backend() == Backend::Sqlite {
            // Switching a new SQLite file to WAL takes a lock; doing it once here keeps the
            // pool's connections from contending for it as they open together.
            drop(url.establish(config, &timeouts).map_err(|error| {
                PersistenceError::Unavailable {
                    reason: error.to_string(),
                }
            })?);
        }
        let started = Instant::now();
        let pool = r2d2::Pool::builder()
            .max_size(max)
            .min_idle(Some(min))
            .connection_timeout(config.connection_timeout)
            .idle_timeout(idle_timeout)
            .max_lifetime(max_lifetime)
            .test_on_check_out(true)
            .error_handler(Box::new(ForwardErrors(last_error.clone())))
            .event_handler(Box::new(crate::metrics::PoolEvents {
                pool: config.pool_name.clone(),
            }))
            .build(manager)
            .map_err(|error| PersistenceError::Unavailable {
                reason: last_error
                    .since(started)
                    .unwrap_or_else(|| error.to_string()),
            })?;
        if min == 0 {
            // With no idle connections `build` opened none; open one now so that a wrong URL
            // or a down database still stops start-up.
            drop(pool.get().map_err(|error| {
                PersistenceError::Unavailable {
                    reason: last_error
                        .since(started)
                        .unwrap_or_else(|| error.to_string()),
                }
            })?);
        }
        crate::metrics::register(&config.pool_name);
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                permits: Arc::new(Semaphore::new(max as usize)),
                pending: AtomicUsize::new(0),
                config: config.clone(),
                timeouts,
                backend: url.backend(),
                last_error,
            }),
        })
    }

    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    pub fn config(&self) -> &PoolConfig {
        &self.inner.config
    }

    pub fn timeouts(&self) -> SessionTimeouts {
        self.inner.timeouts
    }

    /// Sets the pool's gauges (`hikaricp_connections`, `_active`, `_idle`, `_pending`,
    /// `_max`, `_min`) from its current state. Call it when metrics are scraped.
    pub fn record_metrics(&self) {
        crate::metrics::state(&self.inner.config.pool_name, self.state());
    }

    pub fn state(&self) -> PoolState {
        let state = self.inner.pool.state();
        PoolState {
            connections: state.connections,
            idle: state.idle_connections,
            active: state.connections - state.idle_connections,
            pending: u32::try_from(self.inner.pending.load(Ordering::Relaxed)).unwrap_or(u32::MAX),
            max: self.inner.config.maximum_pool_size,
            min: self.inner.config.min_idle(),
        }
    }

    /// Runs `work` with a connection on a blocking thread.
    ///
    /// Waits at most `connection_timeout` for a connection, then fails with
    /// [`PersistenceError::Busy`] (or [`PersistenceError::Unavailable`] if connections could
    /// not be opened). If the caller's future is dropped, `work` still runs to the end and the
    /// connection is returned then: a query cannot be cut off halfway.
    pub async fn run<T, F>(&self, work: F) -> Result<T, PersistenceError>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, PersistenceError> + Send + 'static,
        T: Send + 'static,
    {
        let inner = &self.inner;
        let timeout = inner.config.connection_timeout;
        let started = Instant::now();

        inner.pending.fetch_add(1, Ordering::Relaxed);
        let permit = tokio::time::timeout(timeout, inner.permits.clone().acquire_owned()).await;
        inner.pending.fetch_sub(1, Ordering::Relaxed);
        let permit = match permit {
            Ok(Ok(permit)) => permit,
            // The semaphore is never closed; treat it as the pool being gone.
            Ok(Err(_closed)) => {
                return Err(PersistenceError::Unavailable {
                    reason: "the pool is shut down".into(),
                });
            }
            // Queued the whole time: the pool is saturated, unless connects were failing
            // meanwhile, in which case the database is the cause.
            Err(_elapsed) => {
                crate::metrics::timeout(&inner.config.pool_name);
                return Err(match inner.last_error.since(started) {
                    Some(reason) => PersistenceError::Unavailable { reason },
                    None => PersistenceError::Busy { waited: timeout },
                });
            }
        };

        let pool = inner.pool.clone();
        let last_error = inner.last_error.clone();
        let pool_name = inner.config.pool_name.clone();
        let remaining = timeout
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(1));
        // The blocking thread does not inherit the caller's span; enter it there, so that the
        // timing events below count toward the request that caused them.
        let span = tracing::Span::current();
        let task = tokio::task::spawn_blocking(move || {
            let _span = span.enter();
            // The permit lives as long as the connection is out, even if the caller is gone.
            let _permit = permit;
            let mut managed = pool.get_timeout(remaining).map_err(|_timed_out| {
                crate::metrics::timeout(&pool_name);
                match last_error.since(started) {
                    Some(reason) => PersistenceError::Unavailable { reason },
                    None => PersistenceError::Busy {
                        waited: started.elapsed(),
                    },
                }
            })?;
            let waited = started.elapsed();
            crate::metrics::acquired(&pool_name, waited);
            timing("pool_wait", waited);
            let querying = Instant::now();
            let result = work(&mut managed.conn);
            timing("query", querying.elapsed());
            if result
                .as_ref()
                .is_err_and(PersistenceError::is_connection_lost)
            {
                managed.lost = true;
            }
            result
        });

        let threshold = inner.config.leak_detection_threshold;
        let joined = if threshold.is_zero() {
            task.await
        } else {
            tokio::pin!(task);
            match tokio::time::timeout(threshold, &mut task).await {
                Ok(joined) => joined,
                Err(_) => {
                    tracing::warn!(
                        held_for = ?threshold,
                        "a database connection has been held longer than leak_detection_threshold"
                    );
                    task.await
                }
            }
        };
        match joined {
            Ok(result) => result,
            // A panic inside `work` is a bug; report it as a failed query rather than take the
            // worker down with it.
            Err(join_error) => Err(PersistenceError::Query(
                diesel::result::Error::QueryBuilderError(
                    format!("database task failed: {join_error}").into(),
                ),
            )),
        }
    }

    /// [`DbPool::run`] for an operator's bulk work (migrations, seeding), whose statements
    /// may rightly run longer than `statement_timeout`: on PostgreSQL the bound is lifted
    /// for `work` and set again after it. `lock_timeout` still applies: a migration queued
    /// behind a lock would hold up every request queued behind the migration.
    pub(crate) async fn run_bulk<T, F>(&self, work: F) -> Result<T, PersistenceError>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, PersistenceError> + Send + 'static,
        T: Send + 'static,
    {
        let timeouts = self.inner.timeouts;
        self.run(move |conn| {
            if !matches!(conn, DbConnection::Postgres(_)) {
                return work(conn);
            }
            conn.batch_execute("SET statement_timeout = 0;")?;
            let result = work(conn);
            // Set again even when `work` failed: the connection goes back to serving
            // requests. Should this fail, the link is almost surely gone, and the pool
            // discards the connection.
            let restored = conn.batch_execute(&format!(
                "SET statement_timeout = {};",
                timeouts.statement_timeout_ms()
            ));
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

    /// Pings through the pool. A pool too busy to lend a connection within
    /// `validation_timeout` is a database that is working hard, not one that is down: it
    /// counts as up unless opening connections has been failing meanwhile. Otherwise readiness
    /// would take every instance out of rotation exactly when load peaks.
    ///
    /// The reason given is generic: readiness is often reachable from outside, and the
    /// driver's message names hosts and ports. The full error is logged.
    async fn check(&self) -> Result<(), String> {
        let inner = &self.inner;
        let bound = inner.config.validation_timeout;
        let started = Instant::now();
        // Waiting for a permit means waiting for a busy pool.
        let permit = match tokio::time::timeout(bound, inner.permits.clone().acquire_owned()).await
        {
            Ok(Ok(permit)) => permit,
            Ok(Err(_closed)) => return Err("the pool is shut down".to_owned()),
            Err(_) => {
                return match inner.last_error.since(started) {
                    Some(reason) => {
                        tracing::warn!(error = %reason, "database readiness check failed");
                        Err("the database cannot be reached".to_owned())
                    }
                    None => Ok(()),
                };
            }
        };
        // With a permit a connection is free, so from here on any wait is the database's:
        // opening a connection, r2d2's validation ping, or this ping.
        let remaining = bound.saturating_sub(started.elapsed());
        let pool = inner.pool.clone();
        let ping = tokio::task::spawn_blocking(move || {
            use diesel::r2d2::R2D2Connection;
            let _permit = permit;
            let mut managed = pool
                .get_timeout(remaining.max(Duration::from_millis(1)))
                .map_err(|error| error.to_string())?;
            managed.conn.ping().map_err(|error| error.to_string())
        });
        let failed = match tokio::time::timeout(remaining, ping).await {
            Ok(Ok(Ok(()))) => return Ok(()),
            Ok(Ok(Err(error))) => error,
            Ok(Err(join_error)) => join_error.to_string(),
            Err(_) => format!("no answer within {bound:?}"),
        };
        tracing::warn!(error = %failed, "database readiness check failed");
        Err("the database cannot be reached".to_owned())
    }
}

/// Reports where a request's time went (read by the server's slow-request log).
fn timing(phase: &'static str, took: Duration) {
    tracing::trace!(
        target: "marquee::timing",
        phase,
        micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
    );
}
