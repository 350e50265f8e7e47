//! [`CircuitBreaker`]: stop calling a dependency that keeps failing, and probe for its return.
//!
//! Without it, every request during a Redis outage would spend the full response timeout
//! on a call that is going to fail. With it, after `failure_threshold` consecutive failures
//! the breaker opens and calls are skipped outright for `open_for`; then one call at a time
//! is let through as a probe, and its success closes the breaker.

use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;

/// When the circuit breaker in front of Redis opens, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker. Default 5.
    pub failure_threshold: u32,
    /// How long an open breaker skips calls before letting a probe through. Default 2 s.
    #[serde(with = "humantime_serde")]
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_for: Duration::from_secs(2),
        }
    }
}

/// The breaker's state, as exported in metrics (`0` closed, `1` open, `2` half-open).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum BreakerState {
    /// Redis is called.
    Closed = 0,
    /// Redis is failing: calls are skipped until `open_for` has passed.
    Open = 1,
    /// One probe call at a time is let through; its success closes the breaker.
    HalfOpen = 2,
}

/// Called on every change of state.
pub(crate) struct OnChange(pub Box<dyn Fn(BreakerState) + Send + Sync>);

impl std::fmt::Debug for OnChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnChange(..)")
    }
}

/// A lock-free breaker: the closed fast path is one atomic load.
#[derive(Debug)]
pub(crate) struct CircuitBreaker {
    config: BreakerConfig,
    state: AtomicU8,
    failures: AtomicU32,
    /// While open: when probing may start. While half-open: when the current probe is
    /// considered lost (its caller went away) and another may start. Milliseconds since
    /// `epoch`.
    deadline: AtomicU64,
    epoch: Instant,
    on_change: OnChange,
}

impl CircuitBreaker {
    pub fn new(config: BreakerConfig, on_change: OnChange) -> Self {
        Self {
            config,
            state: AtomicU8::new(BreakerState::Closed as u8),
            failures: AtomicU32::new(0),
            deadline: AtomicU64::new(0),
            epoch: Instant::now(),
            on_change,
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn open_for_ms(&self) -> u64 {
        u64::try_from(self.config.open_for.as_millis()).unwrap_or(u64::MAX)
    }

    pub fn state(&self) -> BreakerState {
        match self.state.load(Ordering::Acquire) {
            0 => BreakerState::Closed,
            1 => BreakerState::Open,
            _ => BreakerState::HalfOpen,
        }
    }

    /// Whether a call may go ahead now. A `true` while open or half-open makes the caller
    /// the probe: it must report [`CircuitBreaker::success`] or [`CircuitBreaker::failure`].
    pub fn allow(&self) -> bool {
        match self.state() {
            BreakerState::Closed => true,
            BreakerState::Open | BreakerState::HalfOpen => {
                let now = self.now();
                let deadline = self.deadline.load(Ordering::Acquire);
                if now < deadline {
                    return false;
                }
                // One caller wins the right to probe until the next deadline.
                let won = self
                    .deadline
                    .compare_exchange(
                        deadline,
                        now.saturating_add(self.open_for_ms()),
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    )
                    .is_ok();
                if won {
                    self.transition(BreakerState::HalfOpen);
                }
                won
            }
        }
    }

    pub fn success(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
        if self.state() != BreakerState::Closed {
            self.transition(BreakerState::Closed);
        }
    }

    pub fn failure(&self) {
        let failures = self
            .failures
            .fetch_add(1, Ordering::AcqRel)
            .saturating_add(1);
        let state = self.state();
        if state == BreakerState::HalfOpen
            || (state == BreakerState::Closed && failures >= self.config.failure_threshold)
        {
            self.deadline.store(
                self.now().saturating_add(self.open_for_ms()),
                Ordering::Release,
            );
            self.transition(BreakerState::Open);
        }
    }

    fn transition(&self, to: BreakerState) {
        let from = self.state.swap(to as u8, Ordering::AcqRel);
        if from != to as u8 {
            (self.on_change.0)(to);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(open_for: Duration) -> CircuitBreaker {
        CircuitBreaker::new(
            BreakerConfig {
                failure_threshold: 3,
                open_for,
            },
            OnChange(Box::new(|_| {})),
        )
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let b = breaker(Duration::from_secs(60));
        b.failure();
        b.failure();
        b.success();
        b.failure();
        b.failure();
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.allow());
        b.failure();
        assert_eq!(b.state(), BreakerState::Open);
        assert!(!b.allow());
    }

    /// A breaker opened by three failures (it opens at 3), once its 20 ms have passed.
    fn ready_to_probe() -> CircuitBreaker {
        let b = breaker(Duration::from_millis(20));
        for _ in 0..3 {
            b.failure();
        }
        assert!(!b.allow());
        std::thread::sleep(Duration::from_millis(30));
        b
    }

    #[test]
    fn lets_one_probe_through_then_closes_on_success() {
        let b = ready_to_probe();
        assert!(b.allow(), "the probe goes through");
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(!b.allow(), "only one probe at a time");
        b.success();
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.allow());
    }

    #[test]
    fn a_failed_probe_reopens() {
        let b = ready_to_probe();
        assert!(b.allow());
        b.failure();
        assert_eq!(b.state(), BreakerState::Open);
        assert!(!b.allow());
    }

    #[test]
    fn a_lost_probe_is_replaced_after_open_for() {
        let b = ready_to_probe();
        assert!(b.allow());
        // The probe's caller never reports back.
        std::thread::sleep(Duration::from_millis(30));
        assert!(b.allow(), "a new probe may start");
    }
}
