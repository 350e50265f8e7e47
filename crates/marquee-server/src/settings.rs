//! [`Settings`]: configuration layered from files and the environment.
//!
//! Layers, later ones winning:
//! 1. `config/default.toml`: the embedded default (also compiled into the binary, so it
//!    runs from any folder);
//! 2. `config/{MARQUEE_ENV}.toml` when `MARQUEE_ENV` is set (`production` is compiled in
//!    too);
//! 3. environment variables `MARQUEE__SECTION__KEY`, e.g. `MARQUEE__DATABASE__URL`.
//!
//! Files are read from `MARQUEE_CONFIG_DIR` (default `./config`) when present there.
//! Every value is checked before anything starts; an error names the key at fault.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use config::{Config, Environment, File, FileFormat};
use marquee_api::CachePolicies;
use marquee_cache::{CacheConfig, RedisConfig, RedisMode};
use marquee_persistence::{Backend, DatabaseUrl, PoolConfig, ReplicaConfig, SessionTimeouts};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

const DEFAULT_TOML: &str = include_str!("../../../config/default.toml");
const PRODUCTION_TOML: &str = include_str!("../../../config/production.toml");

/// `PartialEq` lets a test tell whether leaving a key out of `default.toml` changes anything.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub redis: RedisSettings,
    /// The cache engine (`[cache]`).
    #[serde(default)]
    pub cache: CacheConfig,
    /// Lifetimes per catalogue key group (`[cache_ttl.concert]`, ...).
    #[serde(default)]
    pub cache_ttl: CachePolicies,
    pub auth: AuthSettings,
    pub booking: BookingSettings,
    pub queue: QueueSettings,
    pub log: LogSettings,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// `host:port` to listen on; port 0 picks a free one.
    pub bind: String,
    /// HTTP worker threads; 0 means one per CPU but one, at least one (see `startup`).
    pub workers: usize,
    /// How long in-flight requests may take to finish after a stop signal.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// A request that takes longer is logged with a warning that says where the time went.
    #[serde(with = "humantime_serde")]
    pub slow_request_threshold: Duration,
}

/// `[database]`. Its `Debug` output shows the URL without its password.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub url: String,
    pub auto_migrate: bool,
    pub seed_demo_if_empty: bool,
    /// The longest a statement waits for a lock held by other work (PostgreSQL's
    /// `lock_timeout`, SQLite's `busy_timeout`). Default 2 s.
    #[serde(with = "humantime_serde", default = "default_lock_timeout")]
    pub lock_timeout: Duration,
    /// The longest one statement may run on PostgreSQL; 0 is off. Default 5 s.
    #[serde(with = "humantime_serde", default = "default_statement_timeout")]
    pub statement_timeout: Duration,
    #[serde(default)]
    pub pool: PoolConfig,
    /// A PostgreSQL streaming replica that cache-miss loads of the catalogue read; empty
    /// means none (every read goes to `url`).
    #[serde(default)]
    pub replica_url: String,
    /// The replica is not read while it lags more than this. Default 1 s.
    #[serde(with = "humantime_serde", default = "default_replica_max_lag")]
    pub replica_max_lag: Duration,
}

fn default_replica_max_lag() -> Duration {
    Duration::from_secs(1)
}

fn default_lock_timeout() -> Duration {
    SessionTimeouts::default().lock_timeout
}

fn default_statement_timeout() -> Duration {
    SessionTimeouts::default().statement_timeout
}

impl std::fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = redacted(&self.url);
        f.debug_struct("DatabaseSettings")
            .field("url", &url)
            .field("auto_migrate", &self.auto_migrate)
            .field("seed_demo_if_empty", &self.seed_demo_if_empty)
            .field("lock_timeout", &self.lock_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .field("pool", &self.pool)
            .field("replica_url", &redacted(&self.replica_url))
            .field("replica_max_lag", &self.replica_max_lag)
            .finish()
    }
}

/// A backend as an operator names it.
fn backend_label(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => "PostgreSQL",
        Backend::Sqlite => "SQLite",
        Backend::Mysql => "MariaDB/MySQL",
    }
}

