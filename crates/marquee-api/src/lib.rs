#![doc = include_str!("../README.md")]

pub mod auth;
pub mod booking;
pub mod caller;
pub mod catalogue;
pub mod catalogue_body;
pub mod catalogue_cache;
pub mod error;
pub mod health;
pub mod http_metrics;
pub mod openapi;
pub mod queue;
pub mod request_span;

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, guard, web};
use marquee_domain::{BookingRepository, HealthCheck};
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

pub use actix_web::dev::{Server, ServerHandle};
pub use catalogue_cache::{CachePolicies, CatalogueCache};
pub use error::{ApiError, PROBLEM_JSON, Problem};

/// How the HTTP server runs.
#[derive(Debug, Clone, Copy)]
pub struct ServerOptions {
    /// Worker threads, each with its own event loop.
    pub workers: usize,
    /// How long in-flight requests may take to finish after a graceful stop.
    pub shutdown_timeout: std::time::Duration,
}

/// How long a connection may wait for its next request: after an answer (keep-alive), and
/// for its first one. Longer than any client waits between requests on one connection: the
/// waiting room tells clients to poll up to 5 s apart, and actix's defaults are 5 s for
/// both. With a keep-alive of 5 s an idle connection was closed just as the next poll was
/// sent on it (the client saw EOF); with a first-request timeout of 5 s, a connection that a
/// client's pool opened ahead and first used more than 5 s later was answered
/// `408 Request Timeout` (HTTP clients such as Go's dial ahead when all their connections
/// are busy, and keep the new one idle if another frees up first: 13 to 21 polls in a
/// 20,000-user opening). Nginx waits 60 s for a request head by default.
pub const IDLE_CONNECTION: std::time::Duration = std::time::Duration::from_secs(75);

/// Starts serving `state`'s routes on `listener`. The returned [`Server`] must be awaited
/// (or spawned) to run; stop it through its [`ServerHandle`].
///
/// Signals are left to the caller: actix would stop at once on SIGINT, while both SIGINT
/// and SIGTERM should drain in-flight requests.
pub fn serve(
    state: AppState,
    listener: std::net::TcpListener,
    options: ServerOptions,
) -> std::io::Result<Server> {
    Ok(actix_web::HttpServer::new(move || {
        // Each worker builds its app on its own thread, at its start: one lag probe each.
        actix_web::rt::spawn(http_metrics::watch_worker_lag());
        // Outermost last: the request span covers the metrics recording too.
        actix_web::App::new()
            .wrap(actix_web::middleware::from_fn(http_metrics::record))
            .wrap(actix_web::middleware::from_fn(request_span::instrument))
            .configure(configure(state.clone()))
    })
    .workers(options.workers)
    .keep_alive(IDLE_CONNECTION)
    .client_request_timeout(IDLE_CONNECTION)
    .shutdown_timeout(options.shutdown_timeout.as_secs().max(1))
    .disable_signals()
    .listen(listener)?
    .run())
}

/// Renders the metrics in Prometheus's text format.
pub type MetricsRender = Arc<dyn Fn() -> String + Send + Sync>;

/// What the handlers need: the catalogue's cached reads (whose loaders reach the
/// repository port), the readiness checks, and the metrics renderer.
#[derive(Clone)]
pub struct AppState {
    pub cache: CatalogueCache,
    /// Wallets, holds and payments.
    pub booking: Arc<dyn BookingRepository>,
    pub booking_policy: booking::BookingPolicy,
    /// Checks bearer tokens.
    pub tokens: auth::Tokens,
    /// Serves `GET /metrics`; the binary decides which exporter renders it.
    pub metrics: MetricsRender,
    /// Run in order by `/health/ready`.
    pub health_checks: Vec<Arc<dyn HealthCheck>>,
    /// The waiting room, when `queue.enabled`; without it every user may book.
    pub queue: Option<Arc<queue::WaitingRoom>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.health_checks.iter().map(|c| c.name()).collect();
        f.debug_struct("AppState")
            .field("cache", &self.cache)
            .field("health_checks", &names)
            .finish()
    }
}

/// The largest JSON body accepted. Every request body Marquee takes is a few fields.
pub const JSON_LIMIT: usize = 16 * 1024;

