//! Ports: what the domain needs from the outside world, as traits.
//!
//! The persistence crate implements them on a database; the cache crate wraps them; the api
//! crate calls them. None of those crates' types appear here.

use std::time::Duration;

use async_trait::async_trait;

use crate::catalogue::{Concert, Page, PageRequest, ScheduleAvailability, Seat, SeatFilter};
use crate::ids::{ConcertId, ScheduleId};

/// Why a repository could not answer. No variant is the caller's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepositoryError {
    /// Every connection stayed busy for the whole connection timeout. Retrying shortly is
    /// reasonable: the load is transient by nature.
    #[error("no database connection became free within {waited:?}")]
    Busy { waited: Duration },
    /// The database cannot be reached or refused the connection.
    #[error("the database is unavailable: {reason}")]
    Unavailable { reason: String },
    /// A query failed for a reason a retry will not fix.
    #[error("database query failed: {reason}")]
    Query { reason: String },
}

/// Reads the catalogue.
///
/// A lookup of something that does not exist is `Ok(None)`, not an error: absence is a normal
/// answer, and callers (a cache in particular) need to tell it apart from a failure.
#[async_trait]
pub trait CatalogueRepository: Send + Sync + 'static {
    async fn list_concerts(&self, page: PageRequest) -> Result<Page<Concert>, RepositoryError>;

    async fn find_concert(&self, id: ConcertId) -> Result<Option<Concert>, RepositoryError>;

    /// The concert's schedules in start order, or `None` if the concert does not exist.
    async fn list_schedules(
        &self,
        concert: ConcertId,
    ) -> Result<Option<Vec<ScheduleAvailability>>, RepositoryError>;

    /// The schedule's seats in number order, or `None` if the schedule does not exist.
    async fn list_seats(
        &self,
        schedule: ScheduleId,
        filter: SeatFilter,
    ) -> Result<Option<Vec<Seat>>, RepositoryError>;
}

/// A dependency that readiness depends on (the database, Redis).
#[async_trait]
pub trait HealthCheck: Send + Sync + 'static {
    /// A short stable name for reports, such as `database`.
    fn name(&self) -> &'static str;

    /// Whether the service cannot serve without this dependency. A failing critical check
    /// makes the instance not ready; a failing non-critical one (a cache the service can
    /// run without) makes it degraded but still ready.
    fn critical(&self) -> bool {
        true
    }

    /// Succeeds if the dependency answered within its own bound.
    async fn check(&self) -> Result<(), String>;
}
