-- The catalogue. All timestamps are UTC, stored as DATETIME(6) without a zone (see
-- ARCHITECTURE.md); MySQL's TIMESTAMP type would convert them with the session's time zone and
-- ends in 2038. InnoDB, so that foreign keys and row locks exist; utf8mb4 for every character.
-- Statuses are VARCHAR, not TEXT: MySQL indexes a TEXT column only by a prefix.
CREATE TABLE concerts (
    id          BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    title       TEXT NOT NULL,
    artist      TEXT NOT NULL,
    venue       TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT ''
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE schedules (
    id                BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    concert_id        BIGINT NOT NULL,
    starts_at         DATETIME(6) NOT NULL,
    booking_opens_at  DATETIME(6) NOT NULL,
    booking_closes_at DATETIME(6) NOT NULL,
    CONSTRAINT schedules_concert FOREIGN KEY (concert_id) REFERENCES concerts (id) ON DELETE CASCADE,
    CONSTRAINT booking_window_ordered
        CHECK (booking_opens_at < booking_closes_at AND booking_closes_at <= starts_at),
    INDEX schedules_by_concert (concert_id, starts_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE seats (
    id          BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    schedule_id BIGINT NOT NULL,
    number      INTEGER NOT NULL CHECK (number > 0),
    price       BIGINT NOT NULL CHECK (price >= 0),
    status      VARCHAR(16) NOT NULL DEFAULT 'AVAILABLE' CHECK (status IN ('AVAILABLE', 'HELD', 'SOLD')),
    -- Who holds the seat and until when; both set exactly when status = 'HELD'.
    held_by     BIGINT,
    held_until  DATETIME(6),
    CONSTRAINT seats_schedule FOREIGN KEY (schedule_id) REFERENCES schedules (id) ON DELETE CASCADE,
    CONSTRAINT seat_number_unique UNIQUE (schedule_id, number),
    CONSTRAINT hold_fields_match_status
        CHECK ((status = 'HELD') = (held_by IS NOT NULL AND held_until IS NOT NULL))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
