//! Catalogue data: the demo set the embedded default starts with, and bulk sets for load
//! tests.
//!
//! Concerts and schedules are inserted from Rust in multi-row batches. Seats, which are the
//! bulk (a million for a load test), are generated inside the database by one
//! `INSERT ... SELECT` over a recursive counter, so no row crosses the wire.

use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDateTime, TimeDelta, Timelike, Utc};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;

use crate::connection::{DbConnection, on_concrete_connection};
use crate::error::PersistenceError;
use crate::pool::DbPool;
use crate::schema::{concerts, schedules};
use crate::status::SeatState;

/// How much catalogue to create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedPlan {
    pub concerts: u32,
    pub schedules_per_concert: u32,
    pub seats_per_schedule: u32,
}

impl SeedPlan {
    /// The demo catalogue: 120 concerts, 4 schedules each, 50 seats each. Three schedules in
    /// four are open for booking now; the fourth opens in a week.
    pub const DEMO: Self = Self {
        concerts: 120,
        schedules_per_concert: 4,
        seats_per_schedule: 50,
    };

    pub fn seats(&self) -> u64 {
        u64::from(self.concerts)
            * u64::from(self.schedules_per_concert)
            * u64::from(self.seats_per_schedule)
    }
}

/// What a seed run created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedReport {
    pub concerts: u64,
    pub schedules: u64,
    pub seats: u64,
    pub elapsed: Duration,
}

#[derive(Insertable)]
#[diesel(table_name = concerts)]
struct NewConcert {
    title: String,
    artist: String,
    venue: String,
    description: String,
}

#[derive(Insertable)]
#[diesel(table_name = schedules)]
struct NewSchedule {
    concert_id: i64,
    starts_at: NaiveDateTime,
    booking_opens_at: NaiveDateTime,
    booking_closes_at: NaiveDateTime,
}

const ARTISTS: [&str; 12] = [
    "The Midnight Owls",
    "Seoul Philharmonic",
    "Aurora Lane",
    "Hanriver Jazz Trio",
    "Neon Parade",
    "Clara Voss",
    "Glass Harbour",
    "Min-ji & The Tides",
    "Orchestra of the Pines",
    "Velvet Static",
    "Kairo Blue",
    "The Lanterns",
];
const VENUES: [&str; 6] = [
    "Olympic Hall",
    "Blue Square",
    "Sejong Center",
    "KSPO Dome",
    "Lotte Concert Hall",
    "Yes24 Live Hall",
];
const TOURS: [&str; 8] = [
    "Live",
    "World Tour",
    "Unplugged",
    "Anniversary Night",
    "Winter Session",
    "Encore",
    "Open Air",
    "Final Tour",
];

/// Rows per INSERT: 1,000 rows of 5 columns stay far below both PostgreSQL's 65,535 bind
/// parameters and SQLite's 32,766.
const BATCH: usize = 1_000;

