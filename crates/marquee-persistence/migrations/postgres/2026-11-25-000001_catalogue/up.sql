-- The catalogue. All timestamps are UTC, stored without a zone (see ARCHITECTURE.md).
CREATE TABLE concerts (
    id          BIGSERIAL PRIMARY KEY,
    title       TEXT NOT NULL,
    artist      TEXT NOT NULL,
    venue       TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT ''
);

CREATE TABLE schedules (
    id                BIGSERIAL PRIMARY KEY,
    concert_id        BIGINT NOT NULL REFERENCES concerts (id) ON DELETE CASCADE,
    starts_at         TIMESTAMP NOT NULL,
    booking_opens_at  TIMESTAMP NOT NULL,
    booking_closes_at TIMESTAMP NOT NULL,
    CONSTRAINT booking_window_ordered
        CHECK (booking_opens_at < booking_closes_at AND booking_closes_at <= starts_at)
);
CREATE INDEX schedules_by_concert ON schedules (concert_id, starts_at);

CREATE TABLE seats (
    id          BIGSERIAL PRIMARY KEY,
    schedule_id BIGINT NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
    number      INTEGER NOT NULL CHECK (number > 0),
    price       BIGINT NOT NULL CHECK (price >= 0),
    status      TEXT NOT NULL DEFAULT 'AVAILABLE' CHECK (status IN ('AVAILABLE', 'HELD', 'SOLD')),
    -- Who holds the seat and until when; both set exactly when status = 'HELD'.
    held_by     BIGINT,
    held_until  TIMESTAMP,
    CONSTRAINT seat_number_unique UNIQUE (schedule_id, number),
    CONSTRAINT hold_fields_match_status
        CHECK ((status = 'HELD') = (held_by IS NOT NULL AND held_until IS NOT NULL))
);
