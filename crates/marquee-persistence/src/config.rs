//! [`SessionTimeouts`]: the bounds each pooled connection applies to its own statements.
//!
//! The pool's own settings, [`PoolConfig`](marquee_pool::PoolConfig), are marquee-pool's;
//! these are the part that knows the two backends (`SET lock_timeout`, `PRAGMA
//! busy_timeout`).

use std::time::Duration;

use marquee_pool::PoolConfigError;

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
        let bounds = [
            ("lock_timeout", self.lock_timeout, false),
            ("statement_timeout", self.statement_timeout, true),
        ];
        for (field, value, zero_is_off) in bounds {
            let off = zero_is_off && value.is_zero();
            if (value < Duration::from_millis(1) && !off) || value > Self::MAX {
                return Err(PoolConfigError {
                    field,
                    reason: format!(
                        "must be {}at least 1ms and at most {}ms, got {value:?}",
                        if zero_is_off { "0 or " } else { "" },
                        Self::MAX.as_millis(),
                    ),
                });
            }
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
}
