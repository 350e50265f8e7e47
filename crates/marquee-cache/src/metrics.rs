//! The cache's metrics, through the `metrics` facade: the application installs whatever
//! exporter it likes; without one these calls cost next to nothing.
//!
//! Every name starts with the cache's `metrics_prefix`, and every series carries the cache's
//! `name` as `cache` (two caches in one process are told apart) and, except the breaker's,
//! the key group as `group`. Handles are taken once, when a group is built, so a read
//! touches no registry. The crate's README lists the metrics.

use std::time::Duration;

use metrics::{Counter, Gauge, Histogram};

use crate::breaker::BreakerState;

/// The full names of one cache's metrics.
#[derive(Debug)]
pub(crate) struct Names {
    hits: String,
    misses: String,
    loads: String,
    load_seconds: String,
    coalesced: String,
    lease_waits: String,
    early_refreshes: String,
    stale_served: String,
    errors: String,
    fallback_waits: String,
    breaker_state: String,
}

impl Names {
    /// The names under `prefix`, with their help texts registered with the recorder
    /// installed now (exporters show them).
    pub fn describe(prefix: &str) -> Self {
        use metrics::{describe_counter, describe_gauge, describe_histogram};
        let name = |suffix: &str| format!("{prefix}_{suffix}");
        let names = Self {
            hits: name("hits_total"),
            misses: name("misses_total"),
            loads: name("loads_total"),
            load_seconds: name("load_seconds"),
            coalesced: name("coalesced_total"),
            lease_waits: name("lease_waits_total"),
            early_refreshes: name("early_refreshes_total"),
            stale_served: name("stale_served_total"),
            errors: name("errors_total"),
            fallback_waits: name("fallback_waits_total"),
            breaker_state: name("breaker_state"),
        };
        let counters = [
            (
                &names.hits,
                "Reads answered from a cache tier (tier: local, l1, redis).",
            ),
            (
                &names.misses,
                "Reads that found no fresh entry and needed a load.",
            ),
            (
                &names.loads,
                "Loads from the source (outcome: found, not_found, error).",
            ),
            (
                &names.coalesced,
                "Reads that waited on another read's load of the same key.",
            ),
            (
                &names.lease_waits,
                "Loads deferred to another instance holding the key's lease.",
            ),
            (
                &names.early_refreshes,
                "Background reloads before expiry (trigger: xfetch, hot_key).",
            ),
            (
                &names.stale_served,
                "Stale values served while a reload failed or ran elsewhere.",
            ),
            (
                &names.errors,
                "Failed Redis operations (operation: get, set, lease, evict, publish), and values the codec could not encode (operation: encode).",
            ),
            (
                &names.fallback_waits,
                "Loads that queued for the fallback bound while Redis was unavailable.",
            ),
        ];
        for (name, help) in counters {
            describe_counter!(name.clone(), help);
        }
        describe_histogram!(
            names.load_seconds.clone(),
            metrics::Unit::Seconds,
            "Time a load from the source took."
        );
        describe_gauge!(
            names.breaker_state.clone(),
            "Circuit breaker state: 0 closed, 1 open, 2 half-open."
        );
        names
    }

    /// The breaker's gauge, for the cache called `cache`.
    pub fn breaker(&self, cache: &str) -> BreakerGauge {
        BreakerGauge(metrics::gauge!(
            self.breaker_state.clone(),
            "cache" => cache.to_owned(),
            "dependency" => "redis"
        ))
    }
}

/// The breaker state gauge of one cache.
pub(crate) struct BreakerGauge(Gauge);

impl BreakerGauge {
    pub fn set(&self, state: BreakerState) {
        self.0.set(f64::from(state as u8));
    }
}

/// Where a Redis operation failed, for the `operation` label of the error counter.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Operation {
    Get,
    Set,
    Lease,
    Evict,
    Publish,
    Encode,
}

/// Which tier answered a read.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Tier {
    /// The in-process tier of a cache without Redis.
    Local,
    /// The in-process L1 in front of Redis.
    L1,
    Redis,
}

