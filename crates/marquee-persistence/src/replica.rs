//! [`Databases`]: the primary and, optionally, a PostgreSQL streaming replica, and which of
//! them each read goes to: `db_write`, `db_read` and `db_read_prefer_primary`, named after
//! crates.io's.
//!
//! - [`Databases::db_write`] is the primary: every write, every transaction, and every read
//!   that must see a write that just happened (a reservation right after its hold).
//! - [`Databases::db_read`] reads the replica while it is *usable* (reachable, and its lag
//!   at most `max_lag`), else the primary. For data that may be `max_lag` old: the concerts.
//! - [`Databases::db_read_prefer_primary`] reads the primary's state: the replica only when it
//!   is usable *and* has replayed the WAL position the primary reported after the read began
//!   (the fence), else the primary. For seat states, which every hold changes: a load that
//!   begins after a write's cache eviction sees that write wherever it reads (ARCHITECTURE.md,
//!   "Read replicas"). Unlike crates.io's, it never falls back to an unfenced replica when
//!   the primary is down: a seat state read there could be one the primary had already
//!   changed.
//!
//! A background thread samples both servers every [`SAMPLE_EVERY`] on connections of its
//! own (never the pools', so a saturated pool cannot stall the measure, and a replica that
//! is down costs no request a connect): the primary's `pg_current_wal_lsn()`, then the
//! replica's `pg_last_wal_replay_lsn()`. The lag is how long ago the primary had written
//! only what the replica has now replayed: 0 when the replica has replayed the primary's
//! latest sample, otherwise the age of the newest sample it has replayed. Unlike
//! `now() - pg_last_xact_replay_timestamp()`, it does not grow while the primary is idle, and
//! unlike comparing the replica's receive and replay positions, it sees a replica whose WAL
//! stopped arriving. The requests read one atomic flag.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::sql_types::{Bool, Nullable, Text};
use marquee_pool::{PoolConfig, PoolError};

use crate::config::SessionTimeouts;
use crate::connection::{Backend, DatabaseUrl, DbConnection};
use crate::error::PersistenceError;
use crate::pool::DbPool;

/// How often the replica's lag is measured: the resolution of the lag, and about how long a
/// replica that stopped answering or fell behind keeps getting reads.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(250);

/// The `pool` label of the replica pool's metrics.
pub const REPLICA_POOL_NAME: &str = "replica";

/// The samples of the primary's WAL position kept: a minute's worth. A replica further
/// behind reads as a minute behind, far past any sensible `max_lag`.
const KEPT_SAMPLES: usize = 240;

/// The replica pool's bound on a checkout (and, through libpq, on a connect), at most: a
/// read that cannot get a replica connection has the primary to go to, so it should not
/// wait the primary's `connection_timeout` (30 s by default) for one.
const REPLICA_CONNECTION_TIMEOUT: Duration = Duration::from_secs(1);
/// The replica pool's `validation_timeout`, at most; below [`REPLICA_CONNECTION_TIMEOUT`].
const REPLICA_VALIDATION_TIMEOUT: Duration = Duration::from_millis(500);

/// A replica's settings.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    /// A PostgreSQL hot standby of the primary.
    pub url: DatabaseUrl,
    /// The replica pool's settings: see [`ReplicaConfig::new`].
    pub pool: PoolConfig,
    /// The replica is not read while its lag is above this.
    pub max_lag: Duration,
}

impl ReplicaConfig {
    /// The replica at `url`, read through a pool like the primary's (`primary`): the same
    /// size, lifetimes and idle rules, so the replica takes the load the primary would have
    /// taken, but named [`REPLICA_POOL_NAME`], and with `connection_timeout` at most 1 s and
    /// `validation_timeout` at most 500 ms, because a read that cannot get a replica
    /// connection soon goes to the primary instead.
    pub fn new(url: DatabaseUrl, primary: &PoolConfig, max_lag: Duration) -> Self {
        let mut pool = primary.clone();
        pool.pool_name = REPLICA_POOL_NAME.to_owned();
        pool.connection_timeout = pool.connection_timeout.min(REPLICA_CONNECTION_TIMEOUT);
        pool.validation_timeout = pool.validation_timeout.min(REPLICA_VALIDATION_TIMEOUT);
        Self { url, pool, max_lag }
    }
}

