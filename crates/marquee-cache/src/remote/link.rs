//! [`RedisLink`]: multiplexed, self-reconnecting connections to Redis, standalone or a
//! cluster (one per thread that uses them), with every command bounded in time.
//!
//! A cache that waits on a slow Redis is worse than no cache: each command here gives up
//! after `response_timeout`, so a Redis outage costs a request milliseconds, not seconds.

use std::sync::Arc;
use std::time::Duration;

use marquee_redis::{Connection, Connector, RedisMode, Timeouts};
use serde::Deserialize;

use crate::error::ConfigError;
use thread_local::ThreadLocal;

/// How to reach Redis: one server, or a Redis Cluster through a list of seed nodes. Its
/// `Debug` output shows the URL without its passwords.
///
/// ```
/// use std::time::Duration;
/// use marquee_cache::RedisConfig;
///
/// let mut config = RedisConfig::new("redis://:s3cr3t@cache.internal:6379/0");
/// config.response_timeout = Duration::from_millis(20);
/// assert_eq!(config.validate(), Ok(()));
/// assert_eq!(config.redacted_url(), "redis://:***@cache.internal:6379/0");
/// assert!(!format!("{config:?}").contains("s3cr3t"));
///
/// let cluster = RedisConfig::cluster("redis://:pw@10.0.0.1:6379,redis://:pw@10.0.0.2:6379");
/// assert_eq!(cluster.validate(), Ok(()));
/// assert_eq!(cluster.redacted_url(), "redis://:***@10.0.0.1:6379,redis://:***@10.0.0.2:6379");
/// ```
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RedisConfig {
    /// Standalone: `redis://host:port[/db]` or `unix:///path`. Cluster: a comma-separated
    /// list of seed nodes, each `redis://host:port`, from which the client learns the whole
    /// cluster.
    pub url: String,
    /// [`RedisMode::Standalone`] (the default) or [`RedisMode::Cluster`].
    #[serde(default)]
    pub mode: RedisMode,
    /// The most one command may take before it counts as failed. Default 50 ms.
    #[serde(
        with = "humantime_serde",
        default = "RedisConfig::default_response_timeout"
    )]
    pub response_timeout: Duration,
    /// The most opening (or re-opening) the connection may take. Default 1 s.
    #[serde(
        with = "humantime_serde",
        default = "RedisConfig::default_connection_timeout"
    )]
    pub connection_timeout: Duration,
}

impl RedisConfig {
    fn default_response_timeout() -> Duration {
        Duration::from_millis(50)
    }

    fn default_connection_timeout() -> Duration {
        Duration::from_secs(1)
    }

    /// Checks the URL against the mode (one `redis://`, `unix://` or `redis+unix://` URL
    /// standalone; at least one seed, each `redis://`, in a cluster) and the time bounds.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the setting (`url`, `response_timeout`,
    /// `connection_timeout`); a URL in it is shown redacted. A comma-separated list in
    /// standalone mode is refused with a reason that names the mode.
    pub fn validate(&self) -> Result<(), ConfigError> {
        marquee_redis::node_urls(self.mode, &self.url)
            .map_err(|(field, reason)| ConfigError::new(field, reason))?;
        if self.response_timeout.is_zero() {
            return Err(ConfigError::new("response_timeout", "must be more than 0"));
        }
        if self.connection_timeout.is_zero() {
            return Err(ConfigError::new(
                "connection_timeout",
                "must be more than 0",
            ));
        }
        Ok(())
    }

    /// The URL with every password replaced by `***`, for logs and errors: in each URL of a
    /// cluster's seed list, the password of the user (`redis://user:password@host`) and the
    /// `pass` query parameter of a socket URL (`unix:///path?pass=...`). A URL that does not
    /// parse is not shown.
    pub fn redacted_url(&self) -> String {
        marquee_redis::redact_urls(&self.url)
    }

    /// A configuration for `url`, with the default time bounds.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            mode: RedisMode::Standalone,
            response_timeout: Self::default_response_timeout(),
            connection_timeout: Self::default_connection_timeout(),
        }
    }

    /// A configuration for a Redis Cluster reached through `seeds`, a comma-separated list of
    /// `redis://host:port` URLs, with the default time bounds.
    pub fn cluster(seeds: impl Into<String>) -> Self {
        Self {
            mode: RedisMode::Cluster,
            ..Self::new(seeds)
        }
    }
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.redacted_url())
            .field("mode", &self.mode)
            .field("response_timeout", &self.response_timeout)
            .field("connection_timeout", &self.connection_timeout)
            .finish()
    }
}