/// A database URL as logs may show it; empty stays empty.
fn redacted(url: &str) -> String {
    if url.trim().is_empty() {
        return String::new();
    }
    DatabaseUrl::parse(url).map_or_else(|_| "(invalid)".to_owned(), |url| url.redacted())
}

/// `[redis]`. Its `Debug` output shows the URL without its password.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// Empty means: no Redis, use the in-process cache. In cluster mode, a comma-separated
    /// list of seed nodes.
    #[serde(default)]
    pub url: String,
    /// `standalone` (the default) or `cluster`.
    #[serde(default)]
    pub mode: RedisMode,
    #[serde(with = "humantime_serde")]
    pub response_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub connection_timeout: Duration,
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &RedisConfig::new(self.url.trim()).redacted_url())
            .field("mode", &self.mode)
            .field("response_timeout", &self.response_timeout)
            .field("connection_timeout", &self.connection_timeout)
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// The HS256 secret tokens are signed with; at least 32 bytes. Never logged: its `Debug`
    /// output is redacted, and it is zeroed when the settings are dropped.
    pub jwt_secret: SecretString,
    /// The longest a token may be valid for; longer ones are refused.
    #[serde(with = "humantime_serde")]
    pub max_token_lifetime: Duration,
    /// When set (not empty), tokens must carry this `iss`.
    #[serde(default)]
    pub issuer: String,
    /// When set (not empty), tokens must carry this `aud`.
    #[serde(default)]
    pub audience: String,
}

/// `SecretString` has no `PartialEq`, so that comparing secrets is a visible choice. Settings
/// are compared only by tests, where a timing difference reveals nothing.
impl PartialEq for AuthSettings {
    fn eq(&self, other: &Self) -> bool {
        self.jwt_secret.expose_secret() == other.jwt_secret.expose_secret()
            && self.max_token_lifetime == other.max_token_lifetime
            && self.issuer == other.issuer
            && self.audience == other.audience
    }
}

impl AuthSettings {
    /// The claims rules tokens are checked against.
    pub fn token_rules(&self) -> marquee_api::auth::TokenRules {
        let set = |value: &str| Some(value.trim().to_owned()).filter(|v| !v.is_empty());
        marquee_api::auth::TokenRules {
            max_lifetime: self.max_token_lifetime,
            issuer: set(&self.issuer),
            audience: set(&self.audience),
        }
    }

    /// Checks and mints tokens with these settings.
    pub fn tokens(&self) -> marquee_api::auth::Tokens {
        marquee_api::auth::Tokens::new(&self.jwt_secret, self.token_rules())
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BookingSettings {
    /// How long a hold lasts before the seat is free for others.
    #[serde(with = "humantime_serde")]
    pub hold_duration: Duration,
    /// Live holds one user may have on one schedule.
    pub max_holds_per_schedule: u32,
    /// Live holds one user may have across every schedule.
    pub max_holds_per_user: u32,
    /// How long an idempotency key and its recorded response are kept; a retry after that
    /// is a new request.
    #[serde(with = "humantime_serde")]
    pub idempotency_retention: Duration,
    /// The largest single wallet charge, in minor units.
    pub max_charge: i64,
    /// The most a wallet may hold, in minor units.
    pub max_balance: i64,
    /// How often expired holds are swept (their seats are free to readers before that).
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
}

/// The waiting room (`[queue]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSettings {
    /// Whether holds need an admission from the concert's queue.
    pub enabled: bool,
    /// Admissions per second per concert, for the whole fleet together.
    pub admit_per_second: u32,
    /// The most users admitted at once per concert.
    pub active_limit: u32,
    /// How long an admission lasts; a payment ends it early.
    #[serde(with = "humantime_serde")]
    pub active_ttl: Duration,
    /// A waiting user who has not polled for this long is dropped.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// The longest `pollAfterSeconds` told to a user far back in line; a third of
    /// `idle_timeout` caps it. Default 5 s.
    #[serde(
        with = "humantime_serde",
        default = "QueueSettings::default_max_poll_interval"
    )]
    pub max_poll_interval: Duration,
}

