//! Every error the API can answer with, and the one table that maps each to a stable
//! machine `code` and an HTTP status.
//!
//! Handlers return `Result<_, ApiError>`; extractor failures (bad JSON, query or path) are
//! turned into `ApiError` by the handlers registered in [`crate::configure`]. The body is
//! always RFC 9457 `application/problem+json`. Codes are a contract: clients branch on them,
//! so a code is never renamed or reused (the table is in the README).

use std::fmt;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use marquee_domain::{ConcertId, IdError, PageRequestError, RepositoryError, ScheduleId};
use serde::Serialize;
use utoipa::ToSchema;

pub const PROBLEM_JSON: &str = "application/problem+json";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("path parameter {parameter} {source}")]
    InvalidId {
        parameter: &'static str,
        source: IdError,
    },
    #[error("{0}")]
    InvalidQuery(String),
    #[error(transparent)]
    InvalidPage(#[from] PageRequestError),
    #[error("{0}")]
    InvalidJson(String),
    #[error("the request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the request body must be sent as application/json")]
    UnsupportedMediaType,
    #[error("concert {0} does not exist")]
    ConcertNotFound(ConcertId),
    #[error("schedule {0} does not exist")]
    ScheduleNotFound(ScheduleId),
    #[error("you are not in the queue of concert {0}")]
    QueueEntryNotFound(ConcertId),
    #[error("no resource at {path}")]
    RouteNotFound { path: String },
    #[error("{method} is not allowed on this resource; use {allowed}")]
    MethodNotAllowed {
        method: String,
        allowed: &'static str,
    },
    #[error("not ready: {failing}")]
    NotReady {
        failing: String,
        checks: serde_json::Value,
    },
    #[error("{0}")]
    Unauthorized(crate::auth::AuthError),
    #[error("amount must be a positive integer of minor units, at most {max}")]
    InvalidAmount { max: i64 },
    #[error("this request needs an Idempotency-Key header")]
    IdempotencyKeyRequired,
    #[error("Idempotency-Key must be 1 to 128 printable ASCII characters")]
    IdempotencyKeyInvalid,
    #[error(transparent)]
    Booking(marquee_domain::BookingError),
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

impl From<marquee_domain::BookingError> for ApiError {
    fn from(error: marquee_domain::BookingError) -> Self {
        match error {
            marquee_domain::BookingError::Repository(error) => Self::Repository(error),
            other => Self::Booking(other),
        }
    }
}

impl From<marquee_cache::CacheError<RepositoryError>> for ApiError {
    fn from(error: marquee_cache::CacheError<RepositoryError>) -> Self {
        match error {
            marquee_cache::CacheError::Load(error) => Self::Repository((*error).clone()),
            _ => Self::Repository(RepositoryError::Query {
                reason: "a load stopped without an answer".into(),
            }),
        }
    }
}

/// The row of the table for one error.
struct Entry {
    status: StatusCode,
    code: &'static str,
    title: &'static str,
}

impl ApiError {
    /// Parses the id a request names by `parameter`; one that cannot exist is `invalid-id`.
    pub(crate) fn parse_id<T>(raw: &str, parameter: &'static str) -> Result<T, Self>
    where
        T: std::str::FromStr<Err = IdError>,
    {
        raw.parse()
            .map_err(|source| Self::InvalidId { parameter, source })
    }

    /// The table: error -> stable code -> HTTP status. The only place that knows it.
    fn entry(&self) -> Entry {
        use StatusCode as S;
        let (status, code, title) = match self {
            Self::InvalidId { .. } => (S::BAD_REQUEST, "invalid-id", "Invalid identifier"),
            Self::InvalidQuery(_) => (S::BAD_REQUEST, "invalid-query", "Invalid query parameter"),
            Self::InvalidPage(_) => (S::BAD_REQUEST, "invalid-page", "Invalid page request"),
            Self::InvalidJson(_) => (S::BAD_REQUEST, "invalid-json", "Malformed JSON body"),
            Self::PayloadTooLarge { .. } => (
                S::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Request body too large",
            ),
            Self::UnsupportedMediaType => (
                S::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            ),
            Self::ConcertNotFound(_) => (S::NOT_FOUND, "concert-not-found", "Concert not found"),
            Self::ScheduleNotFound(_) => (S::NOT_FOUND, "schedule-not-found", "Schedule not found"),
            Self::QueueEntryNotFound(_) => {
                (S::NOT_FOUND, "queue-entry-not-found", "Not in the queue")
            }
            Self::RouteNotFound { .. } => (S::NOT_FOUND, "route-not-found", "Not found"),
            Self::MethodNotAllowed { .. } => (
                S::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
            ),
            Self::NotReady { .. } => (S::SERVICE_UNAVAILABLE, "not-ready", "Not ready"),
            Self::Unauthorized(_) => (S::UNAUTHORIZED, "unauthorized", "Unauthorized"),
            Self::InvalidAmount { .. } => (S::BAD_REQUEST, "invalid-amount", "Invalid amount"),
            Self::IdempotencyKeyRequired => (
                S::BAD_REQUEST,
                "idempotency-key-required",
                "Idempotency-Key required",
            ),
            Self::IdempotencyKeyInvalid => (
                S::BAD_REQUEST,
                "idempotency-key-invalid",
                "Invalid Idempotency-Key",
            ),
            Self::Booking(error) => {
                use marquee_domain::BookingError as B;
                match error {
                    B::SeatNotFound(_) => (S::NOT_FOUND, "seat-not-found", "Seat not found"),
                    B::SeatTaken(_) => (S::CONFLICT, "seat-taken", "Seat taken"),
                    B::BookingClosed { .. } => (S::CONFLICT, "booking-closed", "Booking not open"),
                    B::HoldLimitReached { .. } | B::UserHoldLimitReached { .. } => {
                        (S::CONFLICT, "hold-limit-reached", "Hold limit reached")
                    }
                    B::ReservationNotFound(_) => (
                        S::NOT_FOUND,
                        "reservation-not-found",
                        "Reservation not found",
                    ),
                    B::NotHeld { .. } => {
                        (S::CONFLICT, "reservation-not-held", "Reservation not held")
                    }
                    B::HoldExpired(_) => (S::GONE, "hold-expired", "Hold expired"),
                    B::NotAdmitted(_) => (S::FORBIDDEN, "not-admitted", "Not admitted"),
                    B::AlreadyPaid(_) => (S::CONFLICT, "already-paid", "Already paid"),
                    B::InsufficientBalance { .. } => (
                        S::PAYMENT_REQUIRED,
                        "insufficient-balance",
                        "Insufficient balance",
                    ),
                    B::BalanceLimit { .. } => {
                        (S::CONFLICT, "balance-limit", "Balance limit reached")
                    }
                    B::IdempotencyKeyReused => (
                        S::UNPROCESSABLE_ENTITY,
                        "idempotency-key-reused",
                        "Idempotency-Key reused",
                    ),
                    B::Repository(_) => (S::INTERNAL_SERVER_ERROR, "internal", "Internal error"),
                }
            }
            Self::Repository(RepositoryError::Busy { .. }) => {
                (S::SERVICE_UNAVAILABLE, "database-busy", "Database busy")
            }
            Self::Repository(RepositoryError::Unavailable { .. }) => (
                S::SERVICE_UNAVAILABLE,
                "database-unavailable",
                "Database unavailable",
            ),
            Self::Repository(RepositoryError::Query { .. }) => {
                (S::INTERNAL_SERVER_ERROR, "internal", "Internal error")
            }
        };
        Entry {
            status,
            code,
            title,
        }
    }

    /// Seconds a client should wait before retrying, for errors that are worth retrying.
    fn retry_after(&self) -> Option<u32> {
        match self {
            // A burst: connections free up within moments.
            Self::Repository(RepositoryError::Busy { .. }) => Some(1),
            // An outage: retrying at once only adds load to a recovering database.
            Self::Repository(RepositoryError::Unavailable { .. }) | Self::NotReady { .. } => {
                Some(5)
            }
            _ => None,
        }
    }

    pub fn code(&self) -> &'static str {
        self.entry().code
    }
}

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "type": "https://marquee.dev/problems/concert-not-found",
    "title": "Concert not found",
    "status": 404,
    "detail": "concert 42 does not exist",
    "code": "concert-not-found"
}))]
pub struct Problem {
    /// A URI naming the problem type; it ends with `code`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the problem type.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request.
    pub detail: String,
    /// A stable machine-readable code; see the API error table.
    pub code: String,
    /// For `not-ready`: the state of each dependency.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub checks: Option<serde_json::Value>,
}

