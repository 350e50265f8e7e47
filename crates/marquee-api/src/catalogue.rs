//! The catalogue endpoints: concerts, their schedules, and seats.

use actix_web::http::header::ContentType;
use actix_web::{HttpResponse, web};
use bytes::Bytes;
use marquee_cache::CacheError;
use marquee_domain::{ConcertId, PageRequest, ScheduleId, SeatFilter};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::AppState;
use crate::catalogue_body::{ConcertBody, ConcertPageBody, ScheduleBody, SeatBody};
use crate::catalogue_cache::{BodyGroup, CatalogueCache, PageKey, SeatsKey};
use crate::error::{ApiError, DatabaseBusyAnswer, InvalidIdAnswer, PROBLEM_JSON, Problem};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Page number, from 0 to 92233720368547758 (`i64::MAX / 100`, so that the offset of
    /// any page of any size fits a 64-bit integer).
    #[param(minimum = 0, maximum = 92233720368547758_i64, default = 0)]
    pub page: Option<i64>,
    /// Page size.
    #[param(minimum = 1, maximum = 100, default = 20)]
    pub size: Option<i64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SeatParams {
    /// Only seats in this state: `available`, `held`, `sold` or `all` (the default).
    /// Case-insensitive.
    #[param(
        pattern = "^([Aa][Vv][Aa][Ii][Ll][Aa][Bb][Ll][Ee]|[Hh][Ee][Ll][Dd]|[Ss][Oo][Ll][Dd]|[Aa][Ll][Ll])$"
    )]
    pub status: Option<String>,
}

/// Reads `key` from `group`, reporting the time spent for the slow-request log.
async fn cached<K: marquee_cache::CacheKey>(
    group: &BodyGroup<K>,
    key: &K,
) -> Result<Option<Bytes>, ApiError> {
    let started = std::time::Instant::now();
    let body = group.get(key).await;
    tracing::trace!(
        target: crate::request_span::TIMING_TARGET,
        phase = "cache",
        micros = started.elapsed().as_micros() as u64,
    );
    Ok(body?)
}

/// Whether a concert exists, by the cached concert lookup (a negative answer is cached too).
pub(crate) async fn concert_exists(state: &AppState, id: ConcertId) -> Result<bool, ApiError> {
    Ok(cached(&state.cache.concert, &id).await?.is_some())
}

/// A cached JSON body as a response.
fn json(body: Bytes) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(body))
}

/// The count and every page always exist (past the end a page is empty): a loader of
/// theirs that answered "absent" is a bug, reported as a failed load.
fn never_absent() -> ApiError {
    ApiError::from(CacheError::LoadAborted)
}

/// The cached body, from `group`, of the concert that `raw` names.
async fn concert_body(group: &BodyGroup<ConcertId>, raw: &str) -> Result<HttpResponse, ApiError> {
    let id: ConcertId = ApiError::parse_id(raw, "concertId")?;
    json(
        cached(group, &id)
            .await?
            .ok_or(ApiError::ConcertNotFound(id))?,
    )
}

/// List concerts, a page at a time.
#[utoipa::path(
    get, path = "/api/v1/concerts", tag = "catalogue", params(PageParams),
    responses(
        (status = 200, description = "One page of concerts, in id order", body = ConcertPageBody),
        (status = 400, description = "`invalid-query` or `invalid-page`", body = Problem, content_type = PROBLEM_JSON),
        DatabaseBusyAnswer,
    )
)]
pub async fn list_concerts(
    state: web::Data<AppState>,
    params: web::Query<PageParams>,
) -> Result<HttpResponse, ApiError> {
    let request = PageRequest::new(
        params.page.unwrap_or(0),
        params.size.unwrap_or(PageRequest::DEFAULT_SIZE),
    )?;
    // Pages past the end are told apart by the cached count and answered from it: cached
    // one by one, page numbers without end would each add an entry and push hot keys out
    // of a memory-bounded Redis; not cached, each would be a database query.
    let total = cached(&state.cache.concerts_page, &PageKey::Total).await?;
    let total = CatalogueCache::concerts_total(&total.ok_or_else(never_absent)?)?;
    if request.offset() >= total {
        return json(CatalogueCache::past_the_end(request, total)?);
    }
    let body = cached(&state.cache.concerts_page, &PageKey::Page(request)).await?;
    json(body.ok_or_else(never_absent)?)
}

/// Get one concert.
#[utoipa::path(
    get, path = "/api/v1/concerts/{concertId}", tag = "catalogue",
    params(("concertId" = i64, Path, description = "A positive integer", minimum = 1, maximum = 9223372036854775807_i64)),
    responses(
        (status = 200, description = "The concert", body = ConcertBody),
        InvalidIdAnswer,
        (status = 404, description = "`concert-not-found`", body = Problem, content_type = PROBLEM_JSON),
        DatabaseBusyAnswer,
    )
)]
pub async fn get_concert(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    concert_body(&state.cache.concert, &path).await
}

/// List a concert's schedules with their seat counts, in start order.
#[utoipa::path(
    get, path = "/api/v1/concerts/{concertId}/schedules", tag = "catalogue",
    params(("concertId" = i64, Path, description = "A positive integer", minimum = 1, maximum = 9223372036854775807_i64)),
    responses(
        (status = 200, description = "The schedules", body = [ScheduleBody]),
        InvalidIdAnswer,
        (status = 404, description = "`concert-not-found`", body = Problem, content_type = PROBLEM_JSON),
        DatabaseBusyAnswer,
    )
)]
pub async fn list_schedules(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    concert_body(&state.cache.schedules, &path).await
}

/// List a schedule's seats in number order.
#[utoipa::path(
    get, path = "/api/v1/schedules/{scheduleId}/seats", tag = "catalogue",
    params(("scheduleId" = i64, Path, description = "A positive integer", minimum = 1, maximum = 9223372036854775807_i64), SeatParams),
    responses(
        (status = 200, description = "The seats", body = [SeatBody]),
        (status = 400, description = "`invalid-id` or `invalid-query`", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "`schedule-not-found`", body = Problem, content_type = PROBLEM_JSON),
        DatabaseBusyAnswer,
    )
)]
pub async fn list_seats(
    state: web::Data<AppState>,
    path: web::Path<String>,
    params: web::Query<SeatParams>,
) -> Result<HttpResponse, ApiError> {
    let id: ScheduleId = ApiError::parse_id(&path, "scheduleId")?;
    let filter = match params.status.as_deref() {
        None => SeatFilter::All,
        Some(value) => SeatFilter::parse(value).ok_or_else(|| {
            ApiError::InvalidQuery(format!(
                "status must be one of available, held, sold or all, got {value:?}"
            ))
        })?,
    };
    let body = cached(
        &state.cache.seats,
        &SeatsKey {
            schedule: id,
            filter,
        },
    )
    .await?;
    json(body.ok_or(ApiError::ScheduleNotFound(id))?)
}