/// What the lag monitor last saw of the replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaStatus {
    /// Reads go to the replica: it answered the last sample, its lag is at most `max_lag`,
    /// and its pool is open.
    pub usable: bool,
    /// The lag last measured; `None` while the replica does not answer.
    pub lag: Option<Duration>,
}

/// The primary, and the replica when there is one. Cloning shares both.
#[derive(Clone, Debug)]
pub struct Databases {
    primary: DbPool,
    replica: Option<Arc<Replica>>,
}

impl From<DbPool> for Databases {
    /// The primary alone: every read goes to it.
    fn from(primary: DbPool) -> Self {
        Self {
            primary,
            replica: None,
        }
    }
}

#[derive(Debug)]
struct Replica {
    config: ReplicaConfig,
    timeouts: SessionTimeouts,
    /// Opened when the replica first answers: a replica that is down at start-up must not
    /// stop the service, whose primary can serve every read.
    pool: OnceLock<DbPool>,
    usable: AtomicBool,
    /// The last lag measured, in microseconds; `u64::MAX` while the replica does not answer.
    lag_micros: AtomicU64,
}

impl Databases {
    /// The primary and the replica `config` names, with the lag monitor started.
    ///
    /// Blocks while it samples both servers once and opens the replica pool (so call it from
    /// a blocking task); a replica that does not answer is no error: reads go to the primary
    /// until it does. Refused unless both are PostgreSQL: the lag measure is PostgreSQL's.
    pub fn with_replica(primary: DbPool, config: ReplicaConfig) -> Result<Self, PersistenceError> {
        if primary.backend() != Backend::Postgres || config.url.backend() != Backend::Postgres {
            return Err(PersistenceError::Replica(format!(
                "read replicas are supported on PostgreSQL only (the primary is {}, the \
                 replica {})",
                primary.backend().name(),
                config.url.backend().name()
            )));
        }
        config.pool.validate().map_err(PoolError::Config)?;
        let replica = Arc::new(Replica {
            timeouts: primary.timeouts(),
            config,
            pool: OnceLock::new(),
            usable: AtomicBool::new(false),
            lag_micros: AtomicU64::new(u64::MAX),
        });
        let mut monitor = Monitor {
            primary_url: primary.url().clone(),
            replica: Arc::downgrade(&replica),
            primary: None,
            standby: None,
            samples: VecDeque::new(),
            usable: None,
        };
        // The first sample before the first request, so that a replica that is up is read
        // from the start, and one that is down never is.
        monitor.tick();
        std::thread::Builder::new()
            .name("replica-lag".into())
            .spawn(move || monitor.run())
            .map_err(|error| PersistenceError::Replica(format!("cannot start: {error}")))?;
        Ok(Self {
            primary,
            replica: Some(replica),
        })
    }

    /// The primary, for writes and for reads that must see them.
    pub fn db_write(&self) -> &DbPool {
        &self.primary
    }

    /// Runs `work` on the replica while it is usable, else on the primary. A replica that
    /// fails the work (down since the last sample, or a query cancelled by a conflict with
    /// recovery) sends it to the primary, so `work` may run twice.
    pub async fn db_read<T, F>(&self, work: F) -> Result<T, PersistenceError>
    where
        F: Fn(&mut DbConnection) -> Result<T, PersistenceError> + Clone + Send + 'static,
        T: Send + 'static,
    {
        let Some((replica, pool)) = self.usable_replica() else {
            return self.primary.run(work).await;
        };
        match pool.run(work.clone()).await {
            Ok(value) => Ok(value),
            Err(error) => {
                replica.failed(&error);
                self.primary.run(work).await
            }
        }
    }

