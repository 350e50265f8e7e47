//! The status columns as typed values: [`SeatState`] (`seats.status`), [`ReservationState`]
//! (`reservations.status`) and [`QueueEntryState`] (`queue_entries.status`).
//!
//! Queries compare and set these, never string literals, so a misspelt status is a compile
//! error instead of a statement that silently matches no row. Each is stored as the text the
//! migrations' `CHECK` constraints allow; that text must never change, since rows written by
//! earlier releases are read with it. Each converts to and from the domain's status, whose
//! names are the API's and free to change apart from the stored ones.
//!
//! The `ToSql`/`FromSql` impls are written once for every backend whose `str` and `String`
//! map to `Text`: PostgreSQL, SQLite and the [`DbConnection`](crate::DbConnection)'s
//! multi-backend, which hands the value on to the backend of the connection. A stored value
//! that none of the variants names is read as a `DeserializationError`, the way
//! `corrupt_row` reports a row that breaks an invariant (a failed query, 500), never a panic.

use diesel::backend::Backend;
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::Text;
use marquee_domain::{QueueStatus, ReservationStatus, SeatStatus};

/// A seat's stored status. A `Held` seat whose `held_until` has passed is free all the same
/// (see [`SeatStatus::effective`]): queries check the time as well.
#[derive(Debug, Clone, Copy, PartialEq, Eq, AsExpression, FromSqlRow)]
#[diesel(sql_type = Text)]
pub enum SeatState {
    Available,
    Held,
    Sold,
}

/// A reservation's stored status. A `Held` reservation whose `expires_at` has passed reads
/// as expired before the sweep rewrites it (see `Reservation::effective_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, AsExpression, FromSqlRow)]
#[diesel(sql_type = Text)]
pub enum ReservationState {
    Held,
    Confirmed,
    Cancelled,
    Expired,
}

/// A waiting-room entry's stored status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, AsExpression, FromSqlRow)]
#[diesel(sql_type = Text)]
pub enum QueueEntryState {
    Waiting,
    Active,
}

/// The stored text of each variant of `$state`, its conversions to and from the domain's
/// `$status` (whose variants have the same names), and its `Text` serialisation.
macro_rules! stored_as_text {
    ($state:ident <-> $status:ident, $what:literal { $($variant:ident = $stored:literal),+ $(,)? }) => {
        impl $state {
            /// Every variant, for tests that must cover them all.
            #[cfg(test)]
            pub(crate) const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The text stored in the column.
            pub fn stored(self) -> &'static str {
                match self {
                    $(Self::$variant => $stored,)+
                }
            }

            fn from_stored(text: &str) -> Option<Self> {
                match text {
                    $($stored => Some(Self::$variant),)+
                    _ => None,
                }
            }
        }

        impl From<$state> for $status {
            fn from(state: $state) -> Self {
                match state {
                    $($state::$variant => Self::$variant,)+
                }
            }
        }

        impl From<$status> for $state {
            fn from(status: $status) -> Self {
                match status {
                    $($status::$variant => Self::$variant,)+
                }
            }
        }

        impl<DB> ToSql<Text, DB> for $state
        where
            DB: Backend,
            str: ToSql<Text, DB>,
        {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, DB>) -> serialize::Result {
                self.stored().to_sql(out)
            }
        }

        impl<DB> FromSql<Text, DB> for $state
        where
            DB: Backend,
            String: FromSql<Text, DB>,
        {
            fn from_sql(bytes: DB::RawValue<'_>) -> deserialize::Result<Self> {
                let text = String::from_sql(bytes)?;
                Self::from_stored(&text)
                    .ok_or_else(|| format!(concat!("unknown ", $what, " {:?}"), text).into())
            }
        }
    };
}

stored_as_text!(SeatState <-> SeatStatus, "seat status" {
    Available = "AVAILABLE",
    Held = "HELD",
    Sold = "SOLD",
});

stored_as_text!(ReservationState <-> ReservationStatus, "reservation status" {
    Held = "HELD",
    Confirmed = "CONFIRMED",
    Cancelled = "CANCELLED",
    Expired = "EXPIRED",
});

