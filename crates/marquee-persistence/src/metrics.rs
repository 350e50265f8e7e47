//! The pool's metrics under HikariCP's Micrometer names, so that dashboards built for a
//! Spring service's HikariCP panels work unchanged. Emitted through the `metrics` facade;
//! every metric carries `pool` (HikariCP's `poolName`).

use std::time::Duration;

use crate::pool::PoolState;

pub const CONNECTIONS: &str = "hikaricp_connections";
pub const ACTIVE: &str = "hikaricp_connections_active";
pub const IDLE: &str = "hikaricp_connections_idle";
pub const PENDING: &str = "hikaricp_connections_pending";
pub const MAX: &str = "hikaricp_connections_max";
pub const MIN: &str = "hikaricp_connections_min";
pub const TIMEOUTS: &str = "hikaricp_connections_timeout_total";
pub const ACQUIRE_SECONDS: &str = "hikaricp_connections_acquire_seconds";
pub const USAGE_SECONDS: &str = "hikaricp_connections_usage_seconds";
pub const CREATION_SECONDS: &str = "hikaricp_connections_creation_seconds";

/// Registers each metric's help text with the installed recorder.
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
    pub pool: String,
}

impl r2d2::HandleEvent for PoolEvents {
    fn handle_checkin(&self, event: r2d2::event::CheckinEvent) {
        metrics::histogram!(USAGE_SECONDS, "pool" => self.pool.clone())
            .record(event.duration().as_secs_f64());
    }
}
