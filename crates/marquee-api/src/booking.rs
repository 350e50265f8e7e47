//! The booking endpoints: the wallet, seat holds (reservations) and payments. Every one
//! needs a bearer token; a reservation of another user is answered 404, as if it did not
//! exist, so that ids reveal nothing.

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::http::header::HeaderValue;
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use marquee_domain::{
    Answered, BookingError, IdempotencyKey, PaymentReceipt, RecordedResponse, Reservation,
    ReservationId, SeatId, SeatStatus, Wallet,
};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::caller::Caller;
use crate::error::{
    ApiError, DatabaseBusyAnswer, InvalidIdAnswer, JsonBodyAnswers, PROBLEM_JSON, Problem,
    UnauthorizedAnswer,
};

/// The rules the booking endpoints apply.
#[derive(Debug, Clone, Copy)]
pub struct BookingPolicy {
    pub hold: marquee_domain::HoldRules,
    /// The largest single charge, in minor units.
    pub max_charge: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WalletBody {
    pub user_id: i64,
    /// In minor currency units; never negative.
    pub balance: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChargeRequest {
    /// A positive integer in minor units, at most `booking.max_charge`: 10000000 by default.
    /// The limit is configurable, and the server enforces its own setting.
    #[schema(minimum = 1, maximum = 10000000)]
    #[serde(deserialize_with = "json_integer")]
    pub amount: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HoldRequest {
    #[schema(minimum = 1, maximum = 9223372036854775807_i64)]
    #[serde(deserialize_with = "json_integer")]
    pub seat_id: i64,
}

/// A JSON integer as `i64`, also when it is written with a zero fraction. JSON Schema (and so
/// the OpenAPI document's `type: integer`) counts `5.0` as the integer 5, so a client that
/// sends it sends a valid request. Beyond 2^53 a float no longer holds every integer: such a
/// number is refused rather than taken as a neighbouring one.
fn json_integer<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    const EXACT: f64 = (1_u64 << f64::MANTISSA_DIGITS) as f64;
    let number = serde_json::Number::deserialize(deserializer)?;
    if let Some(integer) = number.as_i64() {
        return Ok(integer);
    }
    match number.as_f64() {
        Some(float) if float.fract() == 0.0 && float.abs() <= EXACT => Ok(float as i64),
        _ => Err(serde::de::Error::invalid_value(
            serde::de::Unexpected::Other(&number.to_string()),
            &"a 64-bit integer",
        )),
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReservationBody {
    pub id: i64,
    pub seat_id: i64,
    pub schedule_id: i64,
    /// `HELD`, `CONFIRMED`, `CANCELLED` or `EXPIRED` (a hold that ran out reads as expired
    /// at once).
    pub status: &'static str,
    pub price: i64,
    /// When the hold runs out, if not paid.
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentBody {
    pub payment_id: i64,
    pub reservation_id: i64,
    pub amount: i64,
    /// Always `CONFIRMED`.
    pub status: &'static str,
}

impl From<Wallet> for WalletBody {
    fn from(wallet: Wallet) -> Self {
        Self {
            user_id: wallet.user_id.get(),
            balance: wallet.balance,
        }
    }
}

fn reservation_body(reservation: Reservation, now: DateTime<Utc>) -> ReservationBody {
    ReservationBody {
        id: reservation.id.get(),
        seat_id: reservation.seat_id.get(),
        schedule_id: reservation.schedule_id.get(),
        status: reservation.effective_status(now).as_str(),
        price: reservation.price,
        expires_at: reservation.expires_at,
    }
}

impl From<PaymentReceipt> for PaymentBody {
    fn from(receipt: PaymentReceipt) -> Self {
        Self {
            payment_id: receipt.payment_id.get(),
            reservation_id: receipt.reservation_id.get(),
            amount: receipt.amount,
            status: "CONFIRMED",
        }
    }
}

/// A JSON request body that must be an object, read straight into `T`.
///
/// serde's derived `Deserialize` would also build a struct from an array (`[7]` for
/// `{"seatId": 7}`); this asks the parser for a map and nothing else. It hands the map to
/// `T` as it is parsed, without collecting it into a `serde_json::Map` first: a `Map` keeps
/// the last of two equal keys, which would hide a duplicate from `T`'s own check (so that
/// `{"amount": 1, "amount": 5000}` charged 5000), while `T`'s derived visitor refuses it.
#[derive(Debug)]
pub struct JsonObject<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for JsonObject<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Object<T>(std::marker::PhantomData<T>);

        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Object<T> {
            type Value = T;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }

        deserializer
            .deserialize_map(Object(std::marker::PhantomData))
            .map(JsonObject)
    }
}

/// The body of a write endpoint.
type Body<T> = web::Json<JsonObject<T>>;

/// The `Idempotency-Key` header as sent. Reading it cannot fail; [`Self::parse`] checks it,
/// where the handler chooses, so that a bad body or id is reported before a bad key.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IdempotencyKeyHeader {
    /// 1 to 128 printable ASCII characters (no space); a retry with the same key returns the first answer
    #[param(rename = "Idempotency-Key", value_type = String, required = true, min_length = 1, max_length = 128, pattern = "^[!-~]{1,128}$")]
    value: Option<HeaderValue>,
}

impl IdempotencyKeyHeader {
    fn parse(&self) -> Result<IdempotencyKey, ApiError> {
        let value = self
            .value
            .as_ref()
            .ok_or(ApiError::IdempotencyKeyRequired)?;
        value
            .to_str()
            .ok()
            .and_then(IdempotencyKey::new)
            .ok_or(ApiError::IdempotencyKeyInvalid)
    }
}

impl FromRequest for IdempotencyKeyHeader {
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(Ok(Self {
            value: req.headers().get("idempotency-key").cloned(),
        }))
    }
}

/// The `{reservationId}` of a route, as written: [`Self::id`] parses it, so that a bad one
/// answers `invalid-id`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ReservationPath {
    /// A positive integer
    #[serde(rename = "reservationId")]
    #[param(value_type = i64, minimum = 1, maximum = 9223372036854775807_i64)]
    reservation_id: String,
}