/// The OpenAPI document's `401`, listed once: every route that takes a bearer token answers
/// it to a missing, malformed, forged or expired one.
#[derive(Debug, utoipa::IntoResponses)]
#[response(
    status = 401,
    description = "`unauthorized`",
    content_type = "application/problem+json"
)]
pub struct UnauthorizedAnswer(pub Problem);

/// The OpenAPI document's `503`, listed once: every route that reads or writes the database
/// answers it when the pool or a lock cannot serve in time, with `Retry-After`.
#[derive(Debug, utoipa::IntoResponses)]
#[response(
    status = 503,
    description = "`database-busy` or `database-unavailable`; see Retry-After",
    content_type = "application/problem+json"
)]
pub struct DatabaseBusyAnswer(pub Problem);

/// The OpenAPI document's `400` for a route whose only checked input is the id in its path,
/// listed once.
#[derive(Debug, utoipa::IntoResponses)]
#[response(
    status = 400,
    description = "`invalid-id`",
    content_type = "application/problem+json"
)]
pub struct InvalidIdAnswer(pub Problem);

/// The OpenAPI document's answers to a request body that is not JSON of the right size,
/// listed once for every route that takes one.
#[derive(Debug, utoipa::IntoResponses)]
pub enum JsonBodyAnswers {
    #[response(
        status = 413,
        description = "`payload-too-large`: the body is over 16 KiB",
        content_type = "application/problem+json"
    )]
    PayloadTooLarge(Problem),
    #[response(
        status = 415,
        description = "`unsupported-media-type`: the body is not `application/json`",
        content_type = "application/problem+json"
    )]
    UnsupportedMediaType(Problem),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.status, self.code, self.detail)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.entry().status
    }

    fn error_response(&self) -> HttpResponse {
        let (status, problem) = self.problem();
        let mut response = HttpResponse::build(status);
        response.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON)));
        if let Some(seconds) = self.retry_after() {
            response.insert_header((header::RETRY_AFTER, seconds));
        }
        if let Self::MethodNotAllowed { allowed, .. } = self {
            response.insert_header((header::ALLOW, *allowed));
        }
        if let Self::Unauthorized(_) = self {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        response.body(problem.to_json())
    }
}

impl ApiError {
    /// The status and problem document this error is answered with. A server-side cause
    /// is logged here, and the client gets a fixed sentence instead: it may name tables,
    /// hosts or ports.
    pub fn problem(&self) -> (StatusCode, Problem) {
        let Entry {
            status,
            code,
            title,
        } = self.entry();
        let detail = if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %self, "request failed");
            "The server could not complete the request; the cause has been logged.".to_owned()
        } else if let Self::Repository(RepositoryError::Unavailable { .. }) = self {
            tracing::warn!(error = %self, code, "request failed");
            "The database is unavailable; retry later.".to_owned()
        } else {
            if status.is_server_error() {
                tracing::warn!(error = %self, code, "request failed");
            }
            self.to_string()
        };
        let problem = Problem {
            kind: format!("https://marquee.dev/problems/{code}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail,
            code: code.to_owned(),
            checks: match self {
                Self::NotReady { checks, .. } => Some(checks.clone()),
                _ => None,
            },
        };
        (status, problem)
    }
}

impl Problem {
    /// The document as JSON text.
    pub fn to_json(&self) -> String {
        // Serialising a struct of strings, integers and JSON values cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}
