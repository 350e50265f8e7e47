//! [`CacheConfig`]: how the cache engine behaves, independent of any key group.

use std::time::Duration;

use serde::Deserialize;

use crate::breaker::BreakerConfig;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Prefix of every key, with a version: bump it when the shape of cached values
    /// changes, and old values are never read again (they expire on their own).
    /// Default `marquee:v1`.
    pub namespace: String,
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
    /// Share one load among concurrent misses of a key (and, with Redis, among instances).
    /// Only for experiments that show what happens without it. Default true.
    pub single_flight: bool,
    pub breaker: BreakerConfig,
    pub refresh: RefreshConfig,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            namespace: "marquee:v1".to_owned(),
            local_capacity: 100_000,
            l1_ttl: Duration::from_secs(1),
            lease_ttl: Duration::from_secs(2),
            lease_wait: Duration::from_secs(1),
            fallback_concurrency: 4,
            single_flight: true,
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
pub struct RefreshConfig {
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

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct CacheConfigError {
    pub field: &'static str,
    pub reason: String,
}

impl CacheConfig {
    pub fn validate(&self) -> Result<(), CacheConfigError> {
        let fail = |field, reason: &str| {
            Err(CacheConfigError {
                field,
                reason: reason.to_owned(),
            })
        };
        if self.namespace.is_empty() || self.namespace.contains(char::is_whitespace) {
            return fail("namespace", "must be non-empty and contain no spaces");
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
