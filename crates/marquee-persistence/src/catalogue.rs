//! [`DieselCatalogue`]: the catalogue port on the database.
//!
//! Every query here is a cache-miss load of the catalogue. The concerts and their pages go
//! through [`Databases::db_read`] (the replica when there is a usable one: they change only
//! when an operator seeds); schedules (their `availableSeats`) and seats carry seat states,
//! which every hold changes, and go through [`Databases::db_read_prefer_primary`], so that a
//! load never reads a replica that has not applied a write made before it began.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};

use diesel::dsl::{case_when, count};
use diesel::prelude::*;
use marquee_domain::{
    CatalogueRepository, Concert, ConcertId, Page, PageRequest, RepositoryError, Schedule,
    ScheduleAvailability, ScheduleId, Seat, SeatFilter, SeatId, SeatStatus,
};

use crate::abort::corrupt_row;
use crate::connection::DbConnection;
use crate::error::PersistenceError;
use crate::replica::Databases;
use crate::schema::{concerts, schedules, seats};
use crate::status::SeatState;

/// Reads the catalogue through [`Databases`]: the primary, or a replica where the read
/// allows it.
#[derive(Debug, Clone)]
pub struct DieselCatalogue {
    databases: Databases,
}

impl DieselCatalogue {
    /// Reads from `databases`: a [`DbPool`](crate::DbPool) alone (every read on it), or
    /// [`Databases::with_replica`].
    pub fn new(databases: impl Into<Databases>) -> Self {
        Self {
            databases: databases.into(),
        }
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = concerts)]
struct ConcertRow {
    id: i64,
    title: String,
    artist: String,
    venue: String,
    description: String,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = schedules)]
struct ScheduleRow {
    id: i64,
    concert_id: i64,
    starts_at: NaiveDateTime,
    booking_opens_at: NaiveDateTime,
    booking_closes_at: NaiveDateTime,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = seats)]
struct SeatRow {
    id: i64,
    schedule_id: i64,
    number: i32,
    price: i64,
    status: SeatState,
    held_until: Option<NaiveDateTime>,
}

fn id<T>(
    raw: i64,
    make: fn(i64) -> Result<T, marquee_domain::IdError>,
) -> Result<T, PersistenceError> {
    make(raw).map_err(|error| PersistenceError::Query(corrupt_row(format!("id {raw}: {error}"))))
}

impl TryFrom<ConcertRow> for Concert {
    type Error = PersistenceError;

    fn try_from(row: ConcertRow) -> Result<Self, Self::Error> {
        Ok(Concert {
            id: id(row.id, ConcertId::new)?,
            title: row.title,
            artist: row.artist,
            venue: row.venue,
            description: row.description,
        })
    }
}

impl TryFrom<ScheduleRow> for Schedule {
    type Error = PersistenceError;

    fn try_from(row: ScheduleRow) -> Result<Self, Self::Error> {
        Ok(Schedule {
            id: id(row.id, ScheduleId::new)?,
            concert_id: id(row.concert_id, ConcertId::new)?,
            starts_at: row.starts_at.and_utc(),
            booking_opens_at: row.booking_opens_at.and_utc(),
            booking_closes_at: row.booking_closes_at.and_utc(),
        })
    }
}

impl SeatRow {
    fn into_seat(self, now: DateTime<Utc>) -> Result<Seat, PersistenceError> {
        Ok(Seat {
            id: id(self.id, SeatId::new)?,
            schedule_id: id(self.schedule_id, ScheduleId::new)?,
            number: self.number,
            price: self.price,
            status: SeatStatus::from(self.status)
                .effective(self.held_until.map(|at| at.and_utc()), now),
        })
    }
}

type Db = <DbConnection as Connection>::Backend;
type SeatPredicate =
    Box<dyn BoxableExpression<seats::table, Db, SqlType = diesel::sql_types::Bool>>;

/// Whether a seat reads as available at `now`, from its `status` and `held_until` columns:
/// free, or held by a hold that has run out. A macro so that the one rule serves both the
/// seats' own columns and the nullable ones of a join.
macro_rules! reads_as_available {
    ($status:expr, $held_until:expr, $now:expr) => {
        $status
            .eq(SeatState::Available)
            .or($status.eq(SeatState::Held).and($held_until.le($now)))
    };
}

/// The SQL form of [`SeatStatus::effective`]: which rows read as `status` at `now`.
///
/// The stored status lags the clock for holds that have run out, so "available" includes
/// them and "held" excludes them. Keeping the rule in SQL (rather than filtering in Rust)
/// keeps counts and listings consistent and lets the database use its indexes.
fn seats_reading_as(status: SeatStatus, now: NaiveDateTime) -> SeatPredicate {
    match status {
        SeatStatus::Available => Box::new(reads_as_available!(
            seats::status,
            seats::held_until.assume_not_null(),
            now
        )),
        SeatStatus::Held => Box::new(
            seats::status
                .eq(SeatState::Held)
                .and(seats::held_until.gt(now).assume_not_null()),
        ),
        SeatStatus::Sold => Box::new(seats::status.eq(SeatState::Sold)),
    }
}