stored_as_text!(QueueEntryState <-> QueueStatus, "queue entry status" {
    Waiting = "WAITING",
    Active = "ACTIVE",
});

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]

    use diesel::prelude::*;
    use diesel::sql_types::Text;

    use marquee_domain::RepositoryError;

    use super::*;
    use crate::connection::DbConnection;
    use crate::error::PersistenceError;

    /// The text each variant is stored as, written out here so that a change to it fails
    /// this test: the migrations' `CHECK` constraints and every stored row depend on it.
    const SEATS: [(SeatState, &str); 3] = [
        (SeatState::Available, "AVAILABLE"),
        (SeatState::Held, "HELD"),
        (SeatState::Sold, "SOLD"),
    ];
    const RESERVATIONS: [(ReservationState, &str); 4] = [
        (ReservationState::Held, "HELD"),
        (ReservationState::Confirmed, "CONFIRMED"),
        (ReservationState::Cancelled, "CANCELLED"),
        (ReservationState::Expired, "EXPIRED"),
    ];
    const QUEUE_ENTRIES: [(QueueEntryState, &str); 2] = [
        (QueueEntryState::Waiting, "WAITING"),
        (QueueEntryState::Active, "ACTIVE"),
    ];

    /// Every variant of `$state`, bound as a parameter on `$conn`, reads back as itself and
    /// as its stored text from `$table`; that text reads back as the variant; the domain's
    /// status converts back to it; and a text no variant names is a corrupt row: a failed
    /// query whose reason names the text.
    macro_rules! assert_round_trips {
        ($conn:expr, $state:ident <-> $status:ident, $table:expr, $what:literal) => {{
            let listed: Vec<$state> = $table.iter().map(|(state, _)| *state).collect();
            assert_eq!(
                $state::ALL,
                listed.as_slice(),
                "the table lists every variant"
            );
            for (state, text) in $table {
                let back: $state = diesel::select(state.into_sql::<Text>())
                    .get_result($conn)
                    .expect("select a bound state");
                assert_eq!(back, state);
                let stored: String = diesel::select(state.into_sql::<Text>())
                    .get_result($conn)
                    .expect("select a bound state as text");
                assert_eq!(stored, text, "{state:?} is stored as {text:?}");
                let read: $state = diesel::select(text.into_sql::<Text>())
                    .get_result($conn)
                    .expect("read a stored text");
                assert_eq!(read, state);
                assert_eq!($state::from($status::from(state)), state);
            }
            let error = diesel::select("BOGUS".into_sql::<Text>())
                .get_result::<$state>($conn)
                .expect_err("an unknown status is refused");
            assert!(
                matches!(error, diesel::result::Error::DeserializationError(_)),
                "{error:?}"
            );
            match RepositoryError::from(PersistenceError::Query(error)) {
                RepositoryError::Query { reason } => assert!(
                    reason.contains(concat!("unknown ", $what, " \"BOGUS\"")),
                    "{reason}"
                ),
                other => panic!("a corrupt status is a failed query, not {other:?}"),
            }
        }};
    }

    fn assert_every_state_round_trips(conn: &mut DbConnection) {
        assert_round_trips!(conn, SeatState <-> SeatStatus, SEATS, "seat status");
        assert_round_trips!(
            conn,
            ReservationState <-> ReservationStatus,
            RESERVATIONS,
            "reservation status"
        );
        assert_round_trips!(
            conn,
            QueueEntryState <-> QueueStatus,
            QUEUE_ENTRIES,
            "queue entry status"
        );
    }

    #[test]
    fn every_state_round_trips_on_sqlite() {
        let conn = diesel::SqliteConnection::establish(":memory:").expect("open SQLite");
        assert_every_state_round_trips(&mut DbConnection::Sqlite(conn));
    }

    // MariaDB is not here: diesel cannot read back a bare bound value (`SELECT ?`), whose
    // column MariaDB types as NULL. The states go through its columns in every persistence
    // and API test on MariaDB instead.
    mod postgres {
        use crate::test_support::POSTGRES_URL_VAR;

        #[test]
        #[ignore = "needs PostgreSQL: set MARQUEE_TEST_DATABASE_URL"]
        fn every_state_round_trips() {
            let url = match std::env::var(POSTGRES_URL_VAR) {
                Ok(url) if !url.is_empty() => url,
                _ => panic!("this test needs PostgreSQL: set {POSTGRES_URL_VAR}"),
            };
            let conn = <diesel::PgConnection as diesel::Connection>::establish(&url)
                .unwrap_or_else(|error| panic!("connect to {POSTGRES_URL_VAR}: {error}"));
            super::assert_every_state_round_trips(&mut super::DbConnection::Postgres(conn));
        }
    }
}
