//! [`Application`]: the composition root. It builds each crate's part from [`Settings`] and
//! wires them together behind the domain's ports.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use marquee_api::booking::BookingPolicy;
use marquee_api::{AppState, CatalogueCache, Server, ServerHandle, ServerOptions};
use marquee_cache::{Cache, RedisLink};
use marquee_domain::{CatalogueRepository, HealthCheck};
use marquee_persistence::{Databases, DbPool, DieselBooking, DieselCatalogue};

use crate::settings::Settings;

/// The least time a waiting-room poll waits for Redis before asking the database.
const QUEUE_VIEW_PATIENCE: Duration = Duration::from_millis(500);

/// A built, listening application. Dropping it without running it closes the listener.
pub struct Application {
    port: u16,
    server: Server,
    pool: DbPool,
    /// The primary and the read replica, if any; `pool` is the primary.
    databases: Databases,
    cache: Cache,
    /// The background jobs' state and settings; they run while the server does.
    jobs: Jobs,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("port", &self.port)
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

/// Builds the database pool (blocking while the first connections open).
pub async fn connect_database(settings: &Settings) -> anyhow::Result<DbPool> {
    let url = settings.database_url()?;
    let config = settings.database.pool.clone();
    let timeouts = settings.session_timeouts();
    let redacted = url.redacted();
    tokio::task::spawn_blocking(move || DbPool::build_with(&url, &config, timeouts))
        .await
        .context("the database connector stopped")?
        .with_context(|| format!("cannot open the database at {redacted}"))
}

/// The primary `pool` and, with `database.replica_url`, the read replica with its lag
/// monitor (blocking while it samples the replica once and opens its pool).
pub async fn connect_replica(settings: &Settings, pool: DbPool) -> anyhow::Result<Databases> {
    let Some(replica) = settings.replica_config()? else {
        return Ok(Databases::from(pool));
    };
    let redacted = replica.url.redacted();
    let databases = tokio::task::spawn_blocking(move || Databases::with_replica(pool, replica))
        .await
        .context("the replica connector stopped")?
        .with_context(|| format!("cannot use the read replica at {redacted}"))?;
    let status = databases.replica_status();
    tracing::info!(
        replica = %redacted,
        usable = status.is_some_and(|status| status.usable),
        "read replica configured"
    );
    Ok(databases)
}

/// Wraps the catalogue repository before the cache is put in front of it (tests count
/// loads with it; the default leaves it as it is).
pub type CatalogueLayer =
    Box<dyn FnOnce(Arc<dyn CatalogueRepository>) -> Arc<dyn CatalogueRepository> + Send>;

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with(settings, Box::new(|repository| repository)).await
    }

    /// [`Application::build`], with `layer` around the catalogue repository.
    pub async fn build_with(settings: Settings, layer: CatalogueLayer) -> anyhow::Result<Self> {
        settings.check_serving_secret()?;
        // First, so that everything built below reports to it.
        let prometheus = crate::telemetry::prometheus();
        let pool = connect_database(&settings).await?;
        tracing::info!(
            backend = pool.backend().name(),
            max = pool.config().maximum_pool_size,
            "database pool open"
        );
        if settings.database.auto_migrate {
            let applied = pool
                .migrate()
                .await
                .context("cannot migrate the database")?;
            if !applied.is_empty() {
                tracing::info!(?applied, "migrations applied");
            }
        }
        if settings.database.seed_demo_if_empty
            && let Some(report) = pool
                .seed_demo_if_empty()
                .await
                .context("cannot seed the demo catalogue")?
        {
            tracing::info!(
                concerts = report.concerts,
                schedules = report.schedules,
                seats = report.seats,
                "demo catalogue created"
            );
        }

        let databases = connect_replica(&settings, pool.clone()).await?;
        let mut health_checks: Vec<Arc<dyn HealthCheck>> = vec![Arc::new(pool.clone())];
        if databases.replica_status().is_some() {
            health_checks.push(Arc::new(ReplicaHealth(databases.clone())));
        }
        let cache = match settings.redis_config() {
            Some(redis) => {
                let link = RedisLink::open(redis).context("invalid redis.url")?;
                if let Err(error) = link.ping().await {
                    // Not fatal: the cache fails open and the link reconnects by itself.
                    tracing::warn!(%error, "redis is unreachable; serving without it until it returns");
                }
                health_checks.push(Arc::new(RedisHealth(link.clone())));
                Cache::redis(settings.cache.clone(), link)
            }
            None => Cache::local(settings.cache.clone()),
        }
        .context("invalid cache settings")?;
        let repository = layer(Arc::new(DieselCatalogue::new(databases.clone())));
        let hold_for = chrono::TimeDelta::from_std(settings.booking.hold_duration)
            .context("invalid booking.hold_duration")?;
        let queue = if settings.queue.enabled {
            let view = match settings.redis_config() {
                Some(redis) => marquee_queue::QueueView::redis(marquee_queue::RedisViewConfig {
                    url: redis.url,
                    mode: redis.mode,
                    namespace: settings.cache.namespace.clone(),
                    // A poll that gives up on Redis asks the database, and at an opening
                    // thousands of polls a second asking it at once would take the pool
                    // from everyone: a poll waits for Redis at least half a second (a
                    // cache read, whose fall-back is bounded, waits `response_timeout`).
                    response_timeout: redis.response_timeout.max(QUEUE_VIEW_PATIENCE),
                    connection_timeout: redis.connection_timeout,
                })
                .context("invalid redis settings for the waiting room")?,
                None => marquee_queue::QueueView::local(),
            };
            Some(Arc::new(
                marquee_api::queue::WaitingRoom::new(
                    settings.queue.rules(),
                    Arc::new(marquee_persistence::DieselQueue::new(
                        databases.db_write().clone(),
                    )),
                    view,
                )
                .max_poll_interval(settings.queue.max_poll_interval),
            ))
        } else {
            None
        };
        let state = AppState {
            cache: CatalogueCache::new(&cache, &settings.cache_ttl, repository)
                .context("invalid cache_ttl settings")?,
            // Bookings are db_write: every hold, cancellation and payment, and every read of a
            // reservation (which must show the hold that was just made).
            booking: Arc::new(DieselBooking::new(
                databases.db_write().clone(),
                settings.booking.max_balance,
            )),
            booking_policy: BookingPolicy {
                hold: marquee_domain::HoldRules {
                    hold_for,
                    max_holds_per_schedule: i64::from(settings.booking.max_holds_per_schedule),
                    max_holds_per_user: i64::from(settings.booking.max_holds_per_user),
                    require_admission: settings.queue.enabled,
                },
                max_charge: settings.booking.max_charge,
            },
            tokens: settings.auth.tokens(),
            health_checks,
            queue: queue.clone(),
            metrics: {
                // Gauges that are read off their source when scraped.
                let databases = databases.clone();
                let process = metrics_process::Collector::default();
                process.describe();
                Arc::new(move || {
                    record_database_metrics(&databases);
                    process.collect();
                    prometheus.render()
                })
            },
        };

        let listener = listen(settings.bind_address()?)
            .with_context(|| format!("cannot listen on {}", settings.server.bind))?;
        let port = listener.local_addr()?.port();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let workers = http_workers(settings.server.workers, cpus);
        let shutdown_timeout = settings.server.shutdown_timeout;
        let jobs = Jobs {
            queue,
            state: state.clone(),
            sweep_interval: settings.booking.sweep_interval,
            idempotency_retention: settings.booking.idempotency_retention,
        };
        let server = marquee_api::serve(
            state,
            listener,
            ServerOptions {
                workers,
                shutdown_timeout,
            },
        )?;
        tracing::info!(port, workers, "listening");
        Ok(Self {
            port,
            server,
            pool,
            databases,
            cache,
            jobs,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The database pool, for tests and operational commands.
    pub fn pool(&self) -> &DbPool {
        &self.pool
    }

    /// The primary and the read replica, for tests.
    pub fn databases(&self) -> &Databases {
        &self.databases
    }

    /// The cache engine, for tests and operational commands.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until SIGINT or SIGTERM, then stops accepting connections, lets in-flight
    /// requests finish (up to `server.shutdown_timeout`), and closes the pools.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let jobs = self.jobs;
        let sweeper = tokio::spawn(sweep_expired_holds(jobs.state.clone(), jobs.sweep_interval));
        let admitter = jobs
            .queue
            .map(|room| tokio::spawn(run_admission_rounds(room)));
        let purger = tokio::spawn(purge_idempotency_keys(
            jobs.state,
            jobs.idempotency_retention,
        ));
        let stopper = tokio::spawn(async move {
            wait_for_stop_signal().await;
            tracing::info!("stop signal received; draining in-flight requests");
            let draining = handle.stop(true);
            tokio::select! {
                () = draining => {}
                code = wait_for_stop_signal() => {
                    // actix would only act on a forced stop after the drain ends; an operator
                    // who signals twice wants out now.
                    tracing::warn!("second stop signal; exiting without draining");
                    std::process::exit(code);
                }
            }
        });
        self.server.await.context("the HTTP server failed")?;
        stopper.abort();
        sweeper.abort();
        purger.abort();
        if let Some(admitter) = admitter {
            admitter.abort();
        }
        // A transaction still running (an aborted job's: the pool's threads run work to its
        // end) finishes first rather than being cut off by the exit. Closing connections
        // blocks, and a hung database must not hold up the exit: close them on a detached
        // thread (which the runtime's shutdown does not wait for). Both within 5 s in all.
        let started = tokio::time::Instant::now();
        self.pool.wait_until_idle(SHUTDOWN_CLOSE_WAIT).await;
        let pool = self.pool;
        let databases = self.databases;
        let (closed, on_closed) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            drop(pool);
            drop(databases);
            let _ = closed.send(());
        });
        let _ = tokio::time::timeout_at(started + SHUTDOWN_CLOSE_WAIT, on_closed).await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// How long a stopping server waits for its database work to end and its connections to
/// close.
const SHUTDOWN_CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Waits for SIGINT or SIGTERM; returns the conventional exit code for it (128 + signal).
async fn wait_for_stop_signal() -> i32 {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(mut interrupt), Ok(mut terminate)) => {
                tokio::select! {
                    _ = interrupt.recv() => 130,
                    _ = terminate.recv() => 143,
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
                130
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        130
    }
}

/// What the background jobs need.
struct Jobs {
    /// The waiting room, whose admission rounds run while the server does.
    queue: Option<Arc<marquee_api::queue::WaitingRoom>>,
    state: AppState,
    sweep_interval: Duration,
    idempotency_retention: Duration,
}

/// Deletes idempotency keys older than `retention`, so that the table holds about a
/// retention's worth of keys instead of growing without bound. It runs every tenth of the
/// retention (between 1 s and a minute), so a key outlives its retention by at most that;
/// the delete goes by the `created_at` index. Each instance runs one; a key deleted twice is
/// deleted once.
async fn purge_idempotency_keys(state: AppState, retention: Duration) {
    let every = (retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let Ok(retention) = chrono::TimeDelta::from_std(retention) else {
        tracing::error!(?retention, "booking.idempotency_retention is out of range");
        return;
    };
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(before) = chrono::Utc::now().checked_sub_signed(retention) else {
            continue;
        };
        match state.booking.purge_idempotency_keys(before).await {
            Ok(0) => {}
            Ok(purged) => tracing::debug!(purged, "expired idempotency keys purged"),
            Err(error) => tracing::warn!(%error, "purging idempotency keys failed"),
        }
    }
}

/// Runs the waiting room's admission rounds every `ROUND_EVERY`. A failing round (the
/// database is down) is logged once when it starts failing and once when it recovers, not
/// ten times a second.
async fn run_admission_rounds(room: Arc<marquee_api::queue::WaitingRoom>) {
    let mut ticks = tokio::time::interval(marquee_api::queue::ROUND_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        ticks.tick().await;
        match marquee_api::queue::admission_round(&room).await {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("waiting room admission rounds recovered");
            }
            Ok(()) => {}
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(%error, "waiting room admission round failed; retrying");
            }
            Err(_) => {}
        }
    }
}