    /// Runs `work` on the primary's state: on the replica only when it is usable and has
    /// replayed the WAL position the primary reports now, else on the primary. Anything
    /// committed before this call is seen wherever `work` runs. May run `work` twice, like
    /// [`Databases::db_read`].
    pub async fn db_read_prefer_primary<T, F>(&self, work: F) -> Result<T, PersistenceError>
    where
        F: Fn(&mut DbConnection) -> Result<T, PersistenceError> + Clone + Send + 'static,
        T: Send + 'static,
    {
        let Some((replica, pool)) = self.usable_replica() else {
            return self.primary.run(work).await;
        };
        let fence = self.primary.run(current_wal_lsn).await?;
        let on_replica = work.clone();
        let fenced = pool
            .run(move |conn| {
                if replayed(conn, &fence)? {
                    on_replica(conn).map(Some)
                } else {
                    Ok(None)
                }
            })
            .await;
        match fenced {
            Ok(Some(value)) => Ok(value),
            // Behind the fence: the primary has something the replica has not applied.
            Ok(None) => self.primary.run(work).await,
            Err(error) => {
                replica.failed(&error);
                self.primary.run(work).await
            }
        }
    }

    /// The replica pool, once open (for its metrics).
    pub fn replica_pool(&self) -> Option<&DbPool> {
        self.replica.as_ref()?.pool.get()
    }

    /// What the lag monitor last saw; `None` without a replica.
    pub fn replica_status(&self) -> Option<ReplicaStatus> {
        let replica = self.replica.as_ref()?;
        let micros = replica.lag_micros.load(Ordering::Relaxed);
        Some(ReplicaStatus {
            usable: replica.usable.load(Ordering::Relaxed),
            lag: (micros != u64::MAX).then(|| Duration::from_micros(micros)),
        })
    }

    /// Sets both pools' gauges (see [`DbPool::record_metrics`]).
    pub fn record_metrics(&self) {
        self.primary.record_metrics();
        if let Some(pool) = self.replica_pool() {
            pool.record_metrics();
        }
    }

    fn usable_replica(&self) -> Option<(&Replica, &DbPool)> {
        let replica = self.replica.as_deref()?;
        if !replica.usable.load(Ordering::Relaxed) {
            return None;
        }
        Some((replica, replica.pool.get()?))
    }
}

impl Replica {
    /// A read on the replica failed. If the replica is gone (no connection could be had or
    /// the link broke), reads skip it until the monitor sees it answer again; a saturated
    /// replica pool or a failed query sends only this read to the primary.
    fn failed(&self, error: &PersistenceError) {
        let gone = error.is_connection_lost()
            || matches!(error, PersistenceError::Pool(PoolError::Unavailable { .. }));
        if gone && self.usable.swap(false, Ordering::Relaxed) {
            tracing::warn!(%error, "the read replica failed; reading the primary");
        } else {
            tracing::debug!(%error, "a read on the replica failed; reading the primary");
        }
    }
}

#[derive(QueryableByName)]
struct LsnRow {
    #[diesel(sql_type = Nullable<Text>)]
    lsn: Option<String>,
}

#[derive(QueryableByName)]
struct ReplayedRow {
    #[diesel(sql_type = Nullable<Bool>)]
    replayed: Option<bool>,
}

/// The primary's WAL insert position now. Every transaction that committed before this call
/// ends at or before it: a commit's record is inserted into the WAL before the commit
/// returns, whatever `synchronous_commit` says (with it off, the commit may return before its
/// record is written out, so the write position, `pg_current_wal_lsn()`, could be short).
fn current_wal_lsn(conn: &mut DbConnection) -> Result<String, PersistenceError> {
    let row: LsnRow = diesel::sql_query("SELECT pg_current_wal_insert_lsn()::text AS lsn")
        .get_result(postgres(conn)?)?;
    row.lsn
        .ok_or_else(|| PersistenceError::Replica("the primary has no WAL position".into()))
}

/// Whether the replica has applied the WAL up to `fence`. Replay only moves forward, so
/// every statement after this one sees at least that.
fn replayed(conn: &mut DbConnection, fence: &str) -> Result<bool, PersistenceError> {
    let row: ReplayedRow =
        diesel::sql_query("SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS replayed")
            .bind::<Text, _>(fence)
            .get_result(postgres(conn)?)?;
    Ok(row.replayed.unwrap_or(false))
}