fn concert_exists(conn: &mut DbConnection, concert: i64) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        concerts::table.filter(concerts::id.eq(concert)),
    ))
    .get_result(conn)
}

fn schedule_exists(conn: &mut DbConnection, schedule: i64) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        schedules::table.filter(schedules::id.eq(schedule)),
    ))
    .get_result(conn)
}

/// A concert's schedules in their order, each with its number of seats and of seats reading
/// as available at `now`: one query (the schedules left-joined to their seats, grouped by
/// schedule), so that a reload of the schedules listing, which every hold causes, costs one
/// round trip. A schedule without seats has counts of zero.
fn schedules_with_counts(
    conn: &mut DbConnection,
    concert: i64,
    now: NaiveDateTime,
) -> QueryResult<Vec<(ScheduleRow, i64, i64)>> {
    // `count` skips NULLs: the seat's id is NULL on a schedule without seats, and the CASE is
    // NULL for every seat that is not available.
    let available = count(case_when(
        reads_as_available!(seats::status.nullable(), seats::held_until.nullable(), now),
        seats::id.nullable(),
    ));
    schedules::table
        .left_join(seats::table)
        .filter(schedules::concert_id.eq(concert))
        .order((schedules::starts_at, schedules::id))
        // Every selected column, not the key alone: MariaDB under ONLY_FULL_GROUP_BY does not
        // infer the others from the key, as PostgreSQL and SQLite do.
        .group_by((
            schedules::id,
            schedules::concert_id,
            schedules::starts_at,
            schedules::booking_opens_at,
            schedules::booking_closes_at,
        ))
        .select((
            ScheduleRow::as_select(),
            count(seats::id.nullable()),
            available,
        ))
        .load(conn)
}

#[async_trait]
impl CatalogueRepository for DieselCatalogue {
    async fn list_concerts(&self, page: PageRequest) -> Result<Page<Concert>, RepositoryError> {
        let page = self
            .databases
            .db_read(move |conn| {
                let total: i64 = concerts::table.count().get_result(conn)?;
                let rows = concerts::table
                    .select(ConcertRow::as_select())
                    .order(concerts::id)
                    .limit(page.size())
                    .offset(page.offset())
                    .load(conn)?;
                let items = rows
                    .into_iter()
                    .map(Concert::try_from)
                    .collect::<Result<_, _>>()?;
                Ok(Page {
                    items,
                    request: page,
                    total,
                })
            })
            .await?;
        Ok(page)
    }

    async fn find_concert(&self, concert: ConcertId) -> Result<Option<Concert>, RepositoryError> {
        let found = self
            .databases
            .db_read(move |conn| {
                concerts::table
                    .find(concert.get())
                    .select(ConcertRow::as_select())
                    .first(conn)
                    .optional()?
                    .map(Concert::try_from)
                    .transpose()
            })
            .await?;
        Ok(found)
    }

    async fn list_schedules(
        &self,
        concert: ConcertId,
    ) -> Result<Option<Vec<ScheduleAvailability>>, RepositoryError> {
        let now = Utc::now().naive_utc();
        let found = self
            .databases
            .db_read_prefer_primary(move |conn| {
                let rows = schedules_with_counts(conn, concert.get(), now)?;
                // A concert without schedules and no concert at all both find no rows;
                // only then does existence need a query of its own.
                if rows.is_empty() {
                    return Ok(concert_exists(conn, concert.get())?.then(Vec::new));
                }
                rows.into_iter()
                    .map(|(row, total_seats, available_seats)| {
                        Ok(ScheduleAvailability {
                            schedule: Schedule::try_from(row)?,
                            total_seats,
                            available_seats,
                        })
                    })
                    .collect::<Result<Vec<_>, PersistenceError>>()
                    .map(Some)
            })
            .await?;
        Ok(found)
    }

    async fn list_seats(
        &self,
        schedule: ScheduleId,
        filter: SeatFilter,
    ) -> Result<Option<Vec<Seat>>, RepositoryError> {
        let now = Utc::now();
        let found = self
            .databases
            .db_read_prefer_primary(move |conn| {
                let mut query = seats::table
                    .filter(seats::schedule_id.eq(schedule.get()))
                    .select(SeatRow::as_select())
                    .order(seats::number)
                    .into_boxed();
                if let SeatFilter::Only(status) = filter {
                    query = query.filter(seats_reading_as(status, now.naive_utc()));
                }
                let rows = query.load(conn)?;
                // No seats in the listing: an unknown schedule, or none in this state.
                if rows.is_empty() && !schedule_exists(conn, schedule.get())? {
                    return Ok(None);
                }
                rows.into_iter()
                    .map(|row| row.into_seat(now))
                    .collect::<Result<Vec<_>, _>>()
                    .map(Some)
            })
            .await?;
        Ok(found)
    }
}
