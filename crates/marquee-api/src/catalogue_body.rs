//! The catalogue endpoints' JSON bodies, built from the domain's values. The handlers answer
//! with them and the cache stores them rendered, so both share this one definition.

use chrono::{DateTime, Utc};
use marquee_domain::{Concert, Page, ScheduleAvailability, Seat, SeatStatus};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConcertBody {
    pub id: i64,
    pub title: String,
    pub artist: String,
    pub venue: String,
    pub description: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConcertPageBody {
    pub items: Vec<ConcertBody>,
    /// The page number, from 0.
    pub page: i64,
    /// The page size asked for.
    pub size: i64,
    /// How many concerts there are in all.
    pub total: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleBody {
    pub id: i64,
    pub concert_id: i64,
    pub starts_at: DateTime<Utc>,
    /// Seats can be held from this instant...
    pub booking_opens_at: DateTime<Utc>,
    /// ...until this one (exclusive).
    pub booking_closes_at: DateTime<Utc>,
    pub total_seats: i64,
    /// Seats free to hold now, counting holds that have run out as free.
    pub available_seats: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SeatStatusBody {
    Available,
    Held,
    Sold,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SeatBody {
    pub id: i64,
    pub number: i32,
    /// Price in minor currency units.
    pub price: i64,
    pub status: SeatStatusBody,
}

impl From<Concert> for ConcertBody {
    fn from(concert: Concert) -> Self {
        Self {
            id: concert.id.get(),
            title: concert.title,
            artist: concert.artist,
            venue: concert.venue,
            description: concert.description,
        }
    }
}

impl From<Page<Concert>> for ConcertPageBody {
    fn from(page: Page<Concert>) -> Self {
        Self {
            items: page.items.into_iter().map(ConcertBody::from).collect(),
            page: page.request.page(),
            size: page.request.size(),
            total: page.total,
        }
    }
}

impl From<ScheduleAvailability> for ScheduleBody {
    fn from(entry: ScheduleAvailability) -> Self {
        let schedule = entry.schedule;
        Self {
            id: schedule.id.get(),
            concert_id: schedule.concert_id.get(),
            starts_at: schedule.starts_at,
            booking_opens_at: schedule.booking_opens_at,
            booking_closes_at: schedule.booking_closes_at,
            total_seats: entry.total_seats,
            available_seats: entry.available_seats,
        }
    }
}

impl From<Seat> for SeatBody {
    fn from(seat: Seat) -> Self {
        Self {
            id: seat.id.get(),
            number: seat.number,
            price: seat.price,
            status: match seat.status {
                SeatStatus::Available => SeatStatusBody::Available,
                SeatStatus::Held => SeatStatusBody::Held,
                SeatStatus::Sold => SeatStatusBody::Sold,
            },
        }
    }
}
