//! [`RedisLink`]: multiplexed, self-reconnecting connections to Redis (one shared for writes,
//! one per thread for reads), with every command bounded in time.
//!
//! A cache that waits on a slow Redis is worse than no cache: each command here gives up
//! after `response_timeout`, so a Redis outage costs a request milliseconds, not seconds.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::Deserialize;

use crate::error::ConfigError;
use thread_local::ThreadLocal;

/// How to reach Redis. Its `Debug` output shows the URL without its password.
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
/// ```
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RedisConfig {
    /// `redis://host:port[/db]`, `rediss://...` or `unix:///path`.
    pub url: String,
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

    /// Checks the URL's scheme and the time bounds.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the setting (`url`, `response_timeout`,
    /// `connection_timeout`); a URL in it is shown redacted.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |field, reason: String| Err(ConfigError::new(field, reason));
        if self.url.starts_with("rediss://") {
            return fail(
                "url",
                "rediss:// (TLS) is not supported by this build; use redis:// or unix://".into(),
            );
        }
        if !["redis://", "unix://", "redis+unix://"]
            .iter()
            .any(|scheme| self.url.starts_with(scheme))
        {
            return fail(
                "url",
                format!(
                    "must start with redis://, unix:// or redis+unix://, got {:?}",
                    self.redacted_url()
                ),
            );
        }
        if self.response_timeout.is_zero() {
            return fail("response_timeout", "must be more than 0".into());
        }
        if self.connection_timeout.is_zero() {
            return fail("connection_timeout", "must be more than 0".into());
        }
        Ok(())
    }

    /// The URL with every password replaced by `***`, for logs and errors: the password of
    /// the user (`redis://user:password@host`) and the `pass` query parameter of a socket
    /// URL (`unix:///path?pass=...`). A value that does not parse as a URL is not shown.
    pub fn redacted_url(&self) -> String {
        let Ok(url) = url::Url::parse(&self.url) else {
            return "(not a URL)".to_owned();
        };
        let is_secret = |key: &str| key.to_ascii_lowercase().contains("pass");
        let secret_query = url.query_pairs().any(|(key, _)| is_secret(&key));
        if url.password().is_none() && !secret_query {
            // Nothing to hide: show the URL as it was written, not re-serialised.
            return self.url.clone();
        }
        let mut shown = url.clone();
        if url.password().is_some() && shown.set_password(Some("***")).is_err() {
            return "(a URL with a password)".to_owned();
        }
        if secret_query {
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(key, value)| {
                    let value = if is_secret(&key) { "***".into() } else { value };
                    (key.into_owned(), value.into_owned())
                })
                .collect();
            shown.query_pairs_mut().clear().extend_pairs(pairs);
        }
        shown.into()
    }

    /// A configuration for `url`, with the default time bounds.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            response_timeout: Self::default_response_timeout(),
            connection_timeout: Self::default_connection_timeout(),
        }
    }
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.redacted_url())
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

/// A cloneable handle on Redis: one multiplexed connection for writes, and one per thread
/// for reads.
///
/// A multiplexed connection's driver is a task on the runtime that opened the connection.
/// With one connection for the process, opened on the main runtime, every `GET` sent from
/// an HTTP worker's thread (actix runs one single-threaded runtime per worker) went to that
/// task on another thread and came back: two cross-thread wake-ups per read, the hit path's
/// largest cost on a two-core machine. Reads therefore go through a connection opened lazily
/// on each thread, on that thread's runtime, which keeps a read on the thread that awaits
/// it: a process holds a handful, one per HTTP worker and one per thread of the main
/// runtime. Writes stay on the one shared connection: they are rarer.
#[derive(Clone)]
pub struct RedisLink {
    connection: ConnectionManager,
    readers: Arc<ThreadLocal<ConnectionManager>>,
    manager_config: ConnectionManagerConfig,
    client: redis::Client,
    config: RedisConfig,
}

impl std::fmt::Debug for RedisLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLink")
            .field("response_timeout", &self.config.response_timeout)
            .finish_non_exhaustive()
    }
}

