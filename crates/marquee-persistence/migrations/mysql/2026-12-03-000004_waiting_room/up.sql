-- The waiting room's durable truth: one row per user and concert, ordered by a join sequence
-- the database hands out, so that order survives any restart of the fast view and ties
-- cannot happen. All timestamps are UTC, as elsewhere.
-- AUTO_INCREMENT: InnoDB never hands a value out twice (MariaDB keeps the counter across
-- restarts), so a number the fast view still holds for a departed entry never names a new one.
CREATE TABLE queue_entries (
    seq         BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    concert_id  BIGINT NOT NULL,
    user_id     BIGINT NOT NULL CHECK (user_id > 0),
    status      VARCHAR(16) NOT NULL CHECK (status IN ('WAITING', 'ACTIVE')),
    joined_at   DATETIME(6) NOT NULL,
    -- When the admission was given and when it runs out; both set exactly when ACTIVE.
    admitted_at DATETIME(6),
    expires_at  DATETIME(6),
    CONSTRAINT queue_entries_concert FOREIGN KEY (concert_id) REFERENCES concerts (id),
    -- One place per user per concert, whatever the retries.
    CONSTRAINT queue_entry_per_user UNIQUE (concert_id, user_id),
    CONSTRAINT admission_fields_match_status CHECK (
        (status = 'WAITING' AND admitted_at IS NULL AND expires_at IS NULL)
        OR (status = 'ACTIVE' AND admitted_at IS NOT NULL AND expires_at IS NOT NULL)
    ),
    -- The line (who waits ahead of whom) and the admissions (how many are live, which ran
    -- out); without partial indexes, the status leads.
    INDEX queue_entries_waiting (concert_id, status, seq),
    INDEX queue_entries_active (concert_id, status, expires_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- One row per concert: the fleet-wide rate limiter (admissions in the fixed one-second window
-- starting at window_start), and the row every admission decision of the concert locks first.
CREATE TABLE queue_gates (
    concert_id   BIGINT NOT NULL PRIMARY KEY,
    window_start DATETIME(6) NOT NULL,
    admitted     INTEGER NOT NULL CHECK (admitted >= 0),
    CONSTRAINT queue_gates_concert FOREIGN KEY (concert_id) REFERENCES concerts (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
