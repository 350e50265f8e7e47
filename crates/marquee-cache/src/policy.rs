//! [`CachePolicy`]: how long the entries of one key group live.
//!
//! Every entry written at the same moment with the same TTL expires at the same moment, and
//! the reads that follow all miss together (a cache avalanche). Spreading each TTL uniformly
//! over `[base_ttl, base_ttl + jitter]` spreads those expiries over the jitter window; with
//! the defaults (200 s + 0..60 s) the misses of a burst of writes arrive over a minute
//! instead of in one second.

use std::time::Duration;

use rand::Rng;
use serde::Deserialize;

use crate::error::ConfigError;

/// The lifetime rules of one key group.
///
/// ```
/// use std::time::Duration;
/// use marquee_cache::CachePolicy;
///
/// // Seat maps change with every booking: seconds, not minutes.
/// let seats = CachePolicy::with_ttl(Duration::from_secs(2), Duration::from_secs(1))
///     .with_stale_grace(Duration::from_secs(10));
/// assert_eq!(seats.window(), (Duration::from_secs(2), Duration::from_secs(3)));
/// let ttl = seats.ttl();
/// assert!(ttl >= Duration::from_secs(2) && ttl <= Duration::from_secs(3));
/// assert_eq!(seats.longest_life(), Duration::from_secs(30 + 10)); // the negative TTL is longer
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct CachePolicy {
    /// The shortest lifetime an entry gets. Default 200 s.
    #[serde(with = "humantime_serde")]
    pub base_ttl: Duration,
    /// The most added to `base_ttl`, drawn uniformly per write. Zero turns jitter off.
    /// Default 60 s.
    #[serde(with = "humantime_serde")]
    pub jitter: Duration,
    /// How long "does not exist" is remembered, so that lookups of an id that does not
    /// exist reach the source once per this period instead of every time (cache
    /// penetration). Default 30 s.
    #[serde(with = "humantime_serde")]
    pub negative_ttl: Duration,
    /// How long past its TTL an entry is kept to be served if reloading it fails, or while
    /// another instance reloads it. Bounds staleness. Zero disables stale serving.
    /// Default 60 s.
    #[serde(with = "humantime_serde")]
    pub stale_grace: Duration,
    /// XFetch's beta: how eagerly a read recomputes an entry before it expires. 0 disables
    /// early recomputation; 1 is the paper's optimum; above 1 refreshes earlier. Default 1.
    pub early_refresh_beta: f64,
}

impl Default for CachePolicy {
    fn default() -> Self {
        Self {
            base_ttl: Duration::from_secs(200),
            jitter: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(30),
            stale_grace: Duration::from_secs(60),
            early_refresh_beta: 1.0,
        }
    }
}

impl CachePolicy {
    /// A policy with these TTL bounds and every other setting at its default.
    pub fn with_ttl(base_ttl: Duration, jitter: Duration) -> Self {
        Self {
            base_ttl,
            jitter,
            ..Self::default()
        }
    }

    /// This policy with `negative_ttl` set.
    #[must_use]
    pub fn with_negative_ttl(self, negative_ttl: Duration) -> Self {
        Self {
            negative_ttl,
            ..self
        }
    }

    /// This policy with `stale_grace` set.
    #[must_use]
    pub fn with_stale_grace(self, stale_grace: Duration) -> Self {
        Self {
            stale_grace,
            ..self
        }
    }

    /// This policy with `early_refresh_beta` set.
    #[must_use]
    pub fn with_early_refresh_beta(self, early_refresh_beta: f64) -> Self {
        Self {
            early_refresh_beta,
            ..self
        }
    }