impl RedisLink {
    /// Prepares the link without connecting: the connection opens on first use and reopens
    /// after a failure. A Redis that is down at start-up therefore does not stop the service;
    /// commands fail (fast) until it is back.
    ///
    /// # Errors
    ///
    /// [`RedisError::Config`] for a configuration that [`RedisConfig::validate`] refuses,
    /// [`RedisError::Url`] for a URL the client cannot use.
    pub fn open(config: RedisConfig) -> Result<Self, RedisError> {
        config.validate()?;
        let client =
            redis::Client::open(config.url.as_str()).map_err(|e| RedisError::Url(e.to_string()))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connection_timeout))
            .set_response_timeout(Some(config.response_timeout))
            .set_number_of_retries(1);
        let connection =
            ConnectionManager::new_lazy_with_config(client.clone(), manager_config.clone())?;
        Ok(Self {
            connection,
            readers: Arc::new(ThreadLocal::new()),
            manager_config,
            client,
            config,
        })
    }

    /// This thread's read connection, prepared on first use on this thread's runtime.
    fn reader(&self) -> Result<ConnectionManager, RedisError> {
        let open = || {
            ConnectionManager::new_lazy_with_config(
                self.client.clone(),
                self.manager_config.clone(),
            )
        };
        Ok(self.readers.get_or_try(open)?.clone())
    }

    /// Runs one command on the shared connection with the response bound.
    pub(crate) async fn bounded<T: redis::FromRedisValue>(
        &self,
        command: &redis::Cmd,
    ) -> Result<T, RedisError> {
        let mut connection = self.connection.clone();
        self.timed(async { command.query_async::<T>(&mut connection).await })
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

    /// GET, on this thread's read connection: the raw bytes stored under `key`, for tests
    /// and tooling.
    ///
    /// # Errors
    ///
    /// When Redis cannot be reached or does not answer within `response_timeout`.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, RedisError> {
        let mut connection = self.reader()?;
        self.timed(async {
            redis::cmd("GET")
                .arg(key)
                .query_async(&mut connection)
                .await
        })
        .await
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

    /// SET NX PX: stores `value` only if the key is absent; `true` if it did.
    pub(crate) async fn set_nx_px(
        &self,
        key: &str,
        value: &str,
        ttl_ms: u64,
    ) -> Result<bool, RedisError> {
        let reply: Option<String> = self
            .bounded(
                redis::cmd("SET")
                    .arg(key)
                    .arg(value)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl_ms.max(1)),
            )
            .await?;
        Ok(reply.is_some())
    }

    /// Deletes `key` only if it still holds `value`, atomically: releasing a lease must not
    /// delete a newer holder's lease after ours ran out.
    pub(crate) async fn delete_if_equals(
        &self,
        key: &str,
        value: &str,
    ) -> Result<bool, RedisError> {
        const SCRIPT: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
                              return redis.call('DEL', KEYS[1]) else return 0 end";
        let deleted: i64 = self
            .bounded(redis::cmd("EVAL").arg(SCRIPT).arg(1).arg(key).arg(value))
            .await?;
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

    /// Every key matching `pattern` (SCAN MATCH, each step bounded). It walks the whole
    /// keyspace: for tests and tooling, never for a request path.
    ///
    /// # Errors
    ///
    /// When Redis cannot be reached or a step does not answer within `response_timeout`.
    pub async fn scan(&self, pattern: &str) -> Result<Vec<String>, RedisError> {
        let mut keys = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (next, batch): (u64, Vec<String>) = self
                .bounded(
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(pattern)
                        .arg("COUNT")
                        .arg(1000),
                )
                .await?;
            keys.extend(batch);
            if next == 0 {
                return Ok(keys);
            }
            cursor = next;
        }
    }

    /// A dedicated connection subscribed to `channel` (pub/sub needs its own connection).
    pub(crate) async fn subscribe(&self, channel: &str) -> Result<redis::aio::PubSub, RedisError> {
        let bound = self.config.connection_timeout;
        let client = self.client.clone();
        let subscribe = async move {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        tokio::time::timeout(bound, subscribe)
            .await
            .map_err(|_| RedisError::Timeout(bound))?
            .map_err(RedisError::from)
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
