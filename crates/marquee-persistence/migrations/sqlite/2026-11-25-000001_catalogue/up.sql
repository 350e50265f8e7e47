-- The catalogue. All timestamps are UTC, stored as ISO-8601 text (see ARCHITECTURE.md).
-- INTEGER PRIMARY KEY is SQLite's 64-bit rowid alias, the counterpart of BIGSERIAL.
CREATE TABLE concerts (
    id          INTEGER PRIMARY KEY,
    title       TEXT NOT NULL,
    artist      TEXT NOT NULL,
    venue       TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT ''
);

CREATE TABLE schedules (
    id                INTEGER PRIMARY KEY,
    concert_id        BIGINT NOT NULL REFERENCES concerts (id) ON DELETE CASCADE,
    starts_at         TIMESTAMP NOT NULL,
    booking_opens_at  TIMESTAMP NOT NULL,
    booking_closes_at TIMESTAMP NOT NULL,
    CONSTRAINT booking_window_ordered
        CHECK (booking_opens_at < booking_closes_at AND booking_closes_at <= starts_at)
);
CREATE INDEX schedules_by_concert ON schedules (concert_id, starts_at);

CREATE TABLE seats (
    id          INTEGER PRIMARY KEY,
    schedule_id BIGINT NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
    number      INTEGER NOT NULL CHECK (number > 0),
    price       BIGINT NOT NULL CHECK (price >= 0),
    status      TEXT NOT NULL DEFAULT 'AVAILABLE' CHECK (status IN ('AVAILABLE', 'HELD', 'SOLD')),
    held_by     BIGINT,
    held_until  TIMESTAMP,
    CONSTRAINT seat_number_unique UNIQUE (schedule_id, number),
    CONSTRAINT hold_fields_match_status
        CHECK ((status = 'HELD') = (held_by IS NOT NULL AND held_until IS NOT NULL))
);