impl QueueSettings {
    fn default_max_poll_interval() -> Duration {
        marquee_api::queue::MAX_POLL_INTERVAL
    }

    /// The rules the waiting room admits by.
    pub fn rules(&self) -> marquee_domain::QueueRules {
        let delta = |d: Duration| chrono::TimeDelta::from_std(d).unwrap_or(chrono::TimeDelta::MAX);
        marquee_domain::QueueRules {
            admit_per_second: self.admit_per_second,
            active_limit: self.active_limit,
            active_ttl: delta(self.active_ttl),
            idle_timeout: delta(self.idle_timeout),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    pub filter: String,
}

/// Where settings come from. [`Sources::from_process`] reads the real environment; tests
/// build one by hand.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// `MARQUEE_ENV`.
    pub environment: Option<String>,
    /// `MARQUEE_CONFIG_DIR`, default `./config`.
    pub config_dir: Option<PathBuf>,
    /// The `MARQUEE__...` variables.
    pub variables: HashMap<String, String>,
}

impl Sources {
    pub fn from_process() -> Self {
        Self {
            environment: std::env::var("MARQUEE_ENV").ok().filter(|v| !v.is_empty()),
            config_dir: std::env::var_os("MARQUEE_CONFIG_DIR").map(PathBuf::from),
            variables: std::env::vars()
                .filter(|(key, _)| key.starts_with("MARQUEE__"))
                .collect(),
        }
    }
}

impl Settings {
    /// Loads from the process's environment and the config folder.
    pub fn load() -> anyhow::Result<Self> {
        Self::load_from(Sources::from_process())
    }

    pub fn load_from(sources: Sources) -> anyhow::Result<Self> {
        let dir = sources
            .config_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("config"));
        let mut builder = Config::builder().add_source(layer(&dir, "default", Some(DEFAULT_TOML))?);
        if let Some(environment) = &sources.environment {
            let embedded = (environment == "production").then_some(PRODUCTION_TOML);
            builder =
                builder.add_source(layer(&dir, environment, embedded).with_context(|| {
                    format!(
                        "MARQUEE_ENV={environment}: no {environment}.toml in {}",
                        dir.display()
                    )
                })?);
        }
        let settings: Settings = builder
            .add_source(
                Environment::with_prefix("MARQUEE")
                    .prefix_separator("__")
                    .separator("__")
                    .source(Some(sources.variables.into_iter().collect())),
            )
            .build()
            .and_then(Config::try_deserialize)
            .context("invalid configuration")?;
        settings.validate()?;
        Ok(settings)
    }