/// Writes expired holds back as free seats every `interval`, and drops their cached
/// listings. Each instance runs one; they race harmlessly (the update is conditional).
async fn sweep_expired_holds(state: AppState, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match marquee_api::booking::sweep_expired_holds(&state).await {
            Ok(0) => {}
            Ok(schedules) => tracing::debug!(schedules, "expired holds freed"),
            Err(error) => tracing::warn!(%error, "sweeping expired holds failed"),
        }
    }
}

/// Sets both pools' `hikaricp_*` gauges (`pool="marquee"` and `pool="replica"`) and the
/// replica's lag gauges, when metrics are scraped.
fn record_database_metrics(databases: &Databases) {
    databases.record_metrics();
    if let Some(status) = databases.replica_status() {
        metrics::gauge!(crate::telemetry::REPLICA_USABLE).set(if status.usable {
            1.0
        } else {
            0.0
        });
        metrics::gauge!(crate::telemetry::REPLICA_LAG)
            .set(status.lag.map_or(f64::NAN, |lag| lag.as_secs_f64()));
    }
}

/// Readiness of the read replica, as the lag monitor last saw it.
#[derive(Debug)]
struct ReplicaHealth(Databases);

#[async_trait]
impl HealthCheck for ReplicaHealth {
    fn name(&self) -> &'static str {
        "replica"
    }

    /// Every read the replica takes can go to the primary: a replica that is down or behind
    /// makes the instance degraded, not unready.
    fn critical(&self) -> bool {
        false
    }

    async fn check(&self) -> Result<(), String> {
        match self.0.replica_status() {
            Some(status) if status.usable => Ok(()),
            Some(status) if status.lag.is_some() => {
                Err("the read replica lags more than database.replica_max_lag".to_owned())
            }
            _ => Err("the read replica cannot be reached".to_owned()),
        }
    }
}

