-- The waiting room's durable truth: one row per user and concert, ordered by a join sequence
-- the database hands out, so that order survives any restart of the fast view and ties
-- cannot happen. All timestamps are UTC, as elsewhere.
-- BIGSERIAL: the sequence hands out join order; a rolled-back join leaves a gap, never a tie.
CREATE TABLE queue_entries (
    seq         BIGSERIAL PRIMARY KEY,
    concert_id  BIGINT NOT NULL REFERENCES concerts (id),
    user_id     BIGINT NOT NULL CHECK (user_id > 0),
    status      TEXT NOT NULL CHECK (status IN ('WAITING', 'ACTIVE')),
    joined_at   TIMESTAMP NOT NULL,
    -- When the admission was given and when it runs out; both set exactly when ACTIVE.
    admitted_at TIMESTAMP,
    expires_at  TIMESTAMP,
    -- One place per user per concert, whatever the retries.
    CONSTRAINT queue_entry_per_user UNIQUE (concert_id, user_id),
    CONSTRAINT admission_fields_match_status CHECK (
        (status = 'WAITING' AND admitted_at IS NULL AND expires_at IS NULL)
        OR (status = 'ACTIVE' AND admitted_at IS NOT NULL AND expires_at IS NOT NULL)
    )
);
-- The line: who waits ahead of whom, and who is next.
CREATE INDEX queue_entries_waiting ON queue_entries (concert_id, seq) WHERE status = 'WAITING';
-- The admissions: how many are live, and which ran out.
CREATE INDEX queue_entries_active ON queue_entries (concert_id, expires_at) WHERE status = 'ACTIVE';

-- One row per concert: the fleet-wide rate limiter (admissions in the fixed one-second window
-- starting at window_start), and the row every admission decision of the concert locks first.
CREATE TABLE queue_gates (
    concert_id   BIGINT PRIMARY KEY REFERENCES concerts (id),
    window_start TIMESTAMP NOT NULL,
    admitted     INTEGER NOT NULL CHECK (admitted >= 0)
);
