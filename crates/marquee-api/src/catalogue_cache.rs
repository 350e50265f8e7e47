//! The catalogue's read path through the cache: one key group per endpoint, each caching
//! the endpoint's JSON body.
//!
//! Caching the rendered body, not the domain values, means a hit costs one lookup and no
//! serialisation, and a response is byte-identical whether it came from the database,
//! Redis or the in-process tier: all three hold the bytes the loader rendered once.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use marquee_cache::{BuildError, Cache, CacheGroup, CachePolicy, Raw};
use marquee_domain::{
    CatalogueRepository, ConcertId, PageRequest, RepositoryError, ScheduleId, SeatFilter,
    SeatStatus,
};
use serde::{Deserialize, Serialize};

use crate::catalogue_body::{ConcertBody, ConcertPageBody, ScheduleBody, SeatBody};

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
        let short = |base: u64, jitter: u64| {
            CachePolicy::with_ttl(Duration::from_secs(base), Duration::from_secs(jitter))
                .with_stale_grace(Duration::from_secs(10))
        };
        Self {
            concert: CachePolicy::default(),
            concerts_page: CachePolicy::default(),
            schedules: short(5, 2),
            seats: short(2, 1),
        }
    }
}

/// A catalogue key group: the JSON body of one endpoint per key, or `None` for a resource
/// that does not exist. The bodies are stored as they are ([`Raw`]).
pub type BodyGroup<K> = CacheGroup<K, Bytes, RepositoryError>;

/// The catalogue's cached reads. Each `get` returns the JSON body, or `None` for a
/// resource that does not exist.
#[derive(Debug, Clone)]
pub struct CatalogueCache {
    pub concert: BodyGroup<ConcertId>,
    pub concerts_page: BodyGroup<PageKey>,
    pub schedules: BodyGroup<ConcertId>,
    pub seats: BodyGroup<SeatsKey>,
}

/// A key of `concerts_page`: one page, or the number of concerts that every page carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PageKey {
    Total,
    Page(PageRequest),
}

/// Stored as `total`, or `{page}:{size}`.
impl fmt::Display for PageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Total => f.write_str("total"),
            Self::Page(request) => write!(f, "{}:{}", request.page(), request.size()),
        }
    }
}

/// A key of `seats`: a schedule's seats, all or those in one state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SeatsKey {
    pub schedule: ScheduleId,
    pub filter: SeatFilter,
}

/// Stored as `{schedule}:{filter}`.
impl fmt::Display for SeatsKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.schedule, self.filter.name())
    }
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

/// What a loader answers: the rendered body, or `None` for a resource that does not exist.
type Loaded = Result<Option<Bytes>, RepositoryError>;

/// What the repository found, rendered; `None` (no such resource) stays `None`.
fn render_found<B: Serialize>(found: Option<B>) -> Loaded {
    found.map(|body| render(&body)).transpose()
}

/// The body of each item of a list.
fn bodies<T, B: From<T>>(list: Vec<T>) -> Vec<B> {
    list.into_iter().map(B::from).collect()
}

async fn load_concert(repository: Arc<dyn CatalogueRepository>, id: ConcertId) -> Loaded {
    render_found(repository.find_concert(id).await?.map(ConcertBody::from))
}

async fn load_concerts_page(repository: Arc<dyn CatalogueRepository>, key: PageKey) -> Loaded {
    match key {
        PageKey::Total => {
            // Every page carries the count; the smallest page costs the least.
            let smallest = PageRequest::new(0, 1).map_err(|error| RepositoryError::Query {
                reason: error.to_string(),
            })?;
            let page = repository.list_concerts(smallest).await?;
            render(&page.total).map(Some)
        }
        PageKey::Page(request) => {
            let page = repository.list_concerts(request).await?;
            render(&ConcertPageBody::from(page)).map(Some)
        }
    }
}

async fn load_schedules(repository: Arc<dyn CatalogueRepository>, id: ConcertId) -> Loaded {
    let found = repository.list_schedules(id).await?;
    render_found(found.map(bodies::<_, ScheduleBody>))
}

async fn load_seats(repository: Arc<dyn CatalogueRepository>, key: SeatsKey) -> Loaded {
    let found = repository.list_seats(key.schedule, key.filter).await?;
    render_found(found.map(bodies::<_, SeatBody>))
}

/// The cache and the repository that every catalogue key group is built from.
struct BodyGroups<'a> {
    cache: &'a Cache,
    repository: &'a Arc<dyn CatalogueRepository>,
}

impl BodyGroups<'_> {
    /// The group `name`, its bodies rendered by `load` from the repository.
    fn build<K, F, Fut>(
        &self,
        name: &'static str,
        policy: CachePolicy,
        load: F,
    ) -> Result<BodyGroup<K>, BuildError>
    where
        K: marquee_cache::CacheKey,
        F: Fn(Arc<dyn CatalogueRepository>, K) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Loaded> + Send + 'static,
    {
        let repository = self.repository.clone();
        self.cache
            .group::<K, Bytes>(name)
            .policy(policy)
            .codec(Raw)
            .build(move |key| load(repository.clone(), key))
    }
}

impl CatalogueCache {
    pub fn new(
        cache: &Cache,
        policies: &CachePolicies,
        repository: Arc<dyn CatalogueRepository>,
    ) -> Result<Self, BuildError> {
        let groups = BodyGroups {
            cache,
            repository: &repository,
        };
        Ok(Self {
            concert: groups.build("concert", policies.concert, load_concert)?,
            concerts_page: groups.build(
                "concerts_page",
                policies.concerts_page,
                load_concerts_page,
            )?,
            schedules: groups.build("schedules", policies.schedules, load_schedules)?,
            seats: groups.build("seats", policies.seats, load_seats)?,
        })
    }

    /// The number of concerts, from the body cached under [`PageKey::Total`].
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

    /// Drops every cached listing that a seat of `schedule` moving from `from` to `to`
    /// changes: the schedule's listing of all its seats, its listings of `from` and of `to`,
    /// and, when the seat becomes or stops being available, its concert's schedules (their
    /// counts of available seats). A payment (held to sold) therefore leaves the available
    /// seats and the counts cached: it changes neither, and those are the listings a busy
    /// opening reads.
    ///
    /// The evictions go out together, each one script on Redis (its invalidation message
    /// inside, after the eviction).
    pub async fn evict_seat_change(
        &self,
        schedule: ScheduleId,
        concert: ConcertId,
        from: SeatStatus,
        to: SeatStatus,
    ) {
        let key = |filter| SeatsKey { schedule, filter };
        let counts_change = (from == SeatStatus::Available) != (to == SeatStatus::Available);
        let (all, left, entered) = (
            key(SeatFilter::All),
            key(SeatFilter::Only(from)),
            key(SeatFilter::Only(to)),
        );
        tokio::join!(
            self.seats.evict(&all),
            self.seats.evict(&left),
            self.seats.evict(&entered),
            async {
                if counts_change {
                    self.schedules.evict(&concert).await;
                }
            },
        );
    }
}
