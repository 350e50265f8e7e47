//! `http_server_requests_seconds`: every request's duration under Spring/Micrometer's name
//! and labels, so that dashboards written for a Spring service work unchanged.
//!
//! `uri` is the route template (`/api/v1/concerts/{concertId}`), never the raw path: a raw
//! path would create one time series per id and exhaust the metrics store.
//!
//! `marquee_http_worker_lag_seconds`: how late each HTTP worker's event loop wakes up, the
//! time a request can wait before any handler, or the histogram above, sees it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix_web::Error;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;

pub const HTTP_SERVER_REQUESTS: &str = "http_server_requests_seconds";
pub const HTTP_WORKER_LAG: &str = "marquee_http_worker_lag_seconds";

/// How often each HTTP worker's lag probe asks to be woken.
pub const LAG_TICK: Duration = Duration::from_millis(10);

/// Registers the metrics' help texts with the installed recorder.
pub fn describe() {
    metrics::describe_histogram!(
        HTTP_SERVER_REQUESTS,
        metrics::Unit::Seconds,
        "HTTP request duration, by method, route template, status and outcome."
    );
    metrics::describe_histogram!(
        HTTP_WORKER_LAG,
        metrics::Unit::Seconds,
        "How late an HTTP worker's event loop woke from a 10 ms timer (busy, or waiting for a CPU): requests wait as long before a handler sees them."
    );
}

/// Runs for as long as its HTTP worker: every [`LAG_TICK`] it records how late the worker's
/// event loop woke it. A worker that is busy with one task, or not given a CPU, reads
/// nothing from its connections meanwhile, and `http_server_requests_seconds` (which starts
/// when a request reaches the middleware) does not see that wait; this histogram does. The
/// timer's own resolution (1 ms) is its floor.
pub async fn watch_worker_lag() {
    let lag = metrics::histogram!(HTTP_WORKER_LAG);
    loop {
        let due = tokio::time::Instant::now() + LAG_TICK;
        tokio::time::sleep_until(due).await;
        lag.record(due.elapsed().as_secs_f64());
    }
}

/// Micrometer's `outcome` tag.
fn outcome(status: StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "INFORMATIONAL",
        200..=299 => "SUCCESS",
        300..=399 => "REDIRECTION",
        400..=499 => "CLIENT_ERROR",
        500..=599 => "SERVER_ERROR",
        _ => "UNKNOWN",
    }
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        // Anything else is one label, so clients cannot mint series.
        _ => "OTHER",
    }
}

/// A resource's route template, as its `uri` label (set by the routes' builder).
#[derive(Debug, Clone, Copy)]
pub struct RouteTemplate(pub &'static str);

/// Records the request once its response is ready.
pub async fn record(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let method = method_label(req.method());
    let response = next.call(req).await?;
    let status = response.status();
    let request = response.request();
    let seconds = started.elapsed().as_secs_f64();
    match request.app_data::<RouteTemplate>() {
        Some(template) => record_route(method, template.0, status, seconds),
        None => {
            let uri: metrics::SharedString = request
                .match_pattern()
                .map_or_else(|| "NOT_FOUND".into(), Into::into);
            histogram(method, uri, status).record(seconds);
        }
    }
    Ok(response)
}

/// The histogram of one method, route and status.
fn histogram(
    method: &'static str,
    uri: metrics::SharedString,
    status: StatusCode,
) -> metrics::Histogram {
    metrics::histogram!(
        HTTP_SERVER_REQUESTS,
        "method" => method,
        "uri" => uri,
        "status" => status.as_str().to_owned(),
        "outcome" => outcome(status),
    )
}

/// Records `seconds` in the `histogram` of an API route, looked up once per worker thread
/// and kept: registering it again builds its labels and looks them up in the registry on
/// every request (`register_histogram` alone was 1.1 % of a profile of the in-process hit
/// path; docs/performance.md, "The HTTP layer's own work").
fn record_route(method: &'static str, uri: &'static str, status: StatusCode, seconds: f64) {
    thread_local! {
        static KEPT: RefCell<HashMap<(&'static str, &'static str, u16), metrics::Histogram>> =
            RefCell::new(HashMap::new());
    }
    KEPT.with_borrow_mut(|kept| {
        kept.entry((method, uri, status.as_u16()))
            .or_insert_with(|| histogram(method, uri.into(), status))
            .record(seconds);
    });
}