fn postgres(conn: &mut DbConnection) -> Result<&mut diesel::PgConnection, PersistenceError> {
    match conn {
        DbConnection::Postgres(conn) => Ok(conn),
        _ => Err(PersistenceError::Replica(
            "a replica's WAL positions are PostgreSQL's".into(),
        )),
    }
}

/// A WAL position, `X/Y` in hex, as a number.
fn parse_lsn(text: &str) -> Option<u64> {
    let (high, low) = text.trim().split_once('/')?;
    Some((u64::from_str_radix(high, 16).ok()? << 32) | u64::from_str_radix(low, 16).ok()?)
}

/// The lag the samples imply for a replica that has replayed `replayed`: zero if it has
/// replayed the newest sample; otherwise the age of the newest sample it has replayed (the
/// primary has written since then what the replica lacks), or of the oldest kept if it has
/// replayed none.
fn lag(samples: &VecDeque<(Instant, u64)>, replayed: u64, now: Instant) -> Duration {
    match samples.back() {
        None => Duration::ZERO,
        Some(&(_, newest)) if replayed >= newest => Duration::ZERO,
        Some(_) => {
            let since = samples
                .iter()
                .rev()
                .find(|(_, lsn)| *lsn <= replayed)
                .or(samples.front())
                .map_or(now, |(at, _)| *at);
            now.saturating_duration_since(since)
        }
    }
}

/// The lag monitor: its own connections, the primary's recent WAL positions, and what it
/// last decided, so that it logs changes rather than every sample.
struct Monitor {
    primary_url: DatabaseUrl,
    replica: Weak<Replica>,
    primary: Option<DbConnection>,
    standby: Option<DbConnection>,
    samples: VecDeque<(Instant, u64)>,
    /// `None` until the first sample; then whether the replica was usable.
    usable: Option<bool>,
}

impl Monitor {
    /// Samples every [`SAMPLE_EVERY`] until every [`Databases`] holding the replica is gone.
    fn run(mut self) {
        loop {
            let started = Instant::now();
            if !self.tick() {
                return;
            }
            std::thread::sleep(SAMPLE_EVERY.saturating_sub(started.elapsed()));
        }
    }

    /// One sample; `false` once nobody holds the replica.
    fn tick(&mut self) -> bool {
        let Some(replica) = self.replica.upgrade() else {
            return false;
        };
        let config = &replica.config;
        // The primary first: a replica that has replayed what the primary had written at
        // this moment has everything committed before it. The moment is taken before the
        // query, so that the lag errs long, never short.
        let asked = Instant::now();
        match sample(
            &mut self.primary,
            &self.primary_url,
            config,
            replica.timeouts,
            "SELECT pg_current_wal_lsn()::text AS lsn",
        ) {
            Ok(lsn) => {
                self.samples.push_back((asked, lsn));
                if self.samples.len() > KEPT_SAMPLES {
                    self.samples.pop_front();
                }
            }
            // Without the primary no write commits, so the replica stays as current as the
            // samples say; it can still serve the reads that may go to it.
            Err(error) => tracing::debug!(%error, "cannot sample the primary's WAL position"),
        }
        let verdict = match sample(
            &mut self.standby,
            &config.url,
            config,
            replica.timeouts,
            "SELECT pg_last_wal_replay_lsn()::text AS lsn",
        ) {
            Ok(replayed) => {
                let lag = lag(&self.samples, replayed, Instant::now());
                replica.lag_micros.store(
                    u64::try_from(lag.as_micros()).unwrap_or(u64::MAX - 1),
                    Ordering::Relaxed,
                );
                if lag > config.max_lag {
                    Err(format!(
                        "its lag, {} ms, is above database.replica_max_lag",
                        lag.as_millis()
                    ))
                } else {
                    open_pool(&replica)
                }
            }
            Err(error) => {
                replica.lag_micros.store(u64::MAX, Ordering::Relaxed);
                Err(error)
            }
        };
        replica.usable.store(verdict.is_ok(), Ordering::Relaxed);
        if self.usable != Some(verdict.is_ok()) {
            match &verdict {
                Ok(()) => tracing::info!("reading the catalogue from the replica"),
                Err(reason) => tracing::warn!(%reason, "not reading the replica"),
            }
            self.usable = Some(verdict.is_ok());
        }
        true
    }
}

