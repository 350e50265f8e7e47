//! The catalogue's read path through the cache: one key group per endpoint, each caching
//! the endpoint's JSON body.
//!
//! Caching the rendered body, not the domain values, means a hit costs one lookup and no
//! serialisation, and a response is byte-identical whether it came from the database,
//! Redis or the in-process tier: all three hold the bytes the loader rendered once.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use marquee_cache::{Cache, CacheGroup, CachePolicy, CachePolicyError, Loader};
use marquee_domain::{
    CatalogueRepository, ConcertId, PageRequest, RepositoryError, ScheduleId, SeatFilter,
};
use serde::{Deserialize, Serialize};

use crate::catalogue::{ConcertBody, ConcertPageBody, ScheduleBody, SeatBody};

/// The lifetime rules of each catalogue key group.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CachePolicies {
    /// `GET /api/v1/concerts/{id}`. Concerts rarely change: the original's 200 s + 0..60 s.
    pub concert: CachePolicy,
    /// `GET /api/v1/concerts?page&size`, and the count of concerts those pages carry.
    pub concerts_page: CachePolicy,
    /// `GET /api/v1/concerts/{id}/schedules`: carries `availableSeats`, which every hold
    /// changes, so it lives seconds, not minutes.
    pub schedules: CachePolicy,
    /// `GET /api/v1/schedules/{id}/seats`: seat states change with every hold, so entries
    /// live seconds (writes can also evict them through the group's `evict`).
    pub seats: CachePolicy,
}

impl Default for CachePolicies {
    fn default() -> Self {
        let short = |base: u64, jitter: u64| CachePolicy {
            base_ttl: Duration::from_secs(base),
            jitter: Duration::from_secs(jitter),
            stale_grace: Duration::from_secs(10),
            ..CachePolicy::default()
        };
        Self {
            concert: CachePolicy::default(),
            concerts_page: CachePolicy::default(),
            schedules: short(5, 2),
            seats: short(2, 1),
        }
    }
}

/// The catalogue's cached reads. Each `get` returns the JSON body, or `None` for a
/// resource that does not exist.
#[derive(Debug, Clone)]
pub struct CatalogueCache {
    pub concert: CacheGroup<RepositoryError>,
    pub concerts_page: CacheGroup<RepositoryError>,
    pub schedules: CacheGroup<RepositoryError>,
    pub seats: CacheGroup<RepositoryError>,
}

/// Renders a body. Serialising these plain structs cannot fail; if it ever did, the error
/// surfaces as a failed load (500), never as a panic.
fn render<T: Serialize>(body: &T) -> Result<Bytes, RepositoryError> {
    serde_json::to_vec(body)
        .map(Bytes::from)
        .map_err(|error| RepositoryError::Query {
            reason: format!("cannot render a response: {error}"),
        })
}

/// A key the cache handed back that does not parse: a bug, reported as a failed load.
fn bad_key(key: &str) -> RepositoryError {
    RepositoryError::Query {
        reason: format!("malformed cache key {key:?}"),
    }
}

fn loader<F, Fut>(repository: &Arc<dyn CatalogueRepository>, load: F) -> Loader<RepositoryError>
where
    F: Fn(Arc<dyn CatalogueRepository>, String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<Bytes>, RepositoryError>> + Send + 'static,
{
    let repository = repository.clone();
    let load = Arc::new(load);
    Arc::new(move |key| {
        let (repository, load) = (repository.clone(), load.clone());
        Box::pin(async move { load(repository, key).await })
    })
}

impl CatalogueCache {
    pub fn new(
        cache: &Cache,
        policies: &CachePolicies,
        repository: Arc<dyn CatalogueRepository>,
    ) -> Result<Self, CachePolicyError> {
        let concert = loader(&repository, |repository, key| async move {
            let id: ConcertId = key.parse().map_err(|_| bad_key(&key))?;
            match repository.find_concert(id).await? {
                Some(concert) => render(&ConcertBody::from(concert)).map(Some),
                None => Ok(None),
            }
        });
        let concerts_page = loader(&repository, |repository, key| async move {
            if key == Self::CONCERTS_TOTAL_KEY {
                // Every page carries the count; the smallest page costs the least.
                let smallest = PageRequest::new(0, 1).map_err(|error| RepositoryError::Query {
                    reason: error.to_string(),
                })?;
                let page = repository.list_concerts(smallest).await?;
                return render(&page.total).map(Some);
            }
            let (page, size) = key.split_once(':').ok_or_else(|| bad_key(&key))?;
            let request = page
                .parse()
                .ok()
                .zip(size.parse().ok())
                .and_then(|(page, size)| PageRequest::new(page, size).ok())
                .ok_or_else(|| bad_key(&key))?;
            let page = repository.list_concerts(request).await?;
            render(&ConcertPageBody::from(page)).map(Some)
        });
        let schedules = loader(&repository, |repository, key| async move {
            let id: ConcertId = key.parse().map_err(|_| bad_key(&key))?;
            match repository.list_schedules(id).await? {
                Some(list) => {
                    let body: Vec<ScheduleBody> =
                        list.into_iter().map(ScheduleBody::from).collect();
                    render(&body).map(Some)
                }
                None => Ok(None),
            }
        });
        let seats = loader(&repository, |repository, key| async move {
            let (id, filter) = key.split_once(':').ok_or_else(|| bad_key(&key))?;
            let id: ScheduleId = id.parse().map_err(|_| bad_key(&key))?;
            let filter = SeatFilter::parse(filter).ok_or_else(|| bad_key(&key))?;
            match repository.list_seats(id, filter).await? {
                Some(list) => {
                    let body: Vec<SeatBody> = list.into_iter().map(SeatBody::from).collect();
                    render(&body).map(Some)
                }
                None => Ok(None),
            }
        });
        Ok(Self {
            concert: cache.group("concert", policies.concert, concert)?,
            concerts_page: cache.group("concerts_page", policies.concerts_page, concerts_page)?,
            schedules: cache.group("schedules", policies.schedules, schedules)?,
            seats: cache.group("seats", policies.seats, seats)?,
        })
    }

    pub fn concert_key(id: ConcertId) -> String {
        id.to_string()
    }

    pub fn concerts_page_key(request: PageRequest) -> String {
        format!("{}:{}", request.page(), request.size())
    }

    /// The key of the number of concerts in `concerts_page`; no `{page}:{size}` key can
    /// take this form.
    pub const CONCERTS_TOTAL_KEY: &str = "total";

    /// The number of concerts, from the body cached under [`Self::CONCERTS_TOTAL_KEY`].
    pub fn concerts_total(body: &[u8]) -> Result<i64, RepositoryError> {
        serde_json::from_slice(body).map_err(|error| RepositoryError::Query {
            reason: format!("malformed cached concert count: {error}"),
        })
    }

    /// The body of a page past the end: no items, and the count. Rendered for each request
    /// rather than cached, since every page number would need an entry of its own.
    pub fn past_the_end(request: PageRequest, total: i64) -> Result<Bytes, RepositoryError> {
        render(&ConcertPageBody {
            items: Vec::new(),
            page: request.page(),
            size: request.size(),
            total,
        })
    }

    pub fn schedules_key(concert: ConcertId) -> String {
        concert.to_string()
    }

    pub fn seats_key(schedule: ScheduleId, filter: SeatFilter) -> String {
        format!("{schedule}:{}", filter.name())
    }
}
