-- A payment's work in one round trip. The portable payment (DieselBooking::pay on SQLite and
-- MariaDB) reads the reservation, locks its seat, reads the reservation again, settles seat
-- and reservation, debits the wallet, ends the payer's admission and records the payment:
-- eight round trips, in a savepoint so that a refusal rolls its writes back. On PostgreSQL the
-- same steps and refusals run here, inside the caller's transaction (which claims the
-- Idempotency-Key before and records the answer after), with the debit first: every refusal
-- comes before the first write, so no savepoint is needed. The persistence tests run every
-- payment rule against this function and against the portable code alike.
--
-- Lock order: the seat, then the wallet, then the reservation. Cancel and the expiry sweep
-- take the seat, then the reservation; a charge takes the wallet alone: no cycle.
--
-- The decision time is taken as marquee_hold takes it (see its migration): the caller's
-- clock, moved on by the time spent in this statement, after the seat's lock.
CREATE FUNCTION marquee_pay(
    p_user        BIGINT,
    p_reservation BIGINT,
    p_called_at   TIMESTAMP
) RETURNS TABLE (
    outcome     TEXT,   -- PAID, RESERVATION_NOT_FOUND, ALREADY_PAID, HOLD_EXPIRED, CANCELLED
                        -- or INSUFFICIENT_BALANCE
    payment_id  BIGINT, -- PAID
    seat_id     BIGINT, -- PAID
    schedule_id BIGINT, -- PAID
    concert_id  BIGINT, -- PAID
    amount      BIGINT, -- PAID, INSUFFICIENT_BALANCE (the price)
    balance     BIGINT  -- INSUFFICIENT_BALANCE
)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    v_seat     BIGINT;
    v_status   TEXT;
    v_expires  TIMESTAMP;
    v_price    BIGINT;
    v_schedule BIGINT;
    v_concert  BIGINT;
    v_now      TIMESTAMP;
    v_balance  BIGINT;
    v_payment  BIGINT;
    v_settled  BIGINT;
BEGIN
    SELECT r.seat_id INTO v_seat
        FROM reservations r WHERE r.id = p_reservation AND r.user_id = p_user;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'RESERVATION_NOT_FOUND'::TEXT, NULL::BIGINT, NULL::BIGINT,
            NULL::BIGINT, NULL::BIGINT, NULL::BIGINT, NULL::BIGINT;
        RETURN;
    END IF;
    PERFORM 1 FROM seats s WHERE s.id = v_seat FOR UPDATE;
    -- Read again under the lock: what committed while this waited is now visible.
    SELECT r.status, r.expires_at, r.price, r.schedule_id, sc.concert_id
        INTO v_status, v_expires, v_price, v_schedule, v_concert
        FROM reservations r JOIN schedules sc ON sc.id = r.schedule_id
        WHERE r.id = p_reservation AND r.user_id = p_user;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'RESERVATION_NOT_FOUND'::TEXT, NULL::BIGINT, NULL::BIGINT,
            NULL::BIGINT, NULL::BIGINT, NULL::BIGINT, NULL::BIGINT;
        RETURN;
    END IF;
    v_now := date_trunc('milliseconds', p_called_at + (clock_timestamp() - statement_timestamp()));
    -- Reservation::effective_status: a hold whose time is up is expired.
    IF v_status = 'HELD' AND v_expires <= v_now THEN
        v_status := 'EXPIRED';
    END IF;
    IF v_status <> 'HELD' THEN
        RETURN QUERY SELECT CASE v_status
                WHEN 'CONFIRMED' THEN 'ALREADY_PAID'
                WHEN 'EXPIRED' THEN 'HOLD_EXPIRED'
                ELSE 'CANCELLED' END,
            NULL::BIGINT, NULL::BIGINT, NULL::BIGINT, NULL::BIGINT, NULL::BIGINT, NULL::BIGINT;
        RETURN;
    END IF;
    UPDATE wallets SET balance = balance - v_price
        WHERE user_id = p_user AND balance >= v_price;
    IF NOT FOUND THEN
        SELECT w.balance INTO v_balance FROM wallets w WHERE w.user_id = p_user;
        RETURN QUERY SELECT 'INSUFFICIENT_BALANCE'::TEXT, NULL::BIGINT, NULL::BIGINT,
            NULL::BIGINT, NULL::BIGINT, v_price, COALESCE(v_balance, 0);
        RETURN;
    END IF;
    -- The seat and the reservation were locked and read as a live hold: they cannot have
    -- changed since, so a miss is a broken invariant (an error), never a refusal.
    UPDATE seats SET status = 'SOLD', held_by = NULL, held_until = NULL
        WHERE id = v_seat AND status = 'HELD' AND held_by = p_user
          AND held_until = v_expires AND held_until > v_now;
    GET DIAGNOSTICS v_settled = ROW_COUNT;
    IF v_settled = 0 THEN
        RAISE EXCEPTION 'a locked live hold could not be settled (reservation %)', p_reservation;
    END IF;
    UPDATE reservations SET status = 'CONFIRMED' WHERE id = p_reservation AND status = 'HELD';
    GET DIAGNOSTICS v_settled = ROW_COUNT;
    IF v_settled = 0 THEN
        RAISE EXCEPTION 'a locked live hold could not be settled (reservation %)', p_reservation;
    END IF;
    -- A purchase ends the payer's admission to the concert, so that the slot goes to the
    -- next in line now rather than at expiry.
    DELETE FROM queue_entries
        WHERE concert_id = v_concert AND user_id = p_user AND status = 'ACTIVE';
    INSERT INTO payments (reservation_id, user_id, amount, paid_at)
        VALUES (p_reservation, p_user, v_price, v_now)
        RETURNING id INTO v_payment;
    RETURN QUERY SELECT 'PAID'::TEXT, v_payment, v_seat, v_schedule, v_concert, v_price,
        NULL::BIGINT;
END
$$;