    /// Range checks serde cannot express. Each error names its key.
    fn validate(&self) -> anyhow::Result<()> {
        self.bind_address()?;
        DatabaseUrl::parse(&self.database.url)
            .map_err(|error| anyhow::anyhow!("invalid configuration: database.url {error}"))?;
        self.database
            .pool
            .validate()
            .map_err(|error| anyhow::anyhow!("invalid configuration: database.pool.{error}"))?;
        self.session_timeouts()
            .validate()
            .map_err(|error| anyhow::anyhow!("invalid configuration: database.{error}"))?;
        self.replica_config()?;
        if self.auth.jwt_secret.expose_secret().len() < 32 {
            bail!(
                "invalid configuration: auth.jwt_secret must be at least 32 bytes \
                 (set MARQUEE__AUTH__JWT_SECRET)"
            );
        }
        let booking = &self.booking;
        if booking.hold_duration < Duration::from_secs(1)
            || booking.hold_duration > Duration::from_secs(24 * 3600)
        {
            bail!("invalid configuration: booking.hold_duration must be between 1s and 24h");
        }
        if booking.max_holds_per_schedule == 0 {
            bail!("invalid configuration: booking.max_holds_per_schedule must be at least 1");
        }
        if booking.max_holds_per_user < booking.max_holds_per_schedule {
            bail!(
                "invalid configuration: booking.max_holds_per_user must be at least \
                 booking.max_holds_per_schedule ({})",
                booking.max_holds_per_schedule
            );
        }
        if booking.idempotency_retention < Duration::from_secs(1)
            || booking.idempotency_retention > Duration::from_secs(365 * 24 * 3600)
        {
            bail!(
                "invalid configuration: booking.idempotency_retention must be between 1s and 365d"
            );
        }
        if self.auth.max_token_lifetime < Duration::from_secs(60) {
            bail!("invalid configuration: auth.max_token_lifetime must be at least 1m");
        }
        if booking.max_charge < 1 || booking.max_balance < booking.max_charge {
            bail!(
                "invalid configuration: booking.max_charge must be at least 1 and at most booking.max_balance"
            );
        }
        if booking.sweep_interval < Duration::from_millis(100) {
            bail!("invalid configuration: booking.sweep_interval must be at least 100ms");
        }
        let queue = &self.queue;
        if queue.admit_per_second == 0 || queue.admit_per_second > 100_000 {
            bail!("invalid configuration: queue.admit_per_second must be between 1 and 100000");
        }
        if queue.active_limit == 0 {
            bail!("invalid configuration: queue.active_limit must be at least 1");
        }
        if queue.active_ttl < Duration::from_secs(1)
            || queue.active_ttl > Duration::from_secs(24 * 3600)
        {
            bail!("invalid configuration: queue.active_ttl must be between 1s and 24h");
        }
        if queue.idle_timeout < Duration::from_secs(3)
            || queue.idle_timeout > Duration::from_secs(24 * 3600)
        {
            bail!(
                "invalid configuration: queue.idle_timeout must be between 3s and 24h \
                 (clients are told to poll at most a third of it apart)"
            );
        }
        if queue.max_poll_interval < Duration::from_secs(1)
            || queue.max_poll_interval > Duration::from_secs(3600)
        {
            bail!(
                "invalid configuration: queue.max_poll_interval must be between 1s and 1h \
                 (a third of queue.idle_timeout caps it)"
            );
        }
        self.cache
            .validate()
            .map_err(|error| anyhow::anyhow!("invalid configuration: cache.{error}"))?;
        for (group, policy) in [
            ("concert", &self.cache_ttl.concert),
            ("concerts_page", &self.cache_ttl.concerts_page),
            ("schedules", &self.cache_ttl.schedules),
            ("seats", &self.cache_ttl.seats),
        ] {
            policy.validate().map_err(|error| {
                anyhow::anyhow!("invalid configuration: cache_ttl.{group}.{error}")
            })?;
        }
        let url = self.redis.url.trim();
        match self.redis.mode {
            RedisMode::Cluster if url.is_empty() => bail!(
                "invalid configuration: redis.mode is \"cluster\" but redis.url is empty: set \
                 redis.url to the cluster's seed nodes, e.g. \
                 redis://10.0.0.1:6379,redis://10.0.0.2:6379"
            ),
            RedisMode::Standalone if url.contains(',') => bail!(
                "invalid configuration: redis.url {} is a comma-separated list of nodes, which \
                 needs redis.mode = \"cluster\" (MARQUEE__REDIS__MODE=cluster); redis.mode is \
                 \"standalone\"",
                RedisConfig::new(url).redacted_url()
            ),
            _ => {}
        }
        if let Some(redis) = self.redis_config() {
            redis
                .validate()
                .map_err(|error| anyhow::anyhow!("invalid configuration: redis.{error}"))?;
        }
        if self
            .log
            .filter
            .parse::<tracing_subscriber::EnvFilter>()
            .is_err()
        {
            bail!(
                "invalid configuration: log.filter {:?} is not a tracing filter",
                self.log.filter
            );
        }
        Ok(())
    }