impl ReservationPath {
    fn id(&self) -> Result<ReservationId, ApiError> {
        ApiError::parse_id(&self.reservation_id, "reservationId")
    }
}

/// The response recorded for a refusal: the problem document the error is answered with.
fn refused(refusal: &BookingError) -> RecordedResponse {
    let (status, problem) = ApiError::from(refusal.clone()).problem();
    RecordedResponse {
        status: status.as_u16(),
        body: problem.to_json(),
    }
}

fn recorded<B: Serialize>(body: &B) -> RecordedResponse {
    RecordedResponse {
        status: StatusCode::OK.as_u16(),
        // Serialising a struct of integers and strings cannot fail.
        body: serde_json::to_string(body).unwrap_or_default(),
    }
}

fn render_wallet(outcome: &Result<Wallet, BookingError>) -> RecordedResponse {
    match outcome {
        Ok(wallet) => recorded(&WalletBody::from(wallet.clone())),
        Err(refusal) => refused(refusal),
    }
}

fn render_payment(outcome: &Result<PaymentReceipt, BookingError>) -> RecordedResponse {
    match outcome {
        Ok(receipt) => recorded(&PaymentBody::from(receipt.clone())),
        Err(refusal) => refused(refusal),
    }
}

/// Sends a recorded response, as recorded. A replay says so in `Idempotent-Replayed`, as
/// Stripe's API does, so that a client can tell a retry's answer from a first one.
fn send<T>(answered: &Answered<T>) -> HttpResponse {
    let status =
        StatusCode::from_u16(answered.response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let content_type = if status.is_success() {
        "application/json"
    } else {
        PROBLEM_JSON
    };
    let mut response = HttpResponse::build(status);
    response.content_type(content_type);
    if answered.replayed {
        response.insert_header(("Idempotent-Replayed", "true"));
    }
    response.body(answered.response.body.clone())
}

/// The answer to a write that changed `reservation`'s seat. The seat's schedule's cached
/// seat lists and counts go first, on every instance, so that a read after the answer shows
/// the change.
async fn seat_changed(
    state: &AppState,
    status: StatusCode,
    reservation: Reservation,
    (from, to): (SeatStatus, SeatStatus),
) -> HttpResponse {
    state
        .cache
        .evict_seat_change(reservation.schedule_id, reservation.concert_id, from, to)
        .await;
    HttpResponse::build(status).json(reservation_body(reservation, Utc::now()))
}

/// The caller's wallet.
#[utoipa::path(get, path = "/api/v1/wallet", tag = "booking", security(("bearer" = [])),
    responses(
        (status = 200, body = WalletBody),
        UnauthorizedAnswer,
        DatabaseBusyAnswer,
    ))]
