//! The OpenAPI document, generated from the handlers' annotations.

use utoipa::OpenApi;

use utoipa::Modify;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::{booking, catalogue, error, health, queue};

/// Declares the `bearer` scheme the booking endpoints require.
#[derive(Debug)]
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

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
        booking::wallet,
        booking::charge,
        booking::hold,
        booking::list_reservations,
        booking::get_reservation,
        booking::cancel,
        booking::pay,
        queue::join,
        queue::poll,
        queue::leave,
    ),
    components(schemas(error::Problem)),
    modifiers(&BearerAuth),
    tags(
        (name = "catalogue", description = "Concerts, schedules and seats"),
        (name = "health", description = "Liveness and readiness"),
        (name = "booking", description = "Wallet, seat holds and payments (bearer token)"),
        (name = "queue", description = "The waiting room in front of booking at ticket openings (bearer token)"),
    )
)]
pub struct ApiDoc;
