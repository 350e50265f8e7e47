//! [`PoolConfig`]: the connection pool's settings, named and defaulted like HikariCP's.
//!
//! Operators coming from Spring know these knobs by their HikariCP names; keeping the names
//! (in snake_case) and the defaults means a tuned `application.yml` carries over unchanged.
//! How each maps onto r2d2, and what Marquee adds where r2d2 has no equivalent, is in
//! `docs/configuration.md`.

use std::time::Duration;

use serde::Deserialize;

/// Settings of the database connection pool. Durations are written like `30s`, `250ms` or
/// `10m`; a zero duration disables the feature where HikariCP's does.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    /// `poolName`: the `pool` label of the pool's metrics. Default `marquee`.
    pub pool_name: String,
    /// `maximumPoolSize`: the most connections the pool opens, and so the most queries that
    /// run at once. Requests beyond it wait (see `connection_timeout`). Default 10.
    pub maximum_pool_size: u32,
    /// `minimumIdle`: connections kept open while idle. Default: equal to
    /// `maximum_pool_size`, a fixed-size pool, which is what HikariCP recommends: a burst
    /// then never waits for connections to be opened.
    pub minimum_idle: Option<u32>,
    /// `connectionTimeout`: how long a request waits for a free connection before it is
    /// answered with 503 and `Retry-After`. It also bounds opening a connection. Default 30 s;
    /// at least 250 ms.
    #[serde(with = "humantime_serde")]
    pub connection_timeout: Duration,
    /// `idleTimeout`: how long a connection above `minimum_idle` may sit idle before it is
    /// closed. Has no effect on a fixed-size pool. Zero keeps idle connections. Default 10 min;
    /// otherwise at least 10 s.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// `maxLifetime`: the age at which a connection is retired (when next idle), so that
    /// server-side limits and fail-overs are picked up. Each connection retires up to 2.5 %
    /// earlier, at random, so a pool opened at once does not reconnect at once. Zero keeps
    /// connections forever. Default 30 min; otherwise at least 30 s.
    #[serde(with = "humantime_serde")]
    pub max_lifetime: Duration,
    /// `validationTimeout`: the bound on checking that an idle connection is alive, and on
    /// noticing a dead link to PostgreSQL (libpq's `tcp_user_timeout`). Default 5 s; at least
    /// 250 ms and less than `connection_timeout`.
    #[serde(with = "humantime_serde")]
    pub validation_timeout: Duration,
    /// `leakDetectionThreshold`: a connection held longer than this is reported with a
    /// warning while it is still held. Zero (the default) turns the check off; otherwise at
    /// least 2 s.
    #[serde(with = "humantime_serde")]
    pub leak_detection_threshold: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            pool_name: "marquee".to_owned(),
            maximum_pool_size: 10,
            minimum_idle: None,
            connection_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(10 * 60),
            max_lifetime: Duration::from_secs(30 * 60),
            validation_timeout: Duration::from_secs(5),
            leak_detection_threshold: Duration::ZERO,
        }
    }
}

/// A pool setting that is out of range. `field` is the setting's name in [`PoolConfig`] or
/// [`SessionTimeouts`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct PoolConfigError {
    pub field: &'static str,
    pub reason: String,
}

impl PoolConfig {
    const MIN_TIMEOUT: Duration = Duration::from_millis(250);

    /// `minimum_idle`, resolved against its default.
    pub fn min_idle(&self) -> u32 {
        self.minimum_idle.unwrap_or(self.maximum_pool_size)
    }

    /// Checks every bound; the pool refuses to build with a config that fails it.
    pub fn validate(&self) -> Result<(), PoolConfigError> {
        let fail = |field, reason: String| Err(PoolConfigError { field, reason });
        if self.pool_name.is_empty() {
            return fail("pool_name", "must not be empty".into());
        }
        if self.maximum_pool_size == 0 {
            return fail("maximum_pool_size", "must be at least 1".into());
        }
        if self.min_idle() > self.maximum_pool_size {
            return fail(
                "minimum_idle",
                format!(
                    "must not exceed maximum_pool_size ({}), got {}",
                    self.maximum_pool_size,
                    self.min_idle()
                ),
            );
        }
        if self.connection_timeout < Self::MIN_TIMEOUT {
            return fail(
                "connection_timeout",
                format!("must be at least 250ms, got {:?}", self.connection_timeout),
            );
        }
        if self.validation_timeout < Self::MIN_TIMEOUT
            || self.validation_timeout >= self.connection_timeout
        {
            return fail(
                "validation_timeout",
                format!(
                    "must be at least 250ms and less than connection_timeout ({:?}), got {:?}",
                    self.connection_timeout, self.validation_timeout
                ),
            );
        }
        if !self.idle_timeout.is_zero() && self.idle_timeout < Duration::from_secs(10) {
            return fail(
                "idle_timeout",
                format!("must be 0 or at least 10s, got {:?}", self.idle_timeout),
            );
        }
        if !self.max_lifetime.is_zero() && self.max_lifetime < Duration::from_secs(30) {
            return fail(
                "max_lifetime",
                format!("must be 0 or at least 30s, got {:?}", self.max_lifetime),
            );
        }
        if !self.leak_detection_threshold.is_zero()
            && self.leak_detection_threshold < Duration::from_secs(2)
        {
            return fail(
                "leak_detection_threshold",
                format!(
                    "must be 0 or at least 2s, got {:?}",
                    self.leak_detection_threshold
                ),
            );
        }
        Ok(())
    }
}