pub async fn wallet(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    let wallet = state.booking.wallet(caller.0).await?;
    Ok(HttpResponse::Ok().json(WalletBody::from(wallet)))
}

/// Adds money to the caller's wallet, once per `Idempotency-Key`.
#[utoipa::path(post, path = "/api/v1/wallet/charge", tag = "booking", security(("bearer" = [])),
    request_body = ChargeRequest,
    params(IdempotencyKeyHeader),
    responses(
        (status = 200, body = WalletBody),
        (status = 400, description = "`invalid-json`, `invalid-amount`, `idempotency-key-required`, `idempotency-key-invalid`", body = Problem, content_type = PROBLEM_JSON),
        UnauthorizedAnswer,
        DatabaseBusyAnswer,
        (status = 409, description = "`balance-limit`", body = Problem, content_type = PROBLEM_JSON),
        JsonBodyAnswers,
        (status = 422, description = "`idempotency-key-reused`", body = Problem, content_type = PROBLEM_JSON),
    ))]
pub async fn charge(
    state: web::Data<AppState>,
    caller: Caller,
    key: IdempotencyKeyHeader,
    body: Body<ChargeRequest>,
) -> Result<HttpResponse, ApiError> {
    let JsonObject(body) = body.into_inner();
    let key = key.parse()?;
    let amount = body.amount;
    if amount <= 0 || amount > state.booking_policy.max_charge {
        return Err(ApiError::InvalidAmount {
            max: state.booking_policy.max_charge,
        });
    }
    let answered = state
        .booking
        .charge(caller.0, amount, key, render_wallet)
        .await?;
    Ok(send(&answered))
}

/// Holds a seat for the caller for the configured time.
#[utoipa::path(post, path = "/api/v1/reservations", tag = "booking", security(("bearer" = [])),
    request_body = HoldRequest,
    responses(
        (status = 201, body = ReservationBody),
        (status = 400, description = "`invalid-json`, `invalid-id`", body = Problem, content_type = PROBLEM_JSON),
        UnauthorizedAnswer,
        DatabaseBusyAnswer,
        (status = 404, description = "`seat-not-found`", body = Problem, content_type = PROBLEM_JSON),
        (status = 403, description = "`not-admitted`: the waiting room is on and the caller is not ACTIVE in the seat's concert queue", body = Problem, content_type = PROBLEM_JSON),
        (status = 409, description = "`seat-taken`, `booking-closed`, `hold-limit-reached`", body = Problem, content_type = PROBLEM_JSON),
        JsonBodyAnswers,
    ))]
pub async fn hold(
    state: web::Data<AppState>,
    caller: Caller,
    body: Body<HoldRequest>,
) -> Result<HttpResponse, ApiError> {
    let JsonObject(body) = body.into_inner();
    let seat = SeatId::new(body.seat_id).map_err(|source| ApiError::InvalidId {
        parameter: "seatId",
        source,
    })?;
    let reservation = state
        .booking
        .hold_seat(caller.0, seat, state.booking_policy.hold)
        .await?;
    // A hold takes a seat that reads as available (free, or its hold ran out).
    let change = (SeatStatus::Available, SeatStatus::Held);
    Ok(seat_changed(&state, StatusCode::CREATED, reservation, change).await)
}

/// One of the caller's reservations.
#[utoipa::path(get, path = "/api/v1/reservations/{reservationId}", tag = "booking", security(("bearer" = [])),
    params(ReservationPath),
    responses(
        (status = 200, body = ReservationBody),
        InvalidIdAnswer,
        UnauthorizedAnswer,
        DatabaseBusyAnswer,
        (status = 404, description = "`reservation-not-found` (also for another user's)", body = Problem, content_type = PROBLEM_JSON),
    ))]
pub async fn get_reservation(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<ReservationPath>,
) -> Result<HttpResponse, ApiError> {
    let id = path.id()?;
    let reservation = state
        .booking
        .reservation(caller.0, id)
        .await?
        .ok_or(ApiError::Booking(BookingError::ReservationNotFound(id)))?;
    Ok(HttpResponse::Ok().json(reservation_body(reservation, Utc::now())))
}

