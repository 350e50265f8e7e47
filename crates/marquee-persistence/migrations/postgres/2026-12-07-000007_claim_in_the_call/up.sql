-- An Idempotency-Key's claim in the same round trip as the work it guards. On PostgreSQL a
-- payment ran BEGIN, the key's claim, one call of marquee_pay, the recorded answer and COMMIT,
-- and a charge the same with its one upsert: five round trips each. These functions claim the
-- key and, only if the claim is new, do the work, in one call: four round trips. A key that
-- is claimed already (a retry, or a request racing one with the same key) does nothing here:
-- the caller then reads the recorded answer, or refuses a key reused for another request, as
-- before.
--
-- The claim is the one the portable code makes (INSERT ... ON CONFLICT DO NOTHING): a
-- concurrent claim of the same key waits for the first one to commit or roll back, then finds
-- its row (or, after a rollback, takes the key). Both functions run inside the caller's
-- transaction, which records the answer before it commits.

CREATE FUNCTION marquee_claim(
    p_user       BIGINT,
    p_key        TEXT,
    p_request    TEXT,
    p_created_at TIMESTAMP
) RETURNS BOOLEAN
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    INSERT INTO idempotency_keys (user_id, idem_key, request, created_at)
        VALUES (p_user, p_key, p_request, p_created_at)
        ON CONFLICT DO NOTHING;
    RETURN FOUND;
END
$$;

-- The claim, then marquee_pay's row (see its migration), or `claimed` false and nothing else.
CREATE FUNCTION marquee_claim_and_pay(
    p_user        BIGINT,
    p_key         TEXT,
    p_request     TEXT,
    p_created_at  TIMESTAMP,
    p_reservation BIGINT,
    p_called_at   TIMESTAMP
) RETURNS TABLE (
    claimed     BOOLEAN,
    outcome     TEXT,
    payment_id  BIGINT,
    seat_id     BIGINT,
    schedule_id BIGINT,
    concert_id  BIGINT,
    amount      BIGINT,
    balance     BIGINT
)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
    IF NOT marquee_claim(p_user, p_key, p_request, p_created_at) THEN
        RETURN QUERY SELECT FALSE, NULL::TEXT, NULL::BIGINT, NULL::BIGINT, NULL::BIGINT,
            NULL::BIGINT, NULL::BIGINT, NULL::BIGINT;
        RETURN;
    END IF;
    RETURN QUERY SELECT TRUE, p.outcome, p.payment_id, p.seat_id, p.schedule_id, p.concert_id,
            p.amount, p.balance
        FROM marquee_pay(p_user, p_reservation, p_called_at) p;
END
$$;

-- The claim, then the charge: the wallet created with the amount, or credited with it, only
-- while the balance stays within p_max_balance. `balance` is the new balance, or NULL when
-- the limit refused the charge and nothing was written; `claimed` false and nothing else when
-- the key was claimed already.
CREATE FUNCTION marquee_claim_and_credit(
    p_user        BIGINT,
    p_key         TEXT,
    p_request     TEXT,
    p_created_at  TIMESTAMP,
    p_amount      BIGINT,
    p_max_balance BIGINT
) RETURNS TABLE (
    claimed BOOLEAN,
    balance BIGINT
)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    v_balance BIGINT;
BEGIN
    IF NOT marquee_claim(p_user, p_key, p_request, p_created_at) THEN
        RETURN QUERY SELECT FALSE, NULL::BIGINT;
        RETURN;
    END IF;
    INSERT INTO wallets AS w (user_id, balance)
        SELECT p_user, p_amount WHERE p_amount <= p_max_balance
        ON CONFLICT (user_id) DO UPDATE SET balance = w.balance + EXCLUDED.balance
            WHERE w.balance <= p_max_balance - EXCLUDED.balance
        RETURNING w.balance INTO v_balance;
    RETURN QUERY SELECT TRUE, v_balance;
END
$$;
