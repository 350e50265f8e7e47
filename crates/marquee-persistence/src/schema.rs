//! The one schema both backends share. Each backend's migrations must produce tables that
//! match it; `tests/persistence` checks that by running every query on both.

diesel::table! {
    concerts (id) {
        id -> BigInt,
        title -> Text,
        artist -> Text,
        venue -> Text,
        description -> Text,
    }
}

diesel::table! {
    schedules (id) {
        id -> BigInt,
        concert_id -> BigInt,
        starts_at -> Timestamp,
        booking_opens_at -> Timestamp,
        booking_closes_at -> Timestamp,
    }
}

diesel::table! {
    seats (id) {
        id -> BigInt,
        schedule_id -> BigInt,
        number -> Integer,
        price -> BigInt,
        status -> Text,
        held_by -> Nullable<BigInt>,
        held_until -> Nullable<Timestamp>,
    }
}

diesel::joinable!(schedules -> concerts (concert_id));
diesel::joinable!(seats -> schedules (schedule_id));
diesel::allow_tables_to_appear_in_same_query!(concerts, schedules, seats);
