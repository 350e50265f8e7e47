//! Liveness and readiness.
//!
//! Liveness says the process serves HTTP; it checks nothing else, so an orchestrator never
//! restarts a healthy process because its database is down. Readiness checks each
//! dependency, within each check's own time bound, so a load balancer stops routing to an
//! instance that cannot answer.

use actix_web::{HttpResponse, web};
use serde::Serialize;
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use crate::AppState;
use crate::error::{ApiError, Problem};

#[derive(Debug, Serialize, ToSchema)]
pub struct HealthBody {
    /// `UP` when every check passed; `DEGRADED` when only non-critical ones (Redis) failed.
    pub status: &'static str,
    /// Each dependency's state, by name (readiness only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub checks: Option<Value>,
}

/// The process is up.
#[utoipa::path(get, path = "/health/live", tag = "health",
    responses((status = 200, description = "Serving", body = HealthBody)))]
pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(HealthBody {
        status: "UP",
        checks: None,
    })
}

/// The instance can serve requests: the database answers. Redis, when configured, is
/// checked and reported, but its failure only degrades the instance (the cache fails open).
#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses(
        (status = 200, description = "Ready: `UP`, or `DEGRADED` when only Redis is down", body = HealthBody),
        (status = 503, description = "`not-ready`: `checks` says which dependency failed", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let mut checks = Map::new();
    let mut failing = Vec::new();
    let mut degraded = false;
    for check in &state.health_checks {
        let entry = match check.check().await {
            Ok(()) => json!({ "status": "UP" }),
            Err(reason) if check.critical() => {
                failing.push(check.name());
                json!({ "status": "DOWN", "reason": reason })
            }
            Err(reason) => {
                degraded = true;
                json!({ "status": "DOWN", "reason": reason, "critical": false })
            }
        };
        checks.insert(check.name().to_owned(), entry);
    }
    if failing.is_empty() {
        Ok(HttpResponse::Ok().json(HealthBody {
            status: if degraded { "DEGRADED" } else { "UP" },
            checks: Some(Value::Object(checks)),
        }))
    } else {
        Err(ApiError::NotReady {
            failing: failing.join(", "),
            checks: Value::Object(checks),
        })
    }
}

/// Metrics in Prometheus's text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain; version=0.0.4", body = String)))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body((state.metrics)())
}
