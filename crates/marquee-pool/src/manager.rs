//! The r2d2 connection manager: when a connection is opened, checked, retired, discarded.

use std::fmt;
use std::time::{Duration, Instant};

use diesel::r2d2::R2D2Connection;
use rand::Rng;

use crate::config::PoolConfig;
use crate::connector::Connector;

/// A connection as the pool holds it: the connection, when it must retire, and when it was
/// last returned.
pub(crate) struct Managed<C> {
    pub(crate) conn: C,
    retire_at: Option<Instant>,
    last_returned: Instant,
    /// Set when a unit of work found the link dead. diesel's own `is_broken` only looks at
    /// the transaction state, so without this a dead connection would go back into the pool.
    pub(crate) lost: bool,
}

impl<C> fmt::Debug for Managed<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Managed")
            .field("retire_at", &self.retire_at)
            .field("lost", &self.lost)
            .finish_non_exhaustive()
    }
}

/// Why r2d2 got no connection from the manager. r2d2 passes these to the pool's error
/// handler, which tells an outage (`Connect`) from routine replacement (the others).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ManagerError {
    /// Opening a connection failed.
    #[error(transparent)]
    Connect(diesel::ConnectionError),
    /// An idle connection reached its (jittered) `max_lifetime` and was retired at checkout.
    #[error("retired at checkout: older than max_lifetime ({0:?}, less its jitter)")]
    Retired(Duration),
    /// An idle connection failed its validation ping at checkout.
    #[error("failed its validation ping: {0}")]
    Ping(diesel::result::Error),
}

/// Opens connections for r2d2 through the caller's [`Connector`], and decides when one is no
/// longer fit to hand out.
pub(crate) struct Manager<K> {
    pub(crate) connector: K,
    pub(crate) config: PoolConfig,
}

impl<K> fmt::Debug for Manager<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manager")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A connection that was used this recently is handed out without a ping. HikariCP does the
/// same (`aliveBypassWindowMs`): under load, pinging before every checkout would double the
/// round trips for nothing.
const ALIVE_BYPASS_WINDOW: Duration = Duration::from_millis(500);

impl<K> Manager<K> {
    pub(crate) fn retire_at(&self, now: Instant) -> Option<Instant> {
        let lifetime = self.config.max_lifetime;
        if lifetime.is_zero() {
            return None;
        }
        // HikariCP's variance: up to 2.5 % off each connection's lifetime, so that a pool
        // whose connections were opened together does not close them all in the same second.
        let spread = lifetime / 40;
        let jitter = rand::rng().random_range(Duration::ZERO..=spread);
        Some(now + lifetime - jitter)
    }
}

impl<K: Connector> r2d2::ManageConnection for Manager<K> {
    type Connection = Managed<K::Connection>;
    type Error = ManagerError;

    fn connect(&self) -> Result<Self::Connection, ManagerError> {
        let started = Instant::now();
        let conn = self.connector.connect().map_err(ManagerError::Connect)?;
        let now = Instant::now();
        crate::metrics::created(&self.config.pool_name, now - started);
        Ok(Managed {
            conn,
            retire_at: self.retire_at(now),
            last_returned: now,
            lost: false,
        })
    }

    fn is_valid(&self, managed: &mut Self::Connection) -> Result<(), ManagerError> {
        let now = Instant::now();
        if managed.retire_at.is_some_and(|at| now >= at) {
            return Err(ManagerError::Retired(self.config.max_lifetime));
        }
        if now.duration_since(managed.last_returned) < ALIVE_BYPASS_WINDOW {
            return Ok(());
        }
        managed.conn.ping().map_err(ManagerError::Ping)
    }

    fn has_broken(&self, managed: &mut Self::Connection) -> bool {
        let now = Instant::now();
        managed.last_returned = now;
        managed.lost || managed.conn.is_broken() || managed.retire_at.is_some_and(|at| now >= at)
    }
}

#[cfg(test)]
mod tests {
    use diesel::SqliteConnection;
    use r2d2::ManageConnection;

    use super::*;
    use crate::UrlConnector;

    fn manager() -> Manager<UrlConnector<SqliteConnection>> {
        Manager {
            connector: UrlConnector::new(":memory:"),
            config: PoolConfig::default(),
        }
    }

    #[test]
    fn lifetimes_are_spread_over_two_and_a_half_percent() {
        let manager = manager();
        let now = Instant::now();
        let lifetime = manager.config.max_lifetime;
        let retirements: Vec<Duration> = (0..200)
            .map(|_| manager.retire_at(now).expect("lifetime set") - now)
            .collect();
        assert!(
            retirements
                .iter()
                .all(|d| *d <= lifetime && *d >= lifetime - lifetime / 40)
        );
        let distinct: std::collections::HashSet<_> = retirements.iter().collect();
        assert!(distinct.len() > 150, "jitter should make lifetimes differ");
    }

    /// A connection past its lifetime is refused at checkout as retired, not as a broken
    /// transaction manager (which would read as a bug in the caller's transaction handling).
    #[test]
    fn a_connection_past_its_lifetime_is_refused_as_retired() {
        let manager = manager();
        let mut conn = manager.connect().expect("opens");
        assert!(manager.is_valid(&mut conn).is_ok());
        conn.retire_at = Some(Instant::now());
        let error = manager.is_valid(&mut conn).expect_err("retired");
        assert!(matches!(error, ManagerError::Retired(_)), "{error:?}");
        assert!(error.to_string().contains("max_lifetime"), "{error}");
        assert!(manager.has_broken(&mut conn));
    }

    #[test]
    fn a_connection_is_kept_forever_when_max_lifetime_is_zero() {
        let manager = Manager {
            config: PoolConfig {
                max_lifetime: Duration::ZERO,
                ..PoolConfig::default()
            },
            ..manager()
        };
        assert_eq!(manager.retire_at(Instant::now()), None);
    }
}