/// Creates `plan`'s catalogue in one transaction, next to whatever exists.
pub fn seed(
    conn: &mut DbConnection,
    plan: SeedPlan,
    now: DateTime<Utc>,
) -> Result<SeedReport, PersistenceError> {
    if plan.concerts == 0 || plan.schedules_per_concert == 0 || plan.seats_per_schedule == 0 {
        return Err(PersistenceError::Seed(format!(
            "every count must be at least 1, got {plan:?}"
        )));
    }
    let started = Instant::now();
    let report = conn.transaction(|conn| -> Result<SeedReport, PersistenceError> {
        let last_concert: i64 = concerts::table
            .select(diesel::dsl::max(concerts::id))
            .first::<Option<i64>>(conn)?
            .unwrap_or(0);
        let last_schedule: i64 = schedules::table
            .select(diesel::dsl::max(schedules::id))
            .first::<Option<i64>>(conn)?
            .unwrap_or(0);

        let new_concerts: Vec<NewConcert> = (0..plan.concerts).map(demo_concert).collect();
        for batch in new_concerts.chunks(BATCH) {
            on_concrete_connection!(conn, |c| diesel::insert_into(concerts::table)
                .values(batch)
                .execute(c))?;
        }

        let concert_ids: Vec<i64> = concerts::table
            .select(concerts::id)
            .filter(concerts::id.gt(last_concert))
            .order(concerts::id)
            .load(conn)?;
        // Whole minutes make the demo data read naturally in the API.
        let today = now
            .naive_utc()
            .with_second(0)
            .and_then(|t| t.with_nanosecond(0))
            .unwrap_or(now.naive_utc());
        let new_schedules: Vec<NewSchedule> = concert_ids
            .iter()
            .enumerate()
            .flat_map(|(index, &concert_id)| {
                (0..plan.schedules_per_concert)
                    .map(move |k| demo_schedule(concert_id, index, k, plan, today))
            })
            .collect();
        for batch in new_schedules.chunks(BATCH) {
            on_concrete_connection!(conn, |c| diesel::insert_into(schedules::table)
                .values(batch)
                .execute(c))?;
        }

        // Ordered, so that seat ids follow (schedule, number) on both backends: schedule 1's
        // seats are 1..=K, and so on, which load tests and people rely on.
        // The plan's numbers and the seat status are values we own, not user text, so
        // formatting them into the statement is safe, and keeps one statement valid on every
        // backend (PostgreSQL's `$1` and the others' `?` placeholders differ).
        let counter = format!(
            "WITH RECURSIVE n(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM n WHERE n < {})",
            plan.seats_per_schedule
        );
        let insert = "INSERT INTO seats (schedule_id, number, price, status)";
        let select = format!(
            "SELECT s.id, n.n, \
                    CASE WHEN n.n <= {vip} THEN 15000 WHEN n.n <= {r} THEN 11000 ELSE 8000 END, \
                    '{available}' \
             FROM schedules s CROSS JOIN n \
             WHERE s.id > {last_schedule} \
             ORDER BY s.id, n.n",
            vip = plan.seats_per_schedule / 5,
            r = plan.seats_per_schedule * 3 / 5,
            available = SeatState::Available.stored(),
        );
        let statement = if let DbConnection::Mysql(c) = conn {
            // MariaDB takes the counter after the INSERT, and stops a recursion at
            // `max_recursive_iterations` (1,000 by default) unless told otherwise.
            c.batch_execute(&format!(
                "SET SESSION max_recursive_iterations = {}",
                u64::from(plan.seats_per_schedule) + 1
            ))?;
            format!("{insert} {counter} {select}")
        } else {
            format!("{counter} {insert} {select}")
        };
        let seats = diesel::sql_query(statement).execute(conn)?;

        Ok(SeedReport {
            concerts: concert_ids.len() as u64,
            schedules: new_schedules.len() as u64,
            seats: seats as u64,
            elapsed: started.elapsed(),
        })
    })?;
    // PostgreSQL plans from statistics that autovacuum refreshes only a while after a bulk
    // insert; until then the schedules listing (the schedules joined to their seats) would be
    // planned for tables it takes for empty, and scan every seat. MariaDB's and SQLite's
    // planners go by the indexes without them.
    if let DbConnection::Postgres(c) = conn {
        c.batch_execute("ANALYZE concerts, schedules, seats")?;
    }
    Ok(report)
}

fn demo_concert(index: u32) -> NewConcert {
    let i = index as usize;
    let artist = ARTISTS[i % ARTISTS.len()];
    let tour = TOURS[(i / ARTISTS.len()) % TOURS.len()];
    let venue = VENUES[(i * 7) % VENUES.len()];
    NewConcert {
        title: format!("{artist} {tour} {}", 2026 + (i / 96) as u32),
        artist: artist.to_owned(),
        venue: venue.to_owned(),
        description: format!(
            "{artist} at {venue}: {tour}, performance series #{}.",
            index + 1
        ),
    }
}

/// Schedule `k` of the concert at `index`: a week apart, the first within the next two
/// months, two hours past the minute of seeding. All but the last are open for booking from yesterday until an hour before
/// the show; the last opens in a week, so the catalogue also has not-yet-open schedules.
fn demo_schedule(
    concert_id: i64,
    index: usize,
    k: u32,
    plan: SeedPlan,
    today: NaiveDateTime,
) -> NewSchedule {
    let starts_at =
        today + TimeDelta::days(3 + (index % 60) as i64 + 7 * i64::from(k)) + TimeDelta::hours(2);
    let last = plan.schedules_per_concert > 1 && k + 1 == plan.schedules_per_concert;
    let booking_opens_at = if last {
        today + TimeDelta::days(7)
    } else {
        today - TimeDelta::days(1)
    };
    NewSchedule {
        concert_id,
        starts_at,
        booking_opens_at,
        booking_closes_at: starts_at - TimeDelta::hours(1),
    }
}

impl DbPool {
    /// Seeds `plan` into the database.
    pub async fn seed(&self, plan: SeedPlan) -> Result<SeedReport, PersistenceError> {
        self.run_bulk(move |conn| seed(conn, plan, Utc::now()))
            .await
    }

    /// Seeds the demo catalogue if there are no concerts yet; returns what it created.
    pub async fn seed_demo_if_empty(&self) -> Result<Option<SeedReport>, PersistenceError> {
        self.run_bulk(|conn| {
            let any: bool =
                diesel::select(diesel::dsl::exists(concerts::table.select(concerts::id)))
                    .get_result(conn)?;
            if any {
                Ok(None)
            } else {
                seed(conn, SeedPlan::DEMO, Utc::now()).map(Some)
            }
        })
        .await
    }
}
