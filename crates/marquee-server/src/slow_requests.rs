//! The slow-request log: a `tracing` layer that sums, per request, the time reported by the
//! timing events of the other crates (cache, Redis, pool wait, query), and when a request
//! took longer than `server.slow_request_threshold`, writes one warning that says where the
//! time went.
//!
//! The events are emitted inside the request's span (the api crate opens it; the pool and
//! the cache carry it onto their blocking threads and load tasks), so the sums find their
//! request by walking up the event's span scope.

use std::fmt;
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// The targets of the timing events, one per crate that emits them: the API (cache reads
/// as a whole), the cache (Redis commands) and persistence (pool wait, query).
pub const TIMING_TARGETS: [&str; 3] = [
    marquee_api::request_span::TIMING_TARGET,
    marquee_cache::TIMING_TARGET,
    marquee_persistence::TIMING_TARGET,
];

#[derive(Debug)]
pub struct SlowRequests {
    pub threshold: Duration,
}

#[derive(Debug, Default)]
struct RequestTimings {
    started: Option<Instant>,
    id: String,
    method: String,
    path: String,
    /// Microseconds per phase.
    cache: u64,
    redis: u64,
    pool_wait: u64,
    query: u64,
}

impl RequestTimings {
    fn field(&mut self, field: &Field) -> Option<&mut String> {
        match field.name() {
            "id" => Some(&mut self.id),
            "method" => Some(&mut self.method),
            "path" => Some(&mut self.path),
            _ => None,
        }
    }
}

impl Visit for RequestTimings {
    // The request span records its fields as text (request_span::instrument).
    fn record_str(&mut self, field: &Field, value: &str) {
        if let Some(slot) = self.field(field) {
            value.clone_into(slot);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if let Some(slot) = self.field(field) {
            *slot = format!("{value:?}");
        }
    }
}

/// Where a timing event's time went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Cache,
    Redis,
    PoolWait,
    Query,
}

#[derive(Debug, Default)]
struct Timing {
    phase: Option<Phase>,
    micros: u64,
}

impl Visit for Timing {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "phase" {
            self.phase = match value {
                "cache" => Some(Phase::Cache),
                "redis" => Some(Phase::Redis),
                "pool_wait" => Some(Phase::PoolWait),
                "query" => Some(Phase::Query),
                _ => None,
            };
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "micros" {
            self.micros = value;
        }
    }

    fn record_debug(&mut self, _field: &Field, _value: &dyn fmt::Debug) {}
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

impl<S> Layer<S> for SlowRequests
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != "request" {
            return;
        }
        let mut timings = RequestTimings {
            started: Some(Instant::now()),
            ..RequestTimings::default()
        };
        attrs.record(&mut timings);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(timings);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if !TIMING_TARGETS.contains(&event.metadata().target()) {
            return;
        }
        let mut timing = Timing::default();
        event.record(&mut timing);
        let Some(scope) = ctx.event_scope(event) else {
            return;
        };
        for span in scope {
            let mut extensions = span.extensions_mut();
            if let Some(request) = extensions.get_mut::<RequestTimings>() {
                let slot = match timing.phase {
                    Some(Phase::Cache) => &mut request.cache,
                    Some(Phase::Redis) => &mut request.redis,
                    Some(Phase::PoolWait) => &mut request.pool_wait,
                    Some(Phase::Query) => &mut request.query,
                    None => return,
                };
                *slot = slot.saturating_add(timing.micros);
                return;
            }
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        // Copy out and release the span's extensions before logging: the log line goes
        // through the same subscriber.
        let Some(request) = span.extensions_mut().remove::<RequestTimings>() else {
            return;
        };
        let elapsed = request.started.map_or(Duration::ZERO, |at| at.elapsed());
        if elapsed < self.threshold {
            return;
        }
        let total = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        tracing::warn!(
            request_id = %request.id,
            method = %request.method,
            path = %request.path,
            elapsed_ms = ms(total),
            cache_ms = ms(request.cache),
            redis_ms = ms(request.redis),
            pool_wait_ms = ms(request.pool_wait),
            query_ms = ms(request.query),
            outside_cache_ms = ms(total.saturating_sub(request.cache)),
            "slow request",
        );
    }
}
