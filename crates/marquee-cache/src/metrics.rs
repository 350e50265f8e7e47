//! The cache's metrics, through the `metrics` facade: the application installs whatever
//! exporter it likes (Marquee: Prometheus); without one these calls cost next to nothing.
//! Every metric carries the key group as `group`. docs/operations.md lists them.

use std::time::Duration;

use crate::breaker::BreakerState;

pub const HITS: &str = "marquee_cache_hits_total";
pub const MISSES: &str = "marquee_cache_misses_total";
pub const LOADS: &str = "marquee_cache_loads_total";
pub const LOAD_SECONDS: &str = "marquee_cache_load_seconds";
pub const COALESCED: &str = "marquee_cache_coalesced_total";
pub const LEASE_WAITS: &str = "marquee_cache_lease_waits_total";
pub const EARLY_REFRESHES: &str = "marquee_cache_early_refreshes_total";
pub const STALE_SERVED: &str = "marquee_cache_stale_served_total";
pub const ERRORS: &str = "marquee_cache_errors_total";
pub const BREAKER_STATE: &str = "marquee_cache_breaker_state";
pub const FALLBACK_WAITS: &str = "marquee_cache_fallback_waits_total";

/// Registers each metric's help text with the installed recorder (exporters show it).
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        HITS,
        "Reads answered from a cache tier (tier: local, l1, redis)."
    );
    describe_counter!(MISSES, "Reads that found no fresh entry and needed a load.");
    describe_counter!(
        LOADS,
        "Loads from the source (outcome: found, not_found, error)."
    );
    describe_histogram!(
        LOAD_SECONDS,
        metrics::Unit::Seconds,
        "Time a load from the source took."
    );
    describe_counter!(
        COALESCED,
        "Reads that waited on another read's load of the same key."
    );
    describe_counter!(
        LEASE_WAITS,
        "Loads deferred to another instance holding the key's lease."
    );
    describe_counter!(
        EARLY_REFRESHES,
        "Background reloads before expiry (trigger: xfetch, hot_key)."
    );
    describe_counter!(
        STALE_SERVED,
        "Stale values served while a reload failed or ran elsewhere."
    );
    describe_counter!(
        ERRORS,
        "Failed Redis operations (operation: get, set, lease, evict, publish)."
    );
    describe_counter!(
        FALLBACK_WAITS,
        "Loads that queued for the fallback bound while Redis was unavailable."
    );
    describe_gauge!(
        BREAKER_STATE,
        "Circuit breaker state: 0 closed, 1 open, 2 half-open."
    );
}

/// Creates every counter of `group` at zero, so that dashboards and alerts find each series
/// from the start instead of only after its first event.
pub(crate) fn register_group(group: &'static str, uses_redis: bool) {
    let tiers: &[&'static str] = if uses_redis {
        &["l1", "redis"]
    } else {
        &["local"]
    };
    for tier in tiers {
        metrics::counter!(HITS, "group" => group, "tier" => *tier).increment(0);
    }
    for outcome in ["found", "not_found", "error"] {
        metrics::counter!(LOADS, "group" => group, "outcome" => outcome).increment(0);
    }
    for trigger in ["xfetch", "hot_key"] {
        metrics::counter!(EARLY_REFRESHES, "group" => group, "trigger" => trigger).increment(0);
    }
    for name in [MISSES, COALESCED, LEASE_WAITS, STALE_SERVED, FALLBACK_WAITS] {
        metrics::counter!(name, "group" => group).increment(0);
    }
    if uses_redis {
        for operation in ["get", "set", "lease", "evict", "publish"] {
            metrics::counter!(ERRORS, "group" => group, "operation" => operation).increment(0);
        }
    }
}

pub(crate) fn hit(group: &'static str, tier: &'static str) {
    metrics::counter!(HITS, "group" => group, "tier" => tier).increment(1);
}

pub(crate) fn miss(group: &'static str) {
    metrics::counter!(MISSES, "group" => group).increment(1);
}

pub(crate) fn load(group: &'static str, outcome: &'static str, took: Duration) {
    metrics::counter!(LOADS, "group" => group, "outcome" => outcome).increment(1);
    metrics::histogram!(LOAD_SECONDS, "group" => group).record(took.as_secs_f64());
}

pub(crate) fn coalesced(group: &'static str) {
    metrics::counter!(COALESCED, "group" => group).increment(1);
}

pub(crate) fn lease_wait(group: &'static str) {
    metrics::counter!(LEASE_WAITS, "group" => group).increment(1);
}

pub(crate) fn early_refresh(group: &'static str, trigger: &'static str) {
    metrics::counter!(EARLY_REFRESHES, "group" => group, "trigger" => trigger).increment(1);
}

pub(crate) fn stale_served(group: &'static str) {
    metrics::counter!(STALE_SERVED, "group" => group).increment(1);
}

pub(crate) fn error(group: &'static str, operation: &'static str) {
    metrics::counter!(ERRORS, "group" => group, "operation" => operation).increment(1);
}

pub(crate) fn fallback_wait(group: &'static str) {
    metrics::counter!(FALLBACK_WAITS, "group" => group).increment(1);
}

pub(crate) fn breaker(state: BreakerState) {
    metrics::gauge!(BREAKER_STATE, "dependency" => "redis").set(f64::from(state as u8));
}