/// Registers every route, the extractor error handlers and the fallbacks on an actix `App`.
pub fn configure(state: AppState) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(web::Data::new(state))
            .app_data(web::QueryConfig::default().error_handler(|error, _req| {
                ApiError::InvalidQuery(error.to_string().replace("Query deserialize error: ", ""))
                    .into()
            }))
            .app_data(
                web::JsonConfig::default()
                    .limit(JSON_LIMIT)
                    .error_handler(|error, _req| json_error(error).into()),
            )
            .service(get_only("/api/v1/concerts", catalogue::list_concerts))
            .service(get_only(
                "/api/v1/concerts/{concertId}",
                catalogue::get_concert,
            ))
            .service(get_only(
                "/api/v1/concerts/{concertId}/schedules",
                catalogue::list_schedules,
            ))
            .service(get_only(
                "/api/v1/schedules/{scheduleId}/seats",
                catalogue::list_seats,
            ))
            .service(resource(
                "/api/v1/concerts/{concertId}/queue",
                "GET, POST, DELETE",
                [
                    web::post().to(queue::join),
                    web::get().to(queue::poll),
                    web::delete().to(queue::leave),
                ],
            ))
            .service(resource(
                "/api/v1/wallet",
                "GET",
                [web::get().to(booking::wallet)],
            ))
            .service(resource(
                "/api/v1/wallet/charge",
                "POST",
                [web::post().to(booking::charge)],
            ))
            .service(resource(
                "/api/v1/reservations",
                "GET, POST",
                [
                    web::get().to(booking::list_reservations),
                    web::post().to(booking::hold),
                ],
            ))
            .service(resource(
                "/api/v1/reservations/{reservationId}",
                "GET, DELETE",
                [
                    web::get().to(booking::get_reservation),
                    web::delete().to(booking::cancel),
                ],
            ))
            .service(resource(
                "/api/v1/reservations/{reservationId}/payment",
                "POST",
                [web::post().to(booking::pay)],
            ))
            .service(get_only("/health/live", health::live))
            .service(get_only("/health/ready", health::ready))
            .service(get_only("/metrics", health::metrics))
            .service(web::redirect("/docs", "/docs/"))
            .service(
                SwaggerUi::new("/docs/{_:.*}")
                    .url("/api-docs/openapi.json", openapi::ApiDoc::openapi()),
            )
            .default_service(web::to(route_not_found));
    }
}

/// What a read-only resource allows.
const READ_METHODS: &str = "GET, HEAD";

/// A resource that answers GET and HEAD (actix sends HEAD's headers without the body), and
/// 405 with `Allow` to any other method.
fn get_only<F, Args>(path: &'static str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    templated(path)
        .route(
            web::route()
                .guard(guard::Any(guard::Get()).or(guard::Head()))
                .to(handler),
        )
        .default_service(web::to(method_not_allowed))
}

/// A resource that answers `routes`, and any other method with 405 and `Allow: allowed`.
fn resource(
    path: &'static str,
    allowed: &'static str,
    routes: impl IntoIterator<Item = actix_web::Route>,
) -> actix_web::Resource {
    routes
        .into_iter()
        .fold(templated(path), actix_web::Resource::route)
        .default_service(web::to(method_not_allowed_for(allowed)))
}

/// A resource that carries its own route template, for the metrics' `uri` label: finding it
/// again after the fact (`HttpRequest::match_pattern`) runs the resources' patterns against
/// the path a second time, on every request.
fn templated(path: &'static str) -> actix_web::Resource {
    web::resource(path).app_data(http_metrics::RouteTemplate(path))
}

async fn method_not_allowed(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed {
        method: req.method().to_string(),
        allowed: READ_METHODS,
    })
}

/// A 405 handler for a resource that allows `allowed`.
fn method_not_allowed_for(
    allowed: &'static str,
) -> impl Fn(HttpRequest) -> std::future::Ready<Result<HttpResponse, ApiError>> + Clone {
    move |req: HttpRequest| {
        std::future::ready(Err(ApiError::MethodNotAllowed {
            method: req.method().to_string(),
            allowed,
        }))
    }
}

async fn route_not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::RouteNotFound {
        path: req.path().to_owned(),
    })
}

fn json_error(error: actix_web::error::JsonPayloadError) -> ApiError {
    use actix_web::error::JsonPayloadError as E;
    match error {
        E::OverflowKnownLength { limit, .. } | E::Overflow { limit } => {
            ApiError::PayloadTooLarge { limit }
        }
        E::ContentType => ApiError::UnsupportedMediaType,
        E::Deserialize(error) => ApiError::InvalidJson(error.to_string()),
        other => ApiError::InvalidJson(other.to_string()),
    }
}
