//! Logging set-up: `tracing` to stderr, readable or JSON.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::settings::{LogFormat, Settings};

/// Installs the global subscriber: logs (readable or JSON) to stderr, and the slow-request
/// log. `RUST_LOG`, when set, overrides `log.filter`.
pub fn init(settings: &Settings) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;

    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.log.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Logs go to stderr, so a command's result on stdout stays machine-readable; colours only
    // when a person is watching.
    let ansi = std::io::stderr().is_terminal();
    let logs = match settings.log.format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    // The slow-request layer sees request spans and timing events whatever the log filter
    // says; the timing events themselves are never printed.
    let slow = crate::slow_requests::SlowRequests {
        threshold: settings.server.slow_request_threshold,
    }
    .with_filter(
        Targets::new()
            .with_targets(
                crate::slow_requests::TIMING_TARGETS.map(|target| (target, LevelFilter::TRACE)),
            )
            .with_target("marquee_api::request_span", LevelFilter::INFO),
    );
    // A second call (tests start many apps in one process) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(slow)
        .try_init();
}

/// Histogram buckets, in seconds: from a 1 ms cache load to a 10 s stall, so that both the
/// normal case and the original system's multi-second stalls land in a bucket of their own.
const SECONDS_BUCKETS: &[f64] = &[
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The gauge: how far the read replica is behind the primary, in seconds, as last measured.
pub(crate) const REPLICA_LAG: &str = "marquee_db_replica_lag_seconds";
/// The gauge: 1 while catalogue reads may go to the replica, 0 while they go to the primary.
pub(crate) const REPLICA_USABLE: &str = "marquee_db_replica_usable";

/// Registers the replica gauges' help texts.
fn describe_replica_metrics() {
    metrics::describe_gauge!(
        REPLICA_LAG,
        metrics::Unit::Seconds,
        "How far the read replica is behind the primary, sampled every 250 ms; NaN while it does not answer."
    );
    metrics::describe_gauge!(
        REPLICA_USABLE,
        "1 while catalogue reads may go to the read replica, 0 while they go to the primary."
    );
}

/// The process's Prometheus recorder, installed on first use. A process has one global
/// recorder; tests that start many applications in one process share it.
pub fn prometheus() -> metrics_exporter_prometheus::PrometheusHandle {
    use std::sync::OnceLock;
    static HANDLE: OnceLock<metrics_exporter_prometheus::PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = metrics_exporter_prometheus::PrometheusBuilder::new();
            let recorder = builder
                .set_buckets(SECONDS_BUCKETS)
                .map(|builder| builder.build_recorder())
                .unwrap_or_else(|_| {
                    metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder()
                });
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was installed already; /metrics may be empty");
            }
            marquee_persistence::metrics::describe();
            marquee_api::http_metrics::describe();
            marquee_api::queue::describe();
            describe_replica_metrics();
            metrics::describe_gauge!(
                "marquee_build_info",
                "Always 1; the labels say which build is running."
            );
            metrics::gauge!(
                "marquee_build_info",
                "version" => env!("CARGO_PKG_VERSION"),
                "revision" => env!("MARQUEE_GIT_REVISION"),
            )
            .set(1.0);
            // Histograms buffer samples until upkeep folds them in; without it their memory
            // grows with traffic between scrapes.
            let upkeep = handle.clone();
            let _ = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(std::time::Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                });
            handle
        })
        .clone()
}
