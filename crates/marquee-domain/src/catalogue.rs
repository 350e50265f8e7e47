//! The catalogue: concerts, their schedules and seats, and the rules for reading them.

use chrono::{DateTime, Utc};

use crate::booking::Money;
use crate::ids::{ConcertId, ScheduleId, SeatId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Concert {
    pub id: ConcertId,
    pub title: String,
    pub artist: String,
    pub venue: String,
    pub description: String,
}

/// One performance of a concert and its booking window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub id: ScheduleId,
    pub concert_id: ConcertId,
    pub starts_at: DateTime<Utc>,
    /// Holds are accepted from this instant (inclusive)...
    pub booking_opens_at: DateTime<Utc>,
    /// ...until this one (exclusive).
    pub booking_closes_at: DateTime<Utc>,
}

impl Schedule {
    /// Whether a seat of this schedule may be held at `now`.
    pub fn is_open_for_booking(&self, now: DateTime<Utc>) -> bool {
        self.booking_opens_at <= now && now < self.booking_closes_at
    }
}

/// A schedule with its seat counts, as the schedules listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleAvailability {
    pub schedule: Schedule,
    pub total_seats: i64,
    pub available_seats: i64,
}

/// A seat's state as readers see it.
///
/// The stored status can lag the clock: a `HELD` seat whose hold has run out is free for
/// anyone at once, before a background sweep rewrites the row. Queries therefore derive this
/// from the stored status *and* the hold's expiry (see [`SeatStatus::effective`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SeatStatus {
    Available,
    Held,
    Sold,
}

impl SeatStatus {
    /// The stable upper-case name the API shows (storage keeps the same names; see
    /// marquee-persistence's `status`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Available => "AVAILABLE",
            Self::Held => "HELD",
            Self::Sold => "SOLD",
        }
    }

    /// The status a reader should see at `now`: an expired hold reads as available.
    pub fn effective(self, held_until: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Self {
        match (self, held_until) {
            (Self::Held, Some(until)) if until <= now => Self::Available,
            (status, _) => status,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seat {
    pub id: SeatId,
    pub schedule_id: ScheduleId,
    /// The seat's number within its schedule, from 1.
    pub number: i32,
    pub price: Money,
    pub status: SeatStatus,
}

/// Which seats of a schedule to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SeatFilter {
    #[default]
    All,
    Only(SeatStatus),
}

impl SeatFilter {
    /// Parses the API's `status` query value, case-insensitively.
    pub fn parse(value: &str) -> Option<Self> {
        match value.to_ascii_lowercase().as_str() {
            "all" => Some(Self::All),
            "available" => Some(Self::Only(SeatStatus::Available)),
            "held" => Some(Self::Only(SeatStatus::Held)),
            "sold" => Some(Self::Only(SeatStatus::Sold)),
            _ => None,
        }
    }

    /// The canonical lower-case name, as the API's `status` parameter spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Only(SeatStatus::Available) => "available",
            Self::Only(SeatStatus::Held) => "held",
            Self::Only(SeatStatus::Sold) => "sold",
        }
    }

    pub fn admits(self, status: SeatStatus) -> bool {
        match self {
            Self::All => true,
            Self::Only(wanted) => wanted == status,
        }
    }
}

/// A validated request for one page of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PageRequest {
    page: i64,
    size: i64,
}

/// Why a page request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageRequestError {
    #[error("page must be 0 or more, got {0}")]
    NegativePage(i64),
    #[error("size must be between 1 and {max}, got {0}", max = PageRequest::MAX_SIZE)]
    SizeOutOfRange(i64),
    #[error("page must be at most {max}, got {0}", max = PageRequest::MAX_PAGE)]
    PageTooLarge(i64),
}

impl PageRequest {
    pub const DEFAULT_SIZE: i64 = 20;
    /// Bounds the work and the response size of one listing call.
    pub const MAX_SIZE: i64 = 100;
    /// The largest page number. The offset goes to SQL as a 64-bit integer, and this bound
    /// keeps it there for every size up to `MAX_SIZE`. One fixed bound rather than one that
    /// depends on the size, so that the API can declare it (the OpenAPI document's
    /// `maximum`) and a page the document allows is never refused.
    pub const MAX_PAGE: i64 = i64::MAX / Self::MAX_SIZE;