/// What started a background reload.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Trigger {
    Xfetch,
    HotKey,
}

/// One group's metric handles. Each series is created at zero when the group is built, so
/// that dashboards and alerts find it from the start, not only after its first event; those
/// that cannot occur (Redis's in a cache without it) are not created.
#[derive(Debug)]
pub(crate) struct GroupMetrics {
    hits: [Counter; 3],
    misses: Counter,
    loads_found: Counter,
    loads_not_found: Counter,
    loads_error: Counter,
    load_seconds: Histogram,
    coalesced: Counter,
    lease_waits: Counter,
    early_refreshes: [Counter; 2],
    stale_served: Counter,
    errors: [Counter; 6],
    fallback_waits: Counter,
}

impl GroupMetrics {
    pub fn new(names: &Names, cache: &str, group: &'static str, uses_redis: bool) -> Self {
        let cache = cache.to_owned();
        let counter = |name: &String, labels: &[(&'static str, &'static str)]| {
            let mut all = vec![
                metrics::Label::new("cache", cache.clone()),
                metrics::Label::new("group", group),
            ];
            all.extend(labels.iter().map(|(k, v)| metrics::Label::new(*k, *v)));
            let counter = metrics::counter!(name.clone(), all);
            counter.increment(0);
            counter
        };
        let redis_only = |name: &String, labels: &[(&'static str, &'static str)]| {
            if uses_redis {
                counter(name, labels)
            } else {
                Counter::noop()
            }
        };
        Self {
            hits: [
                if uses_redis {
                    Counter::noop()
                } else {
                    counter(&names.hits, &[("tier", "local")])
                },
                redis_only(&names.hits, &[("tier", "l1")]),
                redis_only(&names.hits, &[("tier", "redis")]),
            ],
            misses: counter(&names.misses, &[]),
            loads_found: counter(&names.loads, &[("outcome", "found")]),
            loads_not_found: counter(&names.loads, &[("outcome", "not_found")]),
            loads_error: counter(&names.loads, &[("outcome", "error")]),
            load_seconds: metrics::histogram!(
                names.load_seconds.clone(),
                "cache" => cache.clone(),
                "group" => group
            ),
            coalesced: counter(&names.coalesced, &[]),
            lease_waits: counter(&names.lease_waits, &[]),
            early_refreshes: [
                counter(&names.early_refreshes, &[("trigger", "xfetch")]),
                counter(&names.early_refreshes, &[("trigger", "hot_key")]),
            ],
            stale_served: counter(&names.stale_served, &[]),
            errors: [
                redis_only(&names.errors, &[("operation", "get")]),
                redis_only(&names.errors, &[("operation", "set")]),
                redis_only(&names.errors, &[("operation", "lease")]),
                redis_only(&names.errors, &[("operation", "evict")]),
                redis_only(&names.errors, &[("operation", "publish")]),
                redis_only(&names.errors, &[("operation", "encode")]),
            ],
            fallback_waits: counter(&names.fallback_waits, &[]),
        }
    }

    pub fn hit(&self, tier: Tier) {
        self.hits[tier as usize].increment(1);
    }

    pub fn miss(&self) {
        self.misses.increment(1);
    }

    /// A load's outcome (`Some(found)`, or `None` for an error) and its time.
    pub fn load(&self, found: Option<bool>, took: Duration) {
        match found {
            Some(true) => &self.loads_found,
            Some(false) => &self.loads_not_found,
            None => &self.loads_error,
        }
        .increment(1);
        self.load_seconds.record(took.as_secs_f64());
    }

    pub fn coalesced(&self) {
        self.coalesced.increment(1);
    }

    pub fn lease_wait(&self) {
        self.lease_waits.increment(1);
    }

    pub fn early_refresh(&self, trigger: Trigger) {
        self.early_refreshes[trigger as usize].increment(1);
    }

    pub fn stale_served(&self) {
        self.stale_served.increment(1);
    }

    pub fn error(&self, operation: Operation) {
        self.errors[operation as usize].increment(1);
    }

    pub fn fallback_wait(&self) {
        self.fallback_waits.increment(1);
    }
}
