-- An idempotency key keeps the response its first request received (status and body), refusals
-- included, instead of a compact answer that had to be parsed back. Rows written before are
-- converted into the responses they stood for, so no retry of theirs is executed twice.
ALTER TABLE idempotency_keys ADD COLUMN response_status INTEGER;
ALTER TABLE idempotency_keys ADD COLUMN response_body TEXT;
-- charge: the answer was the new balance.
UPDATE idempotency_keys
   SET response_status = 200,
       response_body = CONCAT('{"userId":', user_id, ',"balance":', response, '}')
 WHERE request LIKE 'charge:%' AND response IS NOT NULL;
-- pay: the answer was "<payment id>:<amount>", the request "pay:<reservation id>".
UPDATE idempotency_keys
   SET response_status = 200,
       response_body = CONCAT('{"paymentId":', SUBSTRING_INDEX(response, ':', 1),
                              ',"reservationId":', SUBSTRING(request, 5),
                              ',"amount":', SUBSTRING_INDEX(response, ':', -1),
                              ',"status":"CONFIRMED"}')
 WHERE request LIKE 'pay:%' AND response IS NOT NULL;
ALTER TABLE idempotency_keys DROP COLUMN response;

-- The retention job deletes by age.
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
-- The per-user hold cap counts one user's live holds across every schedule.
CREATE INDEX seats_held_by ON seats (held_by, status);