/// Readiness of Redis, through the cache crate's link.
#[derive(Debug)]
struct RedisHealth(RedisLink);

#[async_trait]
impl HealthCheck for RedisHealth {
    fn name(&self) -> &'static str {
        "redis"
    }

    /// Marquee serves from the database when Redis is gone. Taking every instance out of
    /// rotation on a Redis outage would turn a cache outage into a total one.
    fn critical(&self) -> bool {
        false
    }

    /// The reason given is generic, as for the database: readiness is often reachable from
    /// outside, and the client's message names hosts, ports and system errors. The full
    /// error is logged.
    async fn check(&self) -> Result<(), String> {
        self.0.ping().await.map_err(|error| {
            tracing::warn!(%error, "redis readiness check failed");
            "redis cannot be reached".to_owned()
        })
    }
}

/// Connections the kernel may hold for the server before it accepts them: actix's own
/// default, for when it binds the address itself. `std::net::TcpListener::bind` listens with
/// 128, and a ticket opening's burst of new connections overflowed that queue: the kernel
/// dropped the SYNs (`TcpExtListenOverflows`), and each client waited a second for its
/// retransmission. The kernel caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: i32 = 2048;

/// A listening socket on `address`, with [`LISTEN_BACKLOG`].
fn listen(address: std::net::SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    // As std and actix do: a restarted server can bind while old connections linger.
    socket.set_reuse_address(true)?;
    socket.bind(&address.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// The HTTP workers to start: `configured`, or for 0 one per CPU the process may use but one,
/// and at least one. The workers are not the only busy threads: every database call runs on a
/// blocking thread, and the database and Redis often share the machine. A worker per CPU left
/// them none; on two cores shared with PostgreSQL, Redis and the load generator, the mixed
/// load's lookups had a p99 of 3.9 times the floor server's with one worker, and 5.9 times
/// with two (the medians of 10 and 7 pairs; docs/performance.md, "One HTTP worker on two
/// cores").
fn http_workers(configured: usize, cpus: usize) -> usize {
    match configured {
        0 => cpus.saturating_sub(1).max(1),
        n => n,
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpStream;
    use std::time::Duration;

    #[test]
    fn zero_workers_is_one_per_cpu_but_one() {
        assert_eq!(super::http_workers(0, 1), 1);
        assert_eq!(super::http_workers(0, 2), 1);
        assert_eq!(super::http_workers(0, 8), 7);
        assert_eq!(super::http_workers(3, 8), 3);
        assert_eq!(super::http_workers(4, 1), 4);
    }

    /// 300 connections that nobody accepts yet all complete: the kernel queues them. With
    /// std's backlog of 128 the 130th waits for a SYN retransmission, past the timeout.
    /// (Fewer where the kernel caps backlogs lower, `net.core.somaxconn`.)
    #[test]
    fn the_listener_queues_a_burst_of_connections() {
        let cap: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(4096);
        let burst = cap.min(300);
        let listener = super::listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let address = listener.local_addr().unwrap();
        let mut waiting = Vec::new();
        for n in 0..burst {
            match TcpStream::connect_timeout(&address, Duration::from_millis(500)) {
                Ok(stream) => waiting.push(stream),
                Err(error) => panic!("connection {n} not queued: {error}"),
            }
        }
        assert_eq!(waiting.len(), burst);
    }
}
