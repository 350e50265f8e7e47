//! [`PoolState`]: what the pool reports of itself, to callers and to the metrics.

/// A snapshot of the pool, named as HikariCP's metrics are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolState {
    /// Open connections, busy or idle.
    pub connections: u32,
    /// Open connections not in use.
    pub idle: u32,
    /// Connections in use.
    pub active: u32,
    /// Callers waiting for a connection.
    pub pending: u32,
    /// `maximum_pool_size`.
    pub max: u32,
    /// `minimum_idle`, with its default applied.
    pub min: u32,
}
