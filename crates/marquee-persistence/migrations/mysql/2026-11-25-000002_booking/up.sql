-- Bookings. The seat row is the arbiter of who holds a seat (a conditional UPDATE decides);
-- a reservation records each hold and its fate. MySQL has no partial indexes: the indexes
-- PostgreSQL keeps for HELD rows only cover every row here, with the status first.
CREATE TABLE wallets (
    user_id BIGINT NOT NULL PRIMARY KEY CHECK (user_id > 0),
    balance BIGINT NOT NULL DEFAULT 0 CHECK (balance >= 0)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE reservations (
    id          BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    user_id     BIGINT NOT NULL CHECK (user_id > 0),
    seat_id     BIGINT NOT NULL,
    schedule_id BIGINT NOT NULL,
    status      VARCHAR(16) NOT NULL CHECK (status IN ('HELD', 'CONFIRMED', 'CANCELLED', 'EXPIRED')),
    price       BIGINT NOT NULL CHECK (price >= 0),
    expires_at  DATETIME(6) NOT NULL,
    created_at  DATETIME(6) NOT NULL,
    CONSTRAINT reservations_seat FOREIGN KEY (seat_id) REFERENCES seats (id),
    CONSTRAINT reservations_schedule FOREIGN KEY (schedule_id) REFERENCES schedules (id),
    INDEX reservations_by_user (user_id, id),
    INDEX reservations_held (status, expires_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- UNIQUE (reservation_id): a reservation is paid at most once, whatever the retries.
CREATE TABLE payments (
    id             BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    reservation_id BIGINT NOT NULL UNIQUE,
    user_id        BIGINT NOT NULL,
    amount         BIGINT NOT NULL CHECK (amount >= 0),
    paid_at        DATETIME(6) NOT NULL,
    CONSTRAINT payments_reservation FOREIGN KEY (reservation_id) REFERENCES reservations (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- One row per (user, Idempotency-Key): the first request claims it inside its transaction,
-- and stores its answer there for retries. A key is at most 255 characters (the API's bound).
CREATE TABLE idempotency_keys (
    user_id    BIGINT NOT NULL,
    idem_key   VARCHAR(255) NOT NULL,
    request    TEXT NOT NULL,
    response   TEXT,
    created_at DATETIME(6) NOT NULL,
    PRIMARY KEY (user_id, idem_key)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE INDEX seats_held ON seats (status, held_until);

-- One row per user who has held a seat: a hold locks its user's row (an upsert) for the rest
-- of its transaction, so that one user's concurrent holds are counted against the caps one at
-- a time. PostgreSQL does this with a transaction-scoped advisory lock; MariaDB's named locks
-- belong to the session and would outlive a rollback. Not in schema.rs: only the lock uses it.
CREATE TABLE hold_locks (
    user_id BIGINT NOT NULL PRIMARY KEY
) ENGINE = InnoDB;
