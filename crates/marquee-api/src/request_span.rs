//! One `request` span per request, carrying its id: every log line written while the request
//! runs (in the handler, the cache, the pool) names it, and the id is echoed in the
//! `x-request-id` response header so a client's report can be matched to the logs.
//!
//! A valid incoming `x-request-id` (from a proxy or the client) is kept, so one id follows
//! the request across services; otherwise a random one is made.

use actix_web::Error;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use rand::Rng;
use tracing::Instrument;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The target of this crate's events that report where a request's time went (`phase` and
/// `micros`; the server's telemetry sums them per request and warns about slow requests).
/// The cache and the persistence crate export one each too.
pub const TIMING_TARGET: &str = "marquee_api::timing";

fn incoming_id(req: &ServiceRequest) -> Option<String> {
    let value = req.headers().get(&REQUEST_ID)?.to_str().ok()?;
    // Bounded and printable: the id is written into logs and a response header.
    let valid = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    valid.then(|| value.to_owned())
}

pub async fn instrument(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let id = incoming_id(&req).unwrap_or_else(|| format!("{:016x}", rand::rng().random::<u64>()));
    let span = tracing::info_span!(
        "request",
        id = %id,
        method = %req.method(),
        path = %req.path(),
    );
    let mut response = next.call(req).instrument(span).await?;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    Ok(response)
}
