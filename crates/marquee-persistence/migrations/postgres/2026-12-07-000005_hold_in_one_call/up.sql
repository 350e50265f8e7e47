-- A hold in one round trip. The portable hold (DieselBooking::hold_seat on SQLite and
-- MariaDB) makes eight round trips to the database: BEGIN, the user's lock, the seat's lock,
-- the schedule, the user's live holds, the seat's UPDATE, the reservation's INSERT, COMMIT.
-- On PostgreSQL the same steps, in the same order and with the same refusals, run here, in
-- one statement that is its own transaction. Every refusal comes before the first write, so
-- a refused hold writes nothing. The persistence tests run every hold rule against this
-- function and against the portable code alike: the two must not drift apart.
--
-- The decision time is the caller's clock (p_called_at, taken just before the call) moved on
-- by the time this call has spent in the database, lock waits included, and truncated to
-- milliseconds as the caller's decision_time() is: decisions are taken after the locks, on
-- the application's clock, as everywhere else.
--
-- Each statement of a PL/pgSQL function takes its own snapshot under READ COMMITTED, so the
-- live holds are counted after the user's lock is granted: the holds that waited for it
-- before this one have committed and are counted.
CREATE FUNCTION marquee_hold(
    p_user               BIGINT,
    p_seat               BIGINT,
    p_called_at          TIMESTAMP,
    p_hold_for_ms        BIGINT,
    p_max_per_schedule   BIGINT,
    p_max_per_user       BIGINT,
    p_require_admission  BOOLEAN,
    p_lock_class         INTEGER,
    p_lock_key           INTEGER
) RETURNS TABLE (
    outcome        TEXT,      -- HELD, SEAT_NOT_FOUND, BOOKING_CLOSED, NOT_ADMITTED,
                              -- HOLD_LIMIT, USER_HOLD_LIMIT or SEAT_TAKEN
    reservation_id BIGINT,    -- HELD
    schedule_id    BIGINT,    -- HELD
    concert_id     BIGINT,    -- HELD, NOT_ADMITTED
    price          BIGINT,    -- HELD
    expires_at     TIMESTAMP, -- HELD
    opens_at       TIMESTAMP, -- BOOKING_CLOSED
    closes_at      TIMESTAMP  -- BOOKING_CLOSED
)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    v_schedule    BIGINT;
    v_price       BIGINT;
    v_concert     BIGINT;
    v_opens       TIMESTAMP;
    v_closes      TIMESTAMP;
    v_now         TIMESTAMP;
    v_until       TIMESTAMP;
    v_on_schedule BIGINT;
    v_all         BIGINT;
    v_id          BIGINT;
BEGIN
    -- The user's holds one at a time, then the seat: the order of the portable hold.
    PERFORM pg_advisory_xact_lock(p_lock_class, p_lock_key);
    SELECT s.schedule_id, s.price INTO v_schedule, v_price
        FROM seats s WHERE s.id = p_seat FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'SEAT_NOT_FOUND'::TEXT, NULL::BIGINT, NULL::BIGINT, NULL::BIGINT,
            NULL::BIGINT, NULL::TIMESTAMP, NULL::TIMESTAMP, NULL::TIMESTAMP;
        RETURN;
    END IF;
    v_now := date_trunc('milliseconds', p_called_at + (clock_timestamp() - statement_timestamp()));
    v_until := v_now + p_hold_for_ms * INTERVAL '1 millisecond';
    SELECT sc.concert_id, sc.booking_opens_at, sc.booking_closes_at
        INTO v_concert, v_opens, v_closes
        FROM schedules sc WHERE sc.id = v_schedule;
    IF NOT (v_opens <= v_now AND v_now < v_closes) THEN
        RETURN QUERY SELECT 'BOOKING_CLOSED'::TEXT, NULL::BIGINT, NULL::BIGINT, NULL::BIGINT,
            NULL::BIGINT, NULL::TIMESTAMP, v_opens, v_closes;
        RETURN;
    END IF;
    -- The waiting room's gate, at the same time as the window.
    IF p_require_admission AND NOT EXISTS (
        SELECT 1 FROM queue_entries q
        WHERE q.concert_id = v_concert AND q.user_id = p_user
          AND q.status = 'ACTIVE' AND q.expires_at > v_now
    ) THEN
        RETURN QUERY SELECT 'NOT_ADMITTED'::TEXT, NULL::BIGINT, NULL::BIGINT, v_concert,
            NULL::BIGINT, NULL::TIMESTAMP, NULL::TIMESTAMP, NULL::TIMESTAMP;
        RETURN;
    END IF;
    SELECT count(*) FILTER (WHERE s.schedule_id = v_schedule), count(*)
        INTO v_on_schedule, v_all
        FROM seats s
        WHERE s.held_by = p_user AND s.status = 'HELD' AND s.held_until > v_now;
    IF v_on_schedule >= p_max_per_schedule THEN
        RETURN QUERY SELECT 'HOLD_LIMIT'::TEXT, NULL::BIGINT, NULL::BIGINT, NULL::BIGINT,
            NULL::BIGINT, NULL::TIMESTAMP, NULL::TIMESTAMP, NULL::TIMESTAMP;
        RETURN;
    END IF;
    IF v_all >= p_max_per_user THEN
        RETURN QUERY SELECT 'USER_HOLD_LIMIT'::TEXT, NULL::BIGINT, NULL::BIGINT, NULL::BIGINT,
            NULL::BIGINT, NULL::TIMESTAMP, NULL::TIMESTAMP, NULL::TIMESTAMP;
        RETURN;
    END IF;
    -- The arbiter: only one transaction can move the seat out of "free".
    UPDATE seats SET status = 'HELD', held_by = p_user, held_until = v_until
        WHERE id = p_seat
          AND (status = 'AVAILABLE' OR (status = 'HELD' AND held_until <= v_now));
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'SEAT_TAKEN'::TEXT, NULL::BIGINT, NULL::BIGINT, NULL::BIGINT,
            NULL::BIGINT, NULL::TIMESTAMP, NULL::TIMESTAMP, NULL::TIMESTAMP;
        RETURN;
    END IF;
    INSERT INTO reservations (user_id, seat_id, schedule_id, status, price, expires_at, created_at)
        VALUES (p_user, p_seat, v_schedule, 'HELD', v_price, v_until, v_now)
        RETURNING id INTO v_id;
    RETURN QUERY SELECT 'HELD'::TEXT, v_id, v_schedule, v_concert, v_price, v_until,
        NULL::TIMESTAMP, NULL::TIMESTAMP;
END
$$;
