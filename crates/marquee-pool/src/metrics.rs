//! The pool's metrics under HikariCP's Micrometer names, so that dashboards built for a
//! Spring service's HikariCP panels work unchanged.
//!
//! They are emitted through the [`metrics`](https://docs.rs/metrics) facade, to whatever
//! recorder the process installs (none: they cost next to nothing). Every metric carries
//! the label `pool`, [`PoolConfig::pool_name`](crate::PoolConfig::pool_name). The gauges are
//! set by [`Pool::record_metrics`](crate::Pool::record_metrics); the counter and histograms
//! as things happen.

use std::time::Duration;

use crate::state::PoolState;

/// Gauge: open connections, busy or idle.
pub const CONNECTIONS: &str = "hikaricp_connections";
/// Gauge: connections in use.
pub const ACTIVE: &str = "hikaricp_connections_active";
/// Gauge: open connections not in use.
pub const IDLE: &str = "hikaricp_connections_idle";
/// Gauge: callers waiting for a connection.
pub const PENDING: &str = "hikaricp_connections_pending";
/// Gauge: `maximum_pool_size`.
pub const MAX: &str = "hikaricp_connections_max";
/// Gauge: `minimum_idle`.
pub const MIN: &str = "hikaricp_connections_min";
/// Counter: callers that got no connection within `connection_timeout`.
pub const TIMEOUTS: &str = "hikaricp_connections_timeout_total";
/// Histogram, seconds: the wait for a connection.
pub const ACQUIRE_SECONDS: &str = "hikaricp_connections_acquire_seconds";
/// Histogram, seconds: how long a connection was held.
pub const USAGE_SECONDS: &str = "hikaricp_connections_usage_seconds";
/// Histogram, seconds: how long opening a connection took.
pub const CREATION_SECONDS: &str = "hikaricp_connections_creation_seconds";

/// Registers each metric's help text with the installed recorder. Call it once, after the
/// recorder is installed.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(CONNECTIONS, "Open connections, busy or idle.");
    describe_gauge!(ACTIVE, "Connections in use.");
    describe_gauge!(IDLE, "Open connections not in use.");
    describe_gauge!(PENDING, "Requests waiting for a connection.");
    describe_gauge!(MAX, "maximumPoolSize.");
    describe_gauge!(MIN, "minimumIdle.");
    describe_counter!(
        TIMEOUTS,
        "Requests that got no connection within connectionTimeout."
    );
    describe_histogram!(
        ACQUIRE_SECONDS,
        Unit::Seconds,
        "Time to obtain a connection."
    );
    describe_histogram!(USAGE_SECONDS, Unit::Seconds, "Time a connection was held.");
    describe_histogram!(
        CREATION_SECONDS,
        Unit::Seconds,
        "Time to open a connection."
    );
}

pub(crate) fn state(pool: &str, state: PoolState) {
    let pool = pool.to_owned();
    metrics::gauge!(CONNECTIONS, "pool" => pool.clone()).set(f64::from(state.connections));
    metrics::gauge!(ACTIVE, "pool" => pool.clone()).set(f64::from(state.active));
    metrics::gauge!(IDLE, "pool" => pool.clone()).set(f64::from(state.idle));
    metrics::gauge!(PENDING, "pool" => pool.clone()).set(f64::from(state.pending));
    metrics::gauge!(MAX, "pool" => pool.clone()).set(f64::from(state.max));
    metrics::gauge!(MIN, "pool" => pool).set(f64::from(state.min));
}

/// Creates the timeout counter at zero, so alerts on its increase work from the start.
pub(crate) fn register(pool: &str) {
    metrics::counter!(TIMEOUTS, "pool" => pool.to_owned()).increment(0);
}

pub(crate) fn timeout(pool: &str) {
    metrics::counter!(TIMEOUTS, "pool" => pool.to_owned()).increment(1);
}

pub(crate) fn acquired(pool: &str, took: Duration) {
    metrics::histogram!(ACQUIRE_SECONDS, "pool" => pool.to_owned()).record(took.as_secs_f64());
}

pub(crate) fn created(pool: &str, took: Duration) {
    metrics::histogram!(CREATION_SECONDS, "pool" => pool.to_owned()).record(took.as_secs_f64());
}

/// Feeds r2d2's events into the metrics: how long each connection was held.
#[derive(Debug)]
pub(crate) struct PoolEvents {
    pub(crate) pool: String,
}

impl r2d2::HandleEvent for PoolEvents {
    fn handle_checkin(&self, event: r2d2::event::CheckinEvent) {
        metrics::histogram!(USAGE_SECONDS, "pool" => self.pool.clone())
            .record(event.duration().as_secs_f64());
    }
}