    /// Checks the bounds. Redis keeps TTLs in milliseconds, so anything below 1 ms would mean
    /// "no expiry" or an error there.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the setting and why its value is refused.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |field, reason: String| Err(ConfigError::new(field, reason));
        if self.base_ttl < Duration::from_millis(1) {
            return fail(
                "base_ttl",
                format!("must be at least 1ms, got {:?}", self.base_ttl),
            );
        }
        if self.negative_ttl < Duration::from_millis(1) {
            return fail(
                "negative_ttl",
                format!("must be at least 1ms, got {:?}", self.negative_ttl),
            );
        }
        if !(self.early_refresh_beta.is_finite() && self.early_refresh_beta >= 0.0) {
            return fail(
                "early_refresh_beta",
                format!("must be 0 or more, got {}", self.early_refresh_beta),
            );
        }
        Ok(())
    }

    /// A fresh TTL for one write: `base_ttl` plus a uniform draw from `0..=jitter`, at
    /// millisecond resolution (Redis's).
    pub fn ttl(&self) -> Duration {
        let jitter_ms = u64::try_from(self.jitter.as_millis()).unwrap_or(u64::MAX);
        let extra = if jitter_ms == 0 {
            0
        } else {
            rand::rng().random_range(0..=jitter_ms)
        };
        self.base_ttl + Duration::from_millis(extra)
    }

    /// The window every TTL from [`CachePolicy::ttl`] falls in.
    pub fn window(&self) -> (Duration, Duration) {
        (self.base_ttl, self.base_ttl + self.jitter)
    }

    /// The longest an entry of this policy can live, stale grace included: the longest
    /// TTL (`base_ttl + jitter`, or `negative_ttl` if that is longer) plus `stale_grace`.
    pub fn longest_life(&self) -> Duration {
        self.window()
            .1
            .max(self.negative_ttl)
            .saturating_add(self.stale_grace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_originals_200s_plus_up_to_60s() {
        let policy = CachePolicy::default();
        assert_eq!(
            policy.window(),
            (Duration::from_secs(200), Duration::from_secs(260))
        );
        assert_eq!(policy.validate(), Ok(()));
    }

    #[test]
    fn ttls_fall_in_the_window_and_spread_over_it() {
        let policy = CachePolicy::default();
        let (low, high) = policy.window();
        let mut per_second = [0u32; 61];
        let draws = 10_000;
        for _ in 0..draws {
            let ttl = policy.ttl();
            assert!(ttl >= low && ttl <= high, "{ttl:?} outside the window");
            per_second[(ttl - low).as_secs() as usize] += 1;
        }
        // Uniform over 60 s: about 1.7 % per second; no second may hold 5 %.
        let busiest = per_second.iter().max().copied().unwrap_or(0);
        assert!(
            busiest < draws / 20,
            "busiest second holds {busiest} of {draws}"
        );
    }

    #[test]
    fn the_longest_life_counts_the_longer_ttl_and_the_grace() {
        assert_eq!(
            CachePolicy::default().longest_life(),
            Duration::from_secs(200 + 60 + 60)
        );
        let short = CachePolicy {
            base_ttl: Duration::from_secs(2),
            jitter: Duration::from_secs(1),
            stale_grace: Duration::from_secs(10),
            ..CachePolicy::default()
        };
        // The 30 s negative TTL outlives the 3 s of a value.
        assert_eq!(short.longest_life(), Duration::from_secs(30 + 10));
    }

    #[test]
    fn zero_jitter_gives_the_base_ttl() {
        let policy = CachePolicy::with_ttl(Duration::from_secs(5), Duration::ZERO);
        assert_eq!(policy.ttl(), Duration::from_secs(5));
    }

    #[test]
    fn out_of_range_settings_name_their_field() {
        let bad = |policy: CachePolicy| policy.validate().map_err(|e| e.field);
        let base = CachePolicy::default();
        assert_eq!(
            bad(CachePolicy {
                base_ttl: Duration::ZERO,
                ..base
            }),
            Err("base_ttl")
        );
        assert_eq!(
            bad(CachePolicy {
                negative_ttl: Duration::ZERO,
                ..base
            }),
            Err("negative_ttl")
        );
        assert_eq!(
            bad(CachePolicy {
                early_refresh_beta: -1.0,
                ..base
            }),
            Err("early_refresh_beta")
        );
        assert_eq!(
            bad(CachePolicy {
                early_refresh_beta: f64::NAN,
                ..base
            }),
            Err("early_refresh_beta")
        );
    }
}