    /// Refuses to serve a reachable address with the development `auth.jwt_secret`: it is
    /// printed in `config/default.toml` and the README, so anyone could sign tokens for any
    /// user with it. On a loopback address only this machine can reach the server, which is
    /// what the embedded default is for.
    pub fn check_serving_secret(&self) -> anyhow::Result<()> {
        let bind = self.bind_address()?;
        let development = development_secret()?;
        if bind.ip().is_loopback() || self.auth.jwt_secret.expose_secret() != development {
            return Ok(());
        }
        bail!(
            "invalid configuration: auth.jwt_secret is the public development secret from \
             config/default.toml, and server.bind {bind} is reachable from other machines: \
             anyone could sign tokens with it. Set MARQUEE__AUTH__JWT_SECRET to a secret of at \
             least 32 bytes (for example `openssl rand -hex 32`), or bind a loopback address \
             such as 127.0.0.1:8080"
        )
    }

    /// `server.bind`, parsed.
    pub fn bind_address(&self) -> anyhow::Result<SocketAddr> {
        self.server.bind.parse().map_err(|error| {
            anyhow::anyhow!(
                "invalid configuration: server.bind {:?} is not host:port ({error})",
                self.server.bind
            )
        })
    }

    pub fn database_url(&self) -> anyhow::Result<DatabaseUrl> {
        DatabaseUrl::parse(&self.database.url)
            .map_err(|error| anyhow::anyhow!("invalid configuration: database.url {error}"))
    }

    /// The read replica's settings, or `None` without `database.replica_url`. Only a
    /// PostgreSQL primary can have one, and it must be PostgreSQL too: the lag that decides
    /// whether it is read is measured in PostgreSQL's WAL positions.
    pub fn replica_config(&self) -> anyhow::Result<Option<ReplicaConfig>> {
        let database = &self.database;
        let text = database.replica_url.trim();
        if text.is_empty() {
            return Ok(None);
        }
        let url = DatabaseUrl::parse(text).map_err(|error| {
            anyhow::anyhow!("invalid configuration: database.replica_url {error}")
        })?;
        let primary = self.database_url()?.backend();
        if primary != Backend::Postgres {
            bail!(
                "invalid configuration: database.replica_url is set, but database.url is {}: \
                 read replicas are supported with PostgreSQL only; leave replica_url empty",
                backend_label(primary)
            );
        }
        if url.backend() != Backend::Postgres {
            bail!(
                "invalid configuration: database.replica_url must be a PostgreSQL streaming \
                 replica (postgres://...), got a {} URL",
                backend_label(url.backend())
            );
        }
        if database.replica_max_lag < marquee_persistence::replica::SAMPLE_EVERY {
            bail!(
                "invalid configuration: database.replica_max_lag must be at least 250ms (the \
                 lag is measured every 250 ms)"
            );
        }
        Ok(Some(ReplicaConfig::new(
            url,
            &database.pool,
            database.replica_max_lag,
        )))
    }

    /// The bounds every database connection applies to its statements.
    pub fn session_timeouts(&self) -> SessionTimeouts {
        SessionTimeouts {
            lock_timeout: self.database.lock_timeout,
            statement_timeout: self.database.statement_timeout,
        }
    }

    /// Redis's settings, or `None` for the in-process cache.
    pub fn redis_config(&self) -> Option<RedisConfig> {
        let url = self.redis.url.trim();
        (!url.is_empty()).then(|| {
            let mut config = RedisConfig::new(url);
            config.mode = self.redis.mode;
            config.response_timeout = self.redis.response_timeout;
            config.connection_timeout = self.redis.connection_timeout;
            config
        })
    }
}

/// The development `auth.jwt_secret`, as the embedded `config/default.toml` sets it.
fn development_secret() -> anyhow::Result<String> {
    Config::builder()
        .add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml))
        .build()
        .and_then(|config| config.get_string("auth.jwt_secret"))
        .context("the embedded config/default.toml has no auth.jwt_secret")
}

/// One TOML layer: the file in `dir` if it exists, else the embedded copy.
fn layer(
    dir: &std::path::Path,
    name: &str,
    embedded: Option<&'static str>,
) -> anyhow::Result<File<config::FileSourceString, FileFormat>> {
    let path = dir.join(format!("{name}.toml"));
    if path.is_file() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        return Ok(File::from_str(&text, FileFormat::Toml));
    }
    match embedded {
        Some(text) => Ok(File::from_str(text, FileFormat::Toml)),
        None => bail!("{} does not exist", path.display()),
    }
}
