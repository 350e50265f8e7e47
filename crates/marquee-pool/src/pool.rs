//! [`Pool`]: an r2d2 pool run the way an async service needs it.
//!
//! diesel is synchronous, so every unit of work runs on one of the pool's own threads
//! (`runner`), never on the async executor. A semaphore with one permit per connection sits
//! in front of r2d2: a caller waits for a permit asynchronously (holding no thread), and only
//! a caller that holds one moves to a thread, where a connection is then free. So the pool
//! never has more threads busy than connections, and never parks a thread inside
//! `r2d2::Pool::get` for a burst of callers.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel::r2d2::R2D2Connection;
use tokio::sync::Semaphore;

use crate::config::PoolConfig;
use crate::connector::Connector;
use crate::error::PoolError;
use crate::manager::{Manager, ManagerError};
use crate::runner::{RunError, Runners};
use crate::state::PoolState;

/// A cloneable handle on a pool of `K`'s connections; clones share one pool.
///
/// ```
/// use diesel::prelude::*;
/// use diesel::SqliteConnection;
/// use marquee_pool::{Pool, PoolConfig, PoolError, UrlConnector};
///
/// #[derive(Debug, thiserror::Error)]
/// enum AppError {
///     #[error(transparent)]
///     Pool(#[from] PoolError),
///     #[error("query failed: {0}")]
///     Query(#[from] diesel::result::Error),
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let file = dir.path().join("app.sqlite3");
/// let connector = UrlConnector::<SqliteConnection>::new(file.to_string_lossy());
/// let config = PoolConfig { maximum_pool_size: 2, ..PoolConfig::default() };
/// // `build` blocks while the first connections open: keep it off the async executor.
/// let pool = tokio::task::spawn_blocking(move || Pool::build(connector, &config)).await??;
///
/// let answer = pool
///     .run(|conn| {
///         diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>("6 * 7"))
///             .get_result::<i32>(conn)
///             .map_err(AppError::from)
///     })
///     .await?;
/// assert_eq!(answer, 42);
/// assert_eq!(pool.state().active, 0);
/// # Ok(())
/// # }
/// ```
pub struct Pool<K: Connector> {
    inner: Arc<Inner<K>>,
}

impl<K: Connector> Clone for Pool<K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<K: Connector> fmt::Debug for Pool<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("config", &self.inner.config)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

struct Inner<K: Connector> {
    pool: r2d2::Pool<Manager<K>>,
    permits: Arc<Semaphore>,
    /// Callers waiting for a permit: HikariCP's "pending" threads.
    pending: AtomicUsize,
    config: PoolConfig,
    last_error: Arc<LastError>,
    /// The threads the work runs on.
    runners: Runners,
}

impl From<RunError> for PoolError {
    fn from(error: RunError) -> Self {
        match error {
            RunError::Spawn(error) => Self::Unavailable {
                reason: format!("cannot start a thread for the work: {error}"),
            },
            RunError::Panicked(message) => Self::Panicked { message },
        }
    }
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

    /// The error a caller gets when its wait ran out: the database's fault if a connect
    /// failed since `start`, otherwise a saturated pool.
    fn timed_out(&self, start: Instant, waited: Duration) -> PoolError {
        match self.since(start) {
            Some(reason) => PoolError::Unavailable { reason },
            None => PoolError::Busy { waited },
        }
    }
}

/// r2d2 wants the handler boxed and owned; this forwards to the shared [`LastError`].
#[derive(Debug)]
struct ForwardErrors(Arc<LastError>);

impl r2d2::HandleError<ManagerError> for ForwardErrors {
    fn handle_error(&self, error: ManagerError) {
        match error {
            // r2d2 reports a failed connect here...
            ManagerError::Connect(error) => {
                tracing::warn!(%error, "could not open a database connection");
                self.0.record(error.to_string());
            }
            // ...and also a connection refused at checkout (retired for age, or a failed
            // ping), which r2d2 replaces with a fresh one: routine, not an outage.
            refused @ (ManagerError::Retired(_) | ManagerError::Ping(_)) => {
                tracing::debug!(error = %refused, "discarded a pooled connection");
            }
        }
    }
}