/// Bounds every pooled connection applies to its own statements, so that a request never
/// waits without limit behind work it cannot see: a row lock held in `psql`, a long
/// migration, a second process writing to the same SQLite file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTimeouts {
    /// The longest a statement waits for a lock held by other work before it fails.
    /// PostgreSQL: the session's `lock_timeout`. SQLite: `busy_timeout`, the wait for the
    /// database's write lock. Default 2 s; at least 1 ms.
    pub lock_timeout: Duration,
    /// The longest one statement may run before the database cancels it. PostgreSQL only
    /// (SQLite has no such bound): the session's `statement_timeout`. Migrations and seeding
    /// run without it. Zero turns it off. Default 5 s.
    pub statement_timeout: Duration,
}

impl Default for SessionTimeouts {
    fn default() -> Self {
        Self {
            lock_timeout: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(5),
        }
    }
}

impl SessionTimeouts {
    /// Both backends take these bounds as a C `int` of milliseconds.
    const MAX: Duration = Duration::from_millis(i32::MAX as u64);

    /// Checks both bounds; `field` of the error names the one at fault.
    pub fn validate(&self) -> Result<(), PoolConfigError> {
        let out_of_range = |value: Duration, zero_allowed: bool| {
            (value < Duration::from_millis(1) && !(zero_allowed && value.is_zero()))
                || value > Self::MAX
        };
        if out_of_range(self.lock_timeout, false) {
            return Err(PoolConfigError {
                field: "lock_timeout",
                reason: format!(
                    "must be at least 1ms and at most {}ms, got {:?}",
                    Self::MAX.as_millis(),
                    self.lock_timeout
                ),
            });
        }
        if out_of_range(self.statement_timeout, true) {
            return Err(PoolConfigError {
                field: "statement_timeout",
                reason: format!(
                    "must be 0 or at least 1ms and at most {}ms, got {:?}",
                    Self::MAX.as_millis(),
                    self.statement_timeout
                ),
            });
        }
        Ok(())
    }

    /// `lock_timeout` in whole milliseconds, as both backends take it.
    pub(crate) fn lock_timeout_ms(&self) -> u128 {
        self.lock_timeout.as_millis()
    }

    /// `statement_timeout` in whole milliseconds; 0 is off.
    pub(crate) fn statement_timeout_ms(&self) -> u128 {
        self.statement_timeout.as_millis()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_timeouts_default_and_refuse_unbounded_lock_waits() {
        let defaults = SessionTimeouts::default();
        assert_eq!(defaults.lock_timeout, Duration::from_secs(2));
        assert_eq!(defaults.statement_timeout, Duration::from_secs(5));
        assert_eq!(defaults.validate(), Ok(()));
        let off = SessionTimeouts {
            statement_timeout: Duration::ZERO,
            ..defaults
        };
        assert_eq!(off.validate(), Ok(()));
        for (field, timeouts) in [
            (
                "lock_timeout",
                SessionTimeouts {
                    lock_timeout: Duration::ZERO,
                    ..defaults
                },
            ),
            (
                "lock_timeout",
                SessionTimeouts {
                    lock_timeout: Duration::from_micros(500),
                    ..defaults
                },
            ),
            (
                "statement_timeout",
                SessionTimeouts {
                    statement_timeout: Duration::from_secs(30 * 24 * 3600),
                    ..defaults
                },
            ),
        ] {
            assert_eq!(timeouts.validate().map_err(|e| e.field), Err(field));
        }
    }

    #[test]
    fn defaults_match_hikaricp_and_validate() {
        let config = PoolConfig::default();
        assert_eq!(config.maximum_pool_size, 10);
        assert_eq!(config.min_idle(), 10);
        assert_eq!(config.connection_timeout, Duration::from_secs(30));
        assert_eq!(config.idle_timeout, Duration::from_secs(600));
        assert_eq!(config.max_lifetime, Duration::from_secs(1800));
        assert_eq!(config.validation_timeout, Duration::from_secs(5));
        assert!(config.leak_detection_threshold.is_zero());
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn out_of_range_settings_name_their_field() {
        let cases: [(&str, PoolConfig); 6] = [
            (
                "maximum_pool_size",
                PoolConfig {
                    maximum_pool_size: 0,
                    ..Default::default()
                },
            ),
            (
                "minimum_idle",
                PoolConfig {
                    minimum_idle: Some(11),
                    ..Default::default()
                },
            ),
            (
                "connection_timeout",
                PoolConfig {
                    connection_timeout: Duration::from_millis(10),
                    ..Default::default()
                },
            ),
            (
                "validation_timeout",
                PoolConfig {
                    connection_timeout: Duration::from_secs(1),
                    validation_timeout: Duration::from_secs(1),
                    ..Default::default()
                },
            ),
            (
                "max_lifetime",
                PoolConfig {
                    max_lifetime: Duration::from_secs(5),
                    ..Default::default()
                },
            ),
            (
                "leak_detection_threshold",
                PoolConfig {
                    leak_detection_threshold: Duration::from_millis(500),
                    ..Default::default()
                },
            ),
        ];
        for (field, config) in cases {
            assert_eq!(config.validate().map_err(|e| e.field), Err(field));
        }
    }
}