/// Why a Redis command, or opening a [`RedisLink`], failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisError {
    /// The URL does not parse as a Redis URL.
    #[error("invalid redis url: {0}")]
    Url(String),
    /// A setting is out of range.
    #[error("invalid redis configuration: {0}")]
    Config(#[from] ConfigError),
    /// Redis did not answer within the bound.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    /// Redis answered with an error, or the connection failed.
    #[error("redis: {0}")]
    Command(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<redis::RedisError> for RedisError {
    fn from(error: redis::RedisError) -> Self {
        Self::Command(Box::new(error))
    }
}

/// A cloneable handle on Redis (one server or a cluster): one multiplexed connection per
/// thread that uses it.
///
/// A multiplexed connection's driver is a task on the runtime that opened the connection.
/// With one connection for the process, opened on the main runtime, every command sent from
/// an HTTP worker's thread (actix runs one single-threaded runtime per worker) went to that
/// task on another thread and came back: two cross-thread wake-ups per command, the hit
/// path's largest cost on a two-core machine, and under bookings the writes' too (an
/// eviction, a lease, a store: several per booking). Every command therefore goes through a
/// connection opened lazily on its thread, on that thread's runtime, which keeps it on the
/// thread that awaits it: a process holds a handful, one per HTTP worker and one per thread
/// of the main runtime. Commands that depend on each other are awaited one after the other,
/// so they need not share a connection to keep their order. In a cluster each of these is a
/// cluster connection, which holds one connection per master it talks to.
#[derive(Clone)]
pub struct RedisLink {
    connections: Arc<ThreadLocal<Connection>>,
    connector: Connector,
    config: RedisConfig,
}

impl std::fmt::Debug for RedisLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLink")
            .field("mode", &self.config.mode)
            .field("response_timeout", &self.config.response_timeout)
            .finish_non_exhaustive()
    }
}

impl RedisLink {
    /// Prepares the link without connecting: the connection opens on first use and reopens
    /// after a failure. A Redis that is down at start-up therefore does not stop the service;
    /// commands fail (fast) until it is back. In cluster mode the client learns the cluster
    /// from the seeds on first use, follows `MOVED` and `ASK`, and reloads the slot map after
    /// a failover.
    ///
    /// # Errors
    ///
    /// [`RedisError::Config`] for a configuration that [`RedisConfig::validate`] refuses,
    /// [`RedisError::Url`] for a URL the client cannot use.
    pub fn open(config: RedisConfig) -> Result<Self, RedisError> {
        config.validate()?;
        let timeouts = Timeouts {
            connection: config.connection_timeout,
            response: config.response_timeout,
        };
        let connector = Connector::open(config.mode, &config.url, timeouts)
            .map_err(|e| RedisError::Url(e.to_string()))?;
        // Prepared here (without connecting) so that a URL the client refuses is an error now,
        // not at the first command.
        connector
            .connection()
            .map_err(|e| RedisError::Url(e.to_string()))?;
        Ok(Self {
            connections: Arc::new(ThreadLocal::new()),
            connector,
            config,
        })
    }

    /// Standalone or cluster, as configured.
    pub fn mode(&self) -> RedisMode {
        self.config.mode
    }

    /// This thread's connection, prepared on first use on this thread's runtime.
    fn connection(&self) -> Result<Connection, RedisError> {
        Ok(self
            .connections
            .get_or_try(|| self.connector.connection())?
            .clone())
    }

    /// Runs one command on this thread's connection with the response bound.
    pub(crate) async fn bounded<T: redis::FromRedisValue>(
        &self,
        command: &redis::Cmd,
    ) -> Result<T, RedisError> {
        let mut connection = self.connection()?;
        self.timed(async { command.query_async::<T>(&mut connection).await })
            .await
    }

    /// Runs a script by its SHA (loading it first if the server does not know it, as after a
    /// restart), within the response bound.
    pub(crate) async fn script<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, RedisError> {
        let mut connection = self.connection()?;
        self.timed(invocation.invoke_async::<T>(&mut connection))
            .await
    }

    /// Runs `call` within the response bound, and reports its time.
    async fn timed<T>(
        &self,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, RedisError> {
        let bound = self.config.response_timeout;
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(bound, call)
            .await
            .map_err(|_| RedisError::Timeout(bound))?
            .map_err(RedisError::from);
        // Where a request's time went, for an application's slow-request log.
        tracing::trace!(
            target: crate::TIMING_TARGET,
            phase = "redis",
            micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        );
        result
    }

    /// Sends PING: for readiness checks.
    ///
    /// # Errors
    ///
    /// When Redis cannot be reached or does not answer within `response_timeout`.
    pub async fn ping(&self) -> Result<(), RedisError> {
        self.bounded::<String>(&redis::cmd("PING")).await.map(drop)
    }

    /// GET: the raw bytes stored under `key`, for tests and tooling.
    ///
    /// # Errors
    ///
    /// When Redis cannot be reached or does not answer within `response_timeout`.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, RedisError> {
        self.bounded(redis::cmd("GET").arg(key)).await
    }

    /// SET with a time to live in milliseconds: raw bytes, for tests and tooling.
    ///
    /// # Errors
    ///
    /// When Redis cannot be reached or does not answer within `response_timeout`.
    pub async fn set_px(&self, key: &str, value: &[u8], ttl_ms: u64) -> Result<(), RedisError> {
        self.bounded::<()>(
            redis::cmd("SET")
                .arg(key)
                .arg(value)
                .arg("PX")
                .arg(ttl_ms.max(1)),
        )
        .await
    }