/// Whether `error`, or an error in its `source()` chain, is diesel's
/// `DatabaseError(ClosedConnection, _)`: the link is gone and the connection must not be
/// handed out again.
fn connection_lost(error: &(dyn std::error::Error + 'static)) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    let mut next = Some(error);
    while let Some(error) = next {
        if matches!(
            error.downcast_ref::<Error>(),
            Some(Error::DatabaseError(DatabaseErrorKind::ClosedConnection, _))
        ) {
            return true;
        }
        next = error.source();
    }
    false
}

impl<K: Connector> Pool<K> {
    /// Validates `config`, opens `minimum_idle` connections through `connector`, and returns
    /// the pool.
    ///
    /// Blocks the calling thread for up to `connection_timeout` while the first connections
    /// open, and fails with [`PoolError::Unavailable`] (the connector's last error) if they
    /// cannot, so that a misconfigured service stops at start-up instead of failing every
    /// request. With `minimum_idle = 0` it opens one connection and closes it again, for the
    /// same reason. Call it before the async runtime starts or from a blocking task.
    pub fn build(connector: K, config: &PoolConfig) -> Result<Self, PoolError> {
        config.validate()?;
        let last_error = Arc::new(LastError::default());
        let max = config.maximum_pool_size;
        let min = config.min_idle();
        // HikariCP retires idle connections only above minimumIdle; r2d2 would close and
        // reopen them even in a fixed-size pool, so idle_timeout is passed on only when the
        // pool can shrink.
        let idle_timeout =
            (min < max && !config.idle_timeout.is_zero()).then_some(config.idle_timeout);
        // The jittered lifetime is enforced at checkout and return (Manager); r2d2's own
        // reaper, which runs every 30 s, is the backstop for connections that stay idle.
        let max_lifetime = (!config.max_lifetime.is_zero()).then_some(config.max_lifetime);
        let started = Instant::now();
        let unavailable = |error: r2d2::Error| PoolError::Unavailable {
            reason: last_error
                .since(started)
                .unwrap_or_else(|| error.to_string()),
        };
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
            .build(Manager {
                connector,
                config: config.clone(),
            })
            .map_err(unavailable)?;
        if min == 0 {
            // With no idle connections `build` opened none; open one now so that a wrong URL
            // or a down database still stops start-up.
            drop(pool.get().map_err(unavailable)?);
        }
        crate::metrics::register(&config.pool_name);
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                permits: Arc::new(Semaphore::new(max as usize)),
                pending: AtomicUsize::new(0),
                config: config.clone(),
                last_error,
                runners: Runners::new(&config.pool_name),
            }),
        })
    }

    /// The settings the pool was built with.
    pub fn config(&self) -> &PoolConfig {
        &self.inner.config
    }

    /// The pool's current state: open, idle and active connections, and waiting callers.
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

    /// Sets the pool's gauges ([`metrics::CONNECTIONS`](crate::metrics::CONNECTIONS),
    /// `_active`, `_idle`, `_pending`, `_max`, `_min`) from its current state. Call it when
    /// metrics are scraped.
    pub fn record_metrics(&self) {
        crate::metrics::state(&self.inner.config.pool_name, self.state());
    }

    /// Runs `work` with a connection on one of the pool's threads (named `{pool_name}-db`),
    /// and returns what it returns.
    ///
    /// - The wait for a connection is bounded by `connection_timeout`. When it runs out, the
    ///   call fails with [`PoolError::Unavailable`] if opening a connection failed at any
    ///   point since the call began (the reason is the last such failure), and with
    ///   [`PoolError::Busy`] otherwise: the pool was only saturated.
    /// - `E` is the caller's error type: `work`'s refusals and the pool's failures come back
    ///   in it. If `work` fails with an error whose `source()` chain holds diesel's
    ///   `DatabaseError(ClosedConnection, _)`, the connection is discarded rather than
    ///   returned: diesel's own broken-connection check only looks at the transaction state.
    /// - If the caller's future is dropped, `work` still runs to the end and the connection is
    ///   returned then: a query is never cut off halfway.
    /// - A panic inside `work` is returned as [`PoolError::Panicked`], and the connection it
    ///   held is discarded.
    /// - `work` runs inside the caller's tracing span.
    /// - With `leak_detection_threshold` set, work that holds its connection longer is
    ///   reported with a warning while it still runs.
    pub async fn run<T, E, F>(&self, work: F) -> Result<T, E>
    where
        F: FnOnce(&mut K::Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<PoolError> + std::error::Error + Send + 'static,
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
                return Err(PoolError::Unavailable {
                    reason: "the pool is shut down".into(),
                }
                .into());
            }
            Err(_elapsed) => {
                crate::metrics::timeout(&inner.config.pool_name);
                return Err(inner.last_error.timed_out(started, timeout).into());
            }
        };

        let pool = inner.pool.clone();
        let last_error = inner.last_error.clone();
        let pool_name = inner.config.pool_name.clone();
        let remaining = timeout
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(1));
        // The pool's thread does not inherit the caller's span; enter it there, so that
        // what `work` logs is attributed to the request that caused it.
        let span = tracing::Span::current();
        let task = inner.runners.run(move || {
            let _span = span.enter();
            // The permit lives as long as the connection is out, even if the caller is gone.
            let _permit = permit;
            let mut managed = pool.get_timeout(remaining).map_err(|_timed_out| {
                crate::metrics::timeout(&pool_name);
                last_error.timed_out(started, started.elapsed())
            })?;
            crate::metrics::acquired(&pool_name, started.elapsed());
            // Stays set if `work` panics: a connection abandoned halfway through its work
            // (perhaps inside a transaction) is not handed out again.
            managed.lost = true;
            let result = work(&mut managed.conn);
            managed.lost = result
                .as_ref()
                .err()
                .is_some_and(|error| connection_lost(error));
            Ok::<_, PoolError>(result)
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
                        pool = %inner.config.pool_name,
                        held_for = ?threshold,
                        "a database connection has been held longer than leak_detection_threshold"
                    );
                    task.await
                }
            }
        };
        match joined {
            Ok(Ok(result)) => result,
            Ok(Err(pool_error)) => Err(pool_error.into()),
            Err(run_error) => Err(PoolError::from(run_error).into()),
        }
    }

    /// Waits, at most `timeout`, until no work runs on the pool, and says whether none does.
    ///
    /// Work whose caller went away still runs to its end on the pool's threads, and an async
    /// runtime's shutdown does not wait for those threads: a service that stops calls this
    /// before dropping its last handle, so that a transaction still running commits or rolls
    /// back by itself rather than being cut off by the process's exit. It waits for every
    /// permit to come back, so it waits for callers already queued for one as well.
    pub async fn wait_until_idle(&self, timeout: Duration) -> bool {
        let all = self.inner.config.maximum_pool_size;
        let every_permit = self.inner.permits.acquire_many(all);
        matches!(tokio::time::timeout(timeout, every_permit).await, Ok(Ok(_)))
    }

    /// Checks that the database answers, within `validation_timeout` in all.
    ///
    /// It pings a pooled connection. A pool too busy to lend one within the bound is a
    /// database that is working hard, not one that is down: that counts as `Ok`, unless
    /// opening a connection failed meanwhile. A readiness probe built on it therefore does not
    /// take every instance out of rotation exactly when load peaks.
    ///
    /// The error names the failure in full (the driver's message can name hosts and ports):
    /// log it, and show less where the answer is public.
    pub async fn check_health(&self) -> Result<(), PoolError> {
        let inner = &self.inner;
        let bound = inner.config.validation_timeout;
        let started = Instant::now();
        let unavailable = |reason: String| Err(PoolError::Unavailable { reason });
        // Waiting for a permit means waiting for a busy pool.
        let permit = match tokio::time::timeout(bound, inner.permits.clone().acquire_owned()).await
        {
            Ok(Ok(permit)) => permit,
            Ok(Err(_closed)) => return unavailable("the pool is shut down".to_owned()),
            Err(_) => {
                return match inner.last_error.since(started) {
                    Some(reason) => unavailable(reason),
                    None => Ok(()),
                };
            }
        };
        // With a permit a connection is free, so from here on any wait is the database's:
        // opening a connection, r2d2's validation ping, or this ping.
        let remaining = bound.saturating_sub(started.elapsed());
        let pool = inner.pool.clone();
        let ping = inner.runners.run(move || {
            let _permit = permit;
            let mut managed = pool
                .get_timeout(remaining.max(Duration::from_millis(1)))
                .map_err(|error| error.to_string())?;
            managed.conn.ping().map_err(|error| error.to_string())
        });
        match tokio::time::timeout(remaining, ping).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(error))) => unavailable(error),
            Ok(Err(run_error)) => unavailable(PoolError::from(run_error).to_string()),
            Err(_) => unavailable(format!("no answer within {bound:?}")),
        }
    }
}
