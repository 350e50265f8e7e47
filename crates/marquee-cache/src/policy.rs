//! [`CachePolicy`]: how long an entry lives.
//!
//! Every entry written at the same moment with the same TTL expires at the same moment, and
//! the reads that follow all miss together (a cache avalanche). Spreading each TTL uniformly
//! over `[base_ttl, base_ttl + jitter]` spreads those expiries over the jitter window; with
//! the defaults (200 s + 0..60 s) the misses of a burst of writes arrive over a minute
//! instead of in one second.

use std::time::Duration;

use rand::Rng;
use serde::Deserialize;

/// The lifetime of entries of one key group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CachePolicy {
    /// The shortest lifetime an entry gets. Default 200 s.
    #[serde(with = "humantime_serde")]
    pub base_ttl: Duration,
    /// The most added to `base_ttl`, drawn uniformly per write. Zero turns jitter off.
    /// Default 60 s.
    #[serde(with = "humantime_serde")]
    pub jitter: Duration,
}

impl Default for CachePolicy {
    fn default() -> Self {
        Self {
            base_ttl: Duration::from_secs(200),
            jitter: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct CachePolicyError {
    pub field: &'static str,
    pub reason: String,
}

impl CachePolicy {
    /// Checks the bounds. Redis keeps TTLs in milliseconds, so anything below 1 ms would mean
    /// "no expiry" or an error there.
    pub fn validate(&self) -> Result<(), CachePolicyError> {
        if self.base_ttl < Duration::from_millis(1) {
            return Err(CachePolicyError {
                field: "base_ttl",
                reason: format!("must be at least 1ms, got {:?}", self.base_ttl),
            });
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
    fn zero_jitter_gives_the_base_ttl() {
        let policy = CachePolicy {
            base_ttl: Duration::from_secs(5),
            jitter: Duration::ZERO,
        };
        assert_eq!(policy.ttl(), Duration::from_secs(5));
        assert!(
            CachePolicy {
                base_ttl: Duration::ZERO,
                ..policy
            }
            .validate()
            .is_err()
        );
    }
}