    /// Deletes `key` only if it still holds `value`, atomically: releasing a lease must not
    /// delete a newer holder's lease after ours ran out.
    pub(crate) async fn delete_if_equals(
        &self,
        key: &str,
        value: &str,
    ) -> Result<bool, RedisError> {
        static SCRIPT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
            redis::Script::new(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then \
                 return redis.call('DEL', KEYS[1]) else return 0 end",
            )
        });
        let deleted: i64 = self.script(SCRIPT.key(key).arg(value)).await?;
        Ok(deleted == 1)
    }

    /// PUBLISH.
    pub(crate) async fn publish(&self, channel: &str, message: &str) -> Result<(), RedisError> {
        self.bounded::<i64>(redis::cmd("PUBLISH").arg(channel).arg(message))
            .await
            .map(drop)
    }

    /// PTTL in milliseconds: `None` if the key does not exist or has no expiry.
    ///
    /// # Errors
    ///
    /// When Redis cannot be reached or does not answer within `response_timeout`.
    pub async fn pttl(&self, key: &str) -> Result<Option<u64>, RedisError> {
        let ttl: i64 = self.bounded(redis::cmd("PTTL").arg(key)).await?;
        Ok(u64::try_from(ttl).ok())
    }

    /// Every key matching `pattern` (SCAN MATCH, each step bounded): on every master of a
    /// cluster in turn. It walks the whole keyspace: for tests and tooling, never for a
    /// request path.
    ///
    /// # Errors
    ///
    /// When a master cannot be reached or a step does not answer within `response_timeout`
    /// (opening a connection to a master within `connection_timeout`).
    pub async fn scan(&self, pattern: &str) -> Result<Vec<String>, RedisError> {
        let bound = self.config.connection_timeout;
        let masters = tokio::time::timeout(bound * 2, self.connector.masters())
            .await
            .map_err(|_| RedisError::Timeout(bound * 2))??;
        let mut keys = Vec::new();
        for master in masters {
            let mut connection =
                tokio::time::timeout(bound, master.get_multiplexed_async_connection())
                    .await
                    .map_err(|_| RedisError::Timeout(bound))??;
            let mut cursor = 0u64;
            loop {
                let (next, batch): (u64, Vec<String>) = self
                    .timed(
                        redis::cmd("SCAN")
                            .arg(cursor)
                            .arg("MATCH")
                            .arg(pattern)
                            .arg("COUNT")
                            .arg(1000)
                            .query_async(&mut connection),
                    )
                    .await?;
                keys.extend(batch);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(keys)
    }

    /// A dedicated connection subscribed to `channel` (pub/sub needs its own connection).
    /// In a cluster, on any node (classic pub/sub reaches every node): `attempt` picks which,
    /// so that a listener whose node died moves to another.
    pub(crate) async fn subscribe(
        &self,
        channel: &str,
        attempt: usize,
    ) -> Result<redis::aio::PubSub, RedisError> {
        Ok(self.connector.subscribe(channel, attempt).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redacted(url: &str) -> String {
        RedisConfig::new(url).redacted_url()
    }

    #[test]
    fn open_refuses_what_validate_refuses() {
        let zero = RedisConfig {
            response_timeout: Duration::ZERO,
            ..RedisConfig::new("redis://127.0.0.1:6379")
        };
        let refused = |config| match RedisLink::open(config) {
            Err(RedisError::Config(error)) => error.field,
            other => panic!("{other:?}"),
        };
        assert_eq!(refused(zero), "response_timeout");
        assert_eq!(refused(RedisConfig::new("rediss://cache:6380")), "url");
        assert_eq!(refused(RedisConfig::new("http://cache:6379")), "url");
    }

    #[test]
    fn redaction_hides_passwords_wherever_redis_urls_carry_them() {
        assert_eq!(
            redacted("redis://app:s3cr3t@pa55@cache:6379/0"),
            "redis://app:***@cache:6379/0"
        );
        assert_eq!(redacted("redis://:p%40ss@cache"), "redis://:***@cache");
        assert_eq!(
            redacted("unix:///run/redis.sock?db=1&pass=s3cr3t"),
            "unix:///run/redis.sock?db=1&pass=***"
        );
        let config = RedisConfig::new("redis://:s3cr3t@cache");
        assert!(!format!("{config:?}").contains("s3cr3t"));
    }

    #[test]
    fn redaction_keeps_urls_without_passwords_as_written() {
        assert_eq!(redacted("redis://cache:6379"), "redis://cache:6379");
        assert_eq!(redacted("http://cache"), "http://cache");
        assert_eq!(redacted("redis://:s3cr3t@cache:port"), "(not a URL)");
    }

    #[test]
    fn a_refused_url_is_named_without_its_password() {
        let error = RedisConfig::new("http://:s3cr3t@cache")
            .validate()
            .unwrap_err();
        assert_eq!(error.field, "url");
        assert!(!error.to_string().contains("s3cr3t"), "{error}");
        assert!(error.to_string().contains("http://:***@cache/"), "{error}");
    }
}