/// The caller's reservations, newest first (at most 100).
#[utoipa::path(get, path = "/api/v1/reservations", tag = "booking", security(("bearer" = [])),
    responses(
        (status = 200, body = [ReservationBody]),
        UnauthorizedAnswer,
        DatabaseBusyAnswer,
    ))]
pub async fn list_reservations(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let now = Utc::now();
    let list: Vec<ReservationBody> = state
        .booking
        .reservations(caller.0)
        .await?
        .into_iter()
        .map(|reservation| reservation_body(reservation, now))
        .collect();
    Ok(HttpResponse::Ok().json(list))
}

/// Cancels a held reservation and frees its seat.
#[utoipa::path(delete, path = "/api/v1/reservations/{reservationId}", tag = "booking", security(("bearer" = [])),
    params(ReservationPath),
    responses(
        (status = 200, body = ReservationBody),
        InvalidIdAnswer,
        UnauthorizedAnswer,
        DatabaseBusyAnswer,
        (status = 404, description = "`reservation-not-found`", body = Problem, content_type = PROBLEM_JSON),
        (status = 409, description = "`reservation-not-held`, `already-paid`", body = Problem, content_type = PROBLEM_JSON),
        (status = 410, description = "`hold-expired`", body = Problem, content_type = PROBLEM_JSON),
    ))]
pub async fn cancel(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<ReservationPath>,
) -> Result<HttpResponse, ApiError> {
    let id = path.id()?;
    let reservation = state.booking.cancel(caller.0, id).await?;
    // Only a live hold can be cancelled.
    let change = (SeatStatus::Held, SeatStatus::Available);
    Ok(seat_changed(&state, StatusCode::OK, reservation, change).await)
}

/// Pays a held reservation from the wallet, once, whatever the retries.
#[utoipa::path(post, path = "/api/v1/reservations/{reservationId}/payment", tag = "booking", security(("bearer" = [])),
    params(ReservationPath, IdempotencyKeyHeader),
    responses(
        (status = 200, body = PaymentBody),
        (status = 400, description = "`idempotency-key-required`, `idempotency-key-invalid`, `invalid-id`", body = Problem, content_type = PROBLEM_JSON),
        UnauthorizedAnswer,
        DatabaseBusyAnswer,
        (status = 402, description = "`insufficient-balance`", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "`reservation-not-found`", body = Problem, content_type = PROBLEM_JSON),
        (status = 409, description = "`already-paid`, `reservation-not-held`", body = Problem, content_type = PROBLEM_JSON),
        (status = 410, description = "`hold-expired`", body = Problem, content_type = PROBLEM_JSON),
        (status = 422, description = "`idempotency-key-reused`", body = Problem, content_type = PROBLEM_JSON),
    ))]
pub async fn pay(
    state: web::Data<AppState>,
    caller: Caller,
    key: IdempotencyKeyHeader,
    path: web::Path<ReservationPath>,
) -> Result<HttpResponse, ApiError> {
    let id = path.id()?;
    let key = key.parse()?;
    let answered = state.booking.pay(caller.0, id, key, render_payment).await?;
    if let Some(receipt) = &answered.performed {
        state
            .cache
            .evict_seat_change(
                receipt.schedule_id,
                receipt.concert_id,
                SeatStatus::Held,
                SeatStatus::Sold,
            )
            .await;
        if let Some(room) = &state.queue {
            // The payment ended the admission in the database; the view follows.
            room.admission_used(receipt.concert_id, caller.0).await;
        }
    }
    Ok(send(&answered))
}

/// Frees the seats of holds that ran out, and drops their cached listings. Reads treat an
/// expired hold as free at once; this catches the stored rows up and the caches with them.
pub async fn sweep_expired_holds(state: &AppState) -> Result<usize, BookingError> {
    let changed = state.booking.expire_holds(Utc::now()).await?;
    for (schedule, concert) in &changed {
        // Reads already show these seats as available; the cached listings loaded before
        // the holds ran out still show them held.
        state
            .cache
            .evict_seat_change(*schedule, *concert, SeatStatus::Held, SeatStatus::Available)
            .await;
    }
    Ok(changed.len())
}
