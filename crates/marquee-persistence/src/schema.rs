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

diesel::table! {
    wallets (user_id) {
        user_id -> BigInt,
        balance -> BigInt,
    }
}

diesel::table! {
    reservations (id) {
        id -> BigInt,
        user_id -> BigInt,
        seat_id -> BigInt,
        schedule_id -> BigInt,
        status -> Text,
        price -> BigInt,
        expires_at -> Timestamp,
        created_at -> Timestamp,
    }
}

diesel::table! {
    payments (id) {
        id -> BigInt,
        reservation_id -> BigInt,
        user_id -> BigInt,
        amount -> BigInt,
        paid_at -> Timestamp,
    }
}

diesel::table! {
    idempotency_keys (user_id, idem_key) {
        user_id -> BigInt,
        idem_key -> Text,
        request -> Text,
        created_at -> Timestamp,
        response_status -> Nullable<Integer>,
        response_body -> Nullable<Text>,
    }
}

diesel::table! {
    queue_entries (seq) {
        seq -> BigInt,
        concert_id -> BigInt,
        user_id -> BigInt,
        status -> Text,
        joined_at -> Timestamp,
        admitted_at -> Nullable<Timestamp>,
        expires_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    queue_gates (concert_id) {
        concert_id -> BigInt,
        window_start -> Timestamp,
        admitted -> Integer,
    }
}

diesel::joinable!(reservations -> seats (seat_id));
diesel::joinable!(queue_entries -> concerts (concert_id));
diesel::joinable!(queue_gates -> concerts (concert_id));
diesel::joinable!(payments -> reservations (reservation_id));
diesel::allow_tables_to_appear_in_same_query!(
    concerts,
    schedules,
    seats,
    wallets,
    reservations,
    payments,
    idempotency_keys,
    queue_entries,
    queue_gates
);
