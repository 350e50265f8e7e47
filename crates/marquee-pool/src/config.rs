//! [`PoolConfig`]: the pool's settings, named and defaulted like HikariCP's.
//!
//! Operators coming from Spring know these knobs by their HikariCP names; keeping the names
//! (in snake_case) and the defaults means a tuned `application.yml` carries over unchanged.

use std::time::Duration;

use serde::Deserialize;

/// Settings of the connection pool, with HikariCP's names and defaults.
///
/// It deserialises with serde: durations are written like `30s`, `250ms` or `10m`, unknown
/// fields are refused, and a missing field takes its default. A zero duration disables the
/// feature where HikariCP's does. [`Pool::build`](crate::Pool::build) calls
/// [`validate`](Self::validate) first.
///
/// ```
/// use std::time::Duration;
/// use marquee_pool::PoolConfig;
///
/// let config = PoolConfig {
///     maximum_pool_size: 4,
///     connection_timeout: Duration::from_secs(10),
///     ..PoolConfig::default()
/// };
/// assert_eq!(config.min_idle(), 4, "a fixed-size pool unless minimum_idle says otherwise");
/// assert_eq!(config.validate(), Ok(()));
///
/// let too_small = PoolConfig { maximum_pool_size: 0, ..PoolConfig::default() };
/// assert_eq!(too_small.validate().unwrap_err().field, "maximum_pool_size");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    /// `poolName`: the `pool` label of the pool's metrics, which tells two pools in one
    /// process apart. Default `pool`.
    pub pool_name: String,
    /// `maximumPoolSize`: the most connections the pool opens, and so the most units of work
    /// that run at once. Callers beyond it wait (see `connection_timeout`). Default 10.
    pub maximum_pool_size: u32,
    /// `minimumIdle`: connections kept open while idle. Default: equal to
    /// `maximum_pool_size`, a fixed-size pool, which is what HikariCP recommends: a burst
    /// then never waits for connections to be opened.
    pub minimum_idle: Option<u32>,
    /// `connectionTimeout`: how long a caller waits for a free connection before it gets
    /// [`PoolError::Busy`](crate::PoolError::Busy) (or `Unavailable`). It also bounds opening
    /// a connection. Default 30 s; at least 250 ms.
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
    /// `validationTimeout`: the bound on checking that a connection is alive (the pool's
    /// health check); a [`Connector`](crate::Connector) may also use it for its driver's own
    /// dead-link timeout. Default 5 s; at least 250 ms and less than `connection_timeout`.
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
            pool_name: "pool".to_owned(),
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

/// A setting that is out of range. `field` names the setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct PoolConfigError {
    /// The setting at fault, as its field is named (`maximum_pool_size`, ...).
    pub field: &'static str,
    /// What the setting must be, and what it was.
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

#[cfg(test)]
mod tests {
    use super::*;

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
        /// A field's name, and a change to the defaults that puts it out of range.
        type Case = (&'static str, fn(&mut PoolConfig));
        let cases: [Case; 7] = [
            ("pool_name", |c| c.pool_name = String::new()),
            ("maximum_pool_size", |c| c.maximum_pool_size = 0),
            ("minimum_idle", |c| c.minimum_idle = Some(11)),
            ("connection_timeout", |c| {
                c.connection_timeout = Duration::from_millis(10);
            }),
            ("validation_timeout", |c| {
                c.connection_timeout = Duration::from_secs(1);
                c.validation_timeout = Duration::from_secs(1);
            }),
            ("max_lifetime", |c| c.max_lifetime = Duration::from_secs(5)),
            ("leak_detection_threshold", |c| {
                c.leak_detection_threshold = Duration::from_millis(500);
            }),
        ];
        for (field, out_of_range) in cases {
            let mut config = PoolConfig::default();
            out_of_range(&mut config);
            assert_eq!(config.validate().map_err(|e| e.field), Err(field));
        }
    }
}
