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

fn incoming_id(req: &ServiceRequest) -> Option<HeaderValue> {
    let value = req.headers().get(&REQUEST_ID)?;
    let bytes = value.as_bytes();
    let valid = !bytes.is_empty()
        && bytes.len() <= 64
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    valid.then(|| value.clone())
}

/// A random id: 16 lowercase hex digits.
fn new_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let random: u64 = rand::rng().random();
    let mut digits = [0u8; 16];
    for (i, digit) in digits.iter_mut().enumerate() {
        *digit = HEX[((random >> (60 - 4 * i)) & 0xf) as usize];
    }
    // Hex digits are always a valid header value.
    HeaderValue::from_bytes(&digits).unwrap_or(HeaderValue::from_static("0"))
}

pub async fn instrument(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    // Kept as the header value it is echoed as; the span records it as text (both
    // `incoming_id` and `new_id` make only visible ASCII, so `to_str` cannot fail).
    let id = incoming_id(&req).unwrap_or_else(new_id);
    let span = tracing::info_span!(
        "request",
        id = id.to_str().unwrap_or_default(),
        method = req.method().as_str(),
        path = req.path(),
    );
    let mut response = next.call(req).instrument(span).await?;
    response.headers_mut().insert(REQUEST_ID, id);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn a_new_id_is_sixteen_hex_digits() {
        let (first, second) = (new_id(), new_id());
        for id in [&first, &second] {
            let text = id.to_str().unwrap();
            assert_eq!(text.len(), 16, "{text}");
            assert!(
                text.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
        }
        assert_ne!(first, second);
    }

    #[test]
    fn only_a_well_formed_incoming_id_is_kept() {
        let with = |value: &str| {
            incoming_id(
                &TestRequest::default()
                    .insert_header((REQUEST_ID, value))
                    .to_srv_request(),
            )
        };
        assert_eq!(with("proxy-1.a_B").unwrap(), "proxy-1.a_B");
        assert!(with("").is_none());
        assert!(with("has space").is_none());
        assert!(with(&"x".repeat(65)).is_none());
        assert!(incoming_id(&TestRequest::default().to_srv_request()).is_none());
    }
}