    pub fn new(page: i64, size: i64) -> Result<Self, PageRequestError> {
        if page < 0 {
            return Err(PageRequestError::NegativePage(page));
        }
        if !(1..=Self::MAX_SIZE).contains(&size) {
            return Err(PageRequestError::SizeOutOfRange(size));
        }
        if page > Self::MAX_PAGE {
            return Err(PageRequestError::PageTooLarge(page));
        }
        Ok(Self { page, size })
    }

    pub fn page(self) -> i64 {
        self.page
    }

    pub fn size(self) -> i64 {
        self.size
    }

    pub fn offset(self) -> i64 {
        // `new` bounds page by MAX_PAGE and size by MAX_SIZE, so the product fits.
        self.page * self.size
    }
}

impl Default for PageRequest {
    fn default() -> Self {
        Self {
            page: 0,
            size: Self::DEFAULT_SIZE,
        }
    }
}

/// One page of a listing and the size of the whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub request: PageRequest,
    pub total: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    #[test]
    fn page_request_bounds() {
        assert!(PageRequest::new(0, 1).is_ok());
        assert!(PageRequest::new(5, 100).is_ok());
        assert_eq!(
            PageRequest::new(-1, 20),
            Err(PageRequestError::NegativePage(-1))
        );
        assert_eq!(
            PageRequest::new(0, 0),
            Err(PageRequestError::SizeOutOfRange(0))
        );
        assert_eq!(
            PageRequest::new(0, 101),
            Err(PageRequestError::SizeOutOfRange(101))
        );
        assert_eq!(
            PageRequest::new(i64::MAX, 2),
            Err(PageRequestError::PageTooLarge(i64::MAX))
        );
        // The bound does not depend on the size: the last page is the same for every size.
        let last = PageRequest::MAX_PAGE;
        assert!(PageRequest::new(last, 100).is_ok());
        assert_eq!(
            PageRequest::new(last + 1, 1),
            Err(PageRequestError::PageTooLarge(last + 1))
        );
        assert_eq!(PageRequest::new(3, 20).map(PageRequest::offset), Ok(60));
    }

    #[test]
    fn an_expired_hold_reads_as_available() {
        let now = Utc::now();
        let past = Some(now - TimeDelta::seconds(1));
        let future = Some(now + TimeDelta::seconds(60));
        assert_eq!(SeatStatus::Held.effective(past, now), SeatStatus::Available);
        assert_eq!(SeatStatus::Held.effective(future, now), SeatStatus::Held);
        assert_eq!(SeatStatus::Sold.effective(past, now), SeatStatus::Sold);
    }

    #[test]
    fn booking_window_is_half_open() {
        let opens = Utc::now();
        let schedule = Schedule {
            id: ScheduleId::new(1).expect("positive"),
            concert_id: ConcertId::new(1).expect("positive"),
            starts_at: opens + TimeDelta::days(2),
            booking_opens_at: opens,
            booking_closes_at: opens + TimeDelta::days(1),
        };
        assert!(schedule.is_open_for_booking(opens));
        assert!(!schedule.is_open_for_booking(opens - TimeDelta::milliseconds(1)));
        assert!(!schedule.is_open_for_booking(opens + TimeDelta::days(1)));
    }

    #[test]
    fn seat_filter_parses_case_insensitively() {
        assert_eq!(
            SeatFilter::parse("Available"),
            Some(SeatFilter::Only(SeatStatus::Available))
        );
        assert_eq!(SeatFilter::parse("all"), Some(SeatFilter::All));
        assert_eq!(SeatFilter::parse("free"), None);
        for filter in [
            SeatFilter::All,
            SeatFilter::Only(SeatStatus::Available),
            SeatFilter::Only(SeatStatus::Held),
            SeatFilter::Only(SeatStatus::Sold),
        ] {
            assert_eq!(SeatFilter::parse(filter.name()), Some(filter));
        }
    }
}