/// Opens the replica pool if it is not open yet.
fn open_pool(replica: &Replica) -> Result<(), String> {
    if replica.pool.get().is_some() {
        return Ok(());
    }
    let pool = DbPool::build_with(&replica.config.url, &replica.config.pool, replica.timeouts)
        .map_err(|error| format!("its pool cannot open: {error}"))?;
    // Only this thread opens it.
    let _ = replica.pool.set(pool);
    Ok(())
}

/// Runs `query` (one `lsn` column) on the monitor's connection to `url`, opening it first if
/// needed; a failure closes it, for the next sample to reopen.
fn sample(
    conn: &mut Option<DbConnection>,
    url: &DatabaseUrl,
    config: &ReplicaConfig,
    timeouts: SessionTimeouts,
    query: &str,
) -> Result<u64, String> {
    if conn.is_none() {
        let opened = url
            .establish(&config.pool, &timeouts)
            .map_err(|error| format!("cannot connect to {}: {error}", url.redacted()))?;
        *conn = Some(opened);
    }
    let Some(open) = conn.as_mut() else {
        return Err("no connection".into());
    };
    let result = postgres(open)
        .map_err(|error| error.to_string())
        .and_then(|pg| {
            diesel::sql_query(query)
                .get_result::<LsnRow>(pg)
                .map_err(|error| error.to_string())
        });
    match result {
        Ok(LsnRow { lsn: Some(lsn) }) => {
            parse_lsn(&lsn).ok_or_else(|| format!("unreadable WAL position {lsn:?}"))
        }
        Ok(LsnRow { lsn: None }) => Err(format!(
            "{} is not a standby (it has no replay position)",
            url.redacted()
        )),
        Err(error) => {
            *conn = None;
            Err(format!("{} does not answer: {error}", url.redacted()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wal_positions() {
        assert_eq!(parse_lsn("0/3000060"), Some(0x0300_0060));
        assert_eq!(parse_lsn("16/B374D848"), Some((0x16 << 32) | 0xB374_D848));
        assert_eq!(parse_lsn("nonsense"), None);
    }

    #[test]
    fn the_lag_is_the_age_of_the_newest_sample_the_replica_has_replayed() {
        let now = Instant::now();
        let ago = |ms: u64| {
            now.checked_sub(Duration::from_millis(ms))
                .expect("a past instant")
        };
        let samples: VecDeque<(Instant, u64)> = [
            (ago(1000), 10),
            (ago(750), 20),
            (ago(500), 20),
            (ago(250), 30),
        ]
        .into();
        // Caught up with the newest sample: no lag, however long the primary was idle.
        assert_eq!(lag(&samples, 30, now), Duration::ZERO);
        assert_eq!(lag(&samples, 35, now), Duration::ZERO);
        // Has 20, not 30: the primary wrote 30 after the sample 500 ms ago.
        assert_eq!(lag(&samples, 25, now), Duration::from_millis(500));
        // Older than every sample kept: at least the oldest one's age.
        assert_eq!(lag(&samples, 5, now), Duration::from_millis(1000));
        assert_eq!(lag(&VecDeque::new(), 5, now), Duration::ZERO);
    }

    #[test]
    fn the_replica_pool_is_the_primarys_with_short_waits() {
        let url = DatabaseUrl::parse("postgres://replica/db").expect("valid");
        let primary = PoolConfig {
            pool_name: "marquee".into(),
            maximum_pool_size: 20,
            ..PoolConfig::default()
        };
        let replica = ReplicaConfig::new(url, &primary, Duration::from_secs(1)).pool;
        assert_eq!(replica.pool_name, "replica");
        assert_eq!(replica.maximum_pool_size, 20);
        assert_eq!(replica.connection_timeout, Duration::from_secs(1));
        assert_eq!(replica.validation_timeout, Duration::from_millis(500));
        assert_eq!(replica.validate(), Ok(()));
    }
}
