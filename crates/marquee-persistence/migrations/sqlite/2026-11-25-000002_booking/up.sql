-- Bookings. The seat row is the arbiter of who holds a seat (a conditional UPDATE decides);
-- a reservation records each hold and its fate.
CREATE TABLE wallets (
    user_id BIGINT PRIMARY KEY CHECK (user_id > 0),
    balance BIGINT NOT NULL DEFAULT 0 CHECK (balance >= 0)
);

CREATE TABLE reservations (
    id          INTEGER PRIMARY KEY,
    user_id     BIGINT NOT NULL CHECK (user_id > 0),
    seat_id     BIGINT NOT NULL REFERENCES seats (id),
    schedule_id BIGINT NOT NULL REFERENCES schedules (id),
    status      TEXT NOT NULL CHECK (status IN ('HELD', 'CONFIRMED', 'CANCELLED', 'EXPIRED')),
    price       BIGINT NOT NULL CHECK (price >= 0),
    expires_at  TIMESTAMP NOT NULL,
    created_at  TIMESTAMP NOT NULL
);
CREATE INDEX reservations_by_user ON reservations (user_id, id);
CREATE INDEX reservations_held ON reservations (expires_at) WHERE status = 'HELD';

-- UNIQUE (reservation_id): a reservation is paid at most once, whatever the retries.
CREATE TABLE payments (
    id             INTEGER PRIMARY KEY,
    reservation_id BIGINT NOT NULL UNIQUE REFERENCES reservations (id),
    user_id        BIGINT NOT NULL,
    amount         BIGINT NOT NULL CHECK (amount >= 0),
    paid_at        TIMESTAMP NOT NULL
);

-- One row per (user, Idempotency-Key): the first request claims it inside its transaction,
-- and stores its answer there for retries.
CREATE TABLE idempotency_keys (
    user_id    BIGINT NOT NULL,
    idem_key   TEXT NOT NULL,
    request    TEXT NOT NULL,
    response   TEXT,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (user_id, idem_key)
);

CREATE INDEX seats_held ON seats (held_until) WHERE status = 'HELD';
