//! The OpenAPI document, generated from the handlers' annotations.

use utoipa::OpenApi;

use crate::{catalogue, error, health};

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Marquee",
        description = "Concert reservations. Every error is `application/problem+json` with a stable `code`.",
    ),
    paths(
        catalogue::list_concerts,
        catalogue::get_concert,
        catalogue::list_schedules,
        catalogue::list_seats,
        health::live,
        health::ready,
        health::metrics,
    ),
    components(schemas(error::Problem)),
    tags(
        (name = "catalogue", description = "Concerts, schedules and seats"),
        (name = "health", description = "Liveness and readiness"),
    )
)]
pub struct ApiDoc;
