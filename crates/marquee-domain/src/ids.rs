//! Typed identifiers.
//!
//! Every entity is keyed by a positive 64-bit integer. Wrapping each in its own type means
//! a `ScheduleId` can never be passed where a `ConcertId` is expected, and parsing from text
//! happens once, at the edge, with one error that says what was wrong.

use std::fmt;
use std::str::FromStr;

/// Why a piece of text is not an identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("must be a positive integer, got {0:?}")]
    NotANumber(String),
    #[error("must be at most {max}, got {0:?}", max = i64::MAX)]
    TooLarge(String),
    #[error("must be a positive integer, got {0}")]
    NotPositive(i64),
}

macro_rules! entity_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(i64);

        impl $name {
            /// Wraps a raw value, rejecting zero and negatives: no row can have such an id,
            /// so a lookup for one is refused before it reaches a cache or the database.
            pub fn new(raw: i64) -> Result<Self, IdError> {
                if raw > 0 { Ok(Self(raw)) } else { Err(IdError::NotPositive(raw)) }
            }

            pub fn get(self) -> i64 {
                self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                parse_positive(text).map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

fn parse_positive(text: &str) -> Result<i64, IdError> {
    // Only plain ASCII digits: `i64::from_str` would also take a leading `+`, and a
    // canonical form keeps one id to one cache key.
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(IdError::NotANumber(text.to_owned()));
    }
    let value: i64 = text
        .parse()
        .map_err(|_| IdError::TooLarge(text.to_owned()))?;
    if value == 0 || text.starts_with('0') {
        // "007" would otherwise be the same row as "7" under a different cache key.
        return Err(IdError::NotANumber(text.to_owned()));
    }
    Ok(value)
}

entity_id!(
    /// A concert: a show by an artist that has one or more schedules.
    ConcertId
);
entity_id!(
    /// One performance of a concert at a date and time.
    ScheduleId
);
entity_id!(
    /// One seat of one schedule.
    SeatId
);
entity_id!(
    /// A hold on a seat, which a payment turns into a sale.
    ReservationId
);
entity_id!(
    /// A confirmed payment for one reservation.
    PaymentId
);
entity_id!(
    /// A user, as named by the `sub` claim of their token.
    UserId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_canonical_positive_integers() {
        assert_eq!("42".parse::<ConcertId>(), Ok(ConcertId(42)));
        assert_eq!(
            "9223372036854775807".parse::<SeatId>().map(SeatId::get),
            Ok(i64::MAX)
        );
    }

    #[test]
    fn rejects_everything_else_with_a_reason() {
        for bad in ["", "abc", "-1", "+1", "1.5", " 1", "1e3", "0x10", "007"] {
            assert!(
                matches!(bad.parse::<ConcertId>(), Err(IdError::NotANumber(_))),
                "{bad:?} should not parse"
            );
        }
        assert!(matches!(
            "9223372036854775808".parse::<ConcertId>(),
            Err(IdError::TooLarge(_))
        ));
        assert!(matches!(
            "0".parse::<ConcertId>(),
            Err(IdError::NotANumber(_))
        ));
        assert_eq!(ConcertId::new(0), Err(IdError::NotPositive(0)));
        assert_eq!(ConcertId::new(-5), Err(IdError::NotPositive(-5)));
    }
}
