//! [`CacheConfig`]: how the cache engine behaves, independent of any key group.
//!
//! The structs are `#[non_exhaustive]`, so that a setting added later is not a breaking
//! change: start from `default()` (or deserialise them with serde) and set the fields you
//! want.
//!
//! ```
//! use std::time::Duration;
//! use marquee_cache::CacheConfig;
//!
//! let mut config = CacheConfig::default();
//! config.namespace = "shop:v3".to_owned();
//! config.metrics_prefix = "shop_cache".to_owned();
//! config.l1_ttl = Duration::from_millis(500);
//! config.refresh.enabled = false;
//! assert_eq!(config.validate(), Ok(()));
//!
//! config.metrics_prefix = "shop-cache".to_owned();
//! assert_eq!(config.validate().unwrap_err().field, "metrics_prefix");
//! ```

use std::time::Duration;

use serde::Deserialize;

use crate::breaker::BreakerConfig;
use crate::error::ConfigError;

/// The engine's settings: key namespace, metric names, tiers, lease, fallback bound,
/// breaker and refresher.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct CacheConfig {
    /// Prefix of every key, with a version: bump it when the shape of cached values
    /// changes, and old values are never read again (they expire on their own). Two
    /// services sharing one Redis must not share a namespace. Default `cache:v1`.
    pub namespace: String,
    /// This cache's name, the `cache` label of its metrics: it tells two caches in one
    /// process apart. Default `default`.
    pub name: String,
    /// The first part of every metric's name: `{metrics_prefix}_hits_total`, ... A
    /// Prometheus metric name: letters, digits, `_` and `:`, not starting with a digit.
    /// Default `cache`.
    pub metrics_prefix: String,
    /// Entries the in-process tier holds at most. Default 100,000.
    pub local_capacity: u64,
    /// With Redis: how long the in-process L1 keeps an entry. Short, because an L1 entry
    /// is only dropped early by an invalidation message; zero turns L1 off. Default 1 s.
    #[serde(with = "humantime_serde")]
    pub l1_ttl: Duration,
    /// How long a loading instance holds the Redis lease for a key. Bounds how long other
    /// instances defer to a holder that crashed. Default 2 s.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// How long an instance that lost the lease waits for the holder's value before
    /// loading itself. Default 1 s.
    #[serde(with = "humantime_serde")]
    pub lease_wait: Duration,
    /// Loads that may run at once while Redis is unavailable. A Redis outage turns every
    /// read into a load; this keeps them from exhausting the database pool. Default 4.
    pub fallback_concurrency: usize,
    /// When to stop calling a failing Redis, and for how long.
    pub breaker: BreakerConfig,
    /// The hot-key refresher.
    pub refresh: RefreshConfig,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            namespace: "cache:v1".to_owned(),
            name: "default".to_owned(),
            metrics_prefix: "cache".to_owned(),
            local_capacity: 100_000,
            l1_ttl: Duration::from_secs(1),
            lease_ttl: Duration::from_secs(2),
            lease_wait: Duration::from_secs(1),
            fallback_concurrency: 4,
            breaker: BreakerConfig::default(),
            refresh: RefreshConfig::default(),
        }
    }
}

/// The hot-key refresher: the original system's "batch job that refreshes hot keys", done
/// continuously. Every `interval` it takes the keys read most since the last round and
/// reloads those that expire within `ahead`, so the hottest keys never miss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RefreshConfig {
    /// Whether the refresher runs. It runs on tokio: a cache built outside a runtime with
    /// this on is refused ([`BuildError::NoRuntime`](crate::BuildError::NoRuntime)).
    /// Default true.
    pub enabled: bool,
    /// Default 5 s.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Keys refreshed per round at most, hottest first. Default 100.
    pub hot_keys: usize,
    /// Reads of a key within a round that make it a candidate. Default 2.
    pub min_reads: u32,
    /// A hot key is reloaded when it expires within this. Default 15 s.
    #[serde(with = "humantime_serde")]
    pub ahead: Duration,
}

impl Default for RefreshConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_secs(5),
            hot_keys: 100,
            min_reads: 2,
            ahead: Duration::from_secs(15),
        }
    }
}

impl CacheConfig {
    /// Checks every setting; the error names the first one out of range.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the setting and why its value is refused.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |field, reason: &str| Err(ConfigError::new(field, reason));
        if self.namespace.is_empty() || self.namespace.contains(char::is_whitespace) {
            return fail("namespace", "must be non-empty and contain no spaces");
        }
        // The braces around each key are its Redis Cluster hash tag, and Redis takes the
        // first pair in a key: one in the namespace would put every key in one slot, or an
        // entry and its lease in different ones.
        if self.namespace.contains(['{', '}']) {
            return fail("namespace", "must contain no braces ({ or })");
        }
        if self.name.is_empty() {
            return fail("name", "must be non-empty");
        }
        if !is_metric_name(&self.metrics_prefix) {
            return fail(
                "metrics_prefix",
                "must be a Prometheus metric name: letters, digits, _ and :, not starting with a digit",
            );
        }
        if self.local_capacity == 0 {
            return fail("local_capacity", "must be at least 1");
        }
        if self.lease_ttl < Duration::from_millis(1) {
            return fail("lease_ttl", "must be at least 1ms");
        }
        if self.fallback_concurrency == 0 {
            return fail("fallback_concurrency", "must be at least 1");
        }
        if self.breaker.failure_threshold == 0 {
            return fail("breaker.failure_threshold", "must be at least 1");
        }
        if self.breaker.open_for < Duration::from_millis(10) {
            // Shorter, and every call would be let through as a probe: no breaker at all.
            return fail("breaker.open_for", "must be at least 10ms");
        }
        if self.refresh.enabled && self.refresh.interval < Duration::from_millis(10) {
            return fail("refresh.interval", "must be at least 10ms");
        }
        Ok(())
    }
}

/// Prometheus's rule for metric names: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_' || first == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}
