DROP INDEX seats_held_by ON seats;
DROP INDEX idempotency_keys_by_age ON idempotency_keys;
ALTER TABLE idempotency_keys ADD COLUMN response TEXT;
-- The compact answers of successes; a recorded refusal has no compact form and is dropped.
UPDATE idempotency_keys
   SET response = JSON_VALUE(response_body, '$.balance')
 WHERE request LIKE 'charge:%' AND response_status = 200;
UPDATE idempotency_keys
   SET response = CONCAT(JSON_VALUE(response_body, '$.paymentId'), ':',
                         JSON_VALUE(response_body, '$.amount'))
 WHERE request LIKE 'pay:%' AND response_status = 200;
DELETE FROM idempotency_keys WHERE response IS NULL;
ALTER TABLE idempotency_keys DROP COLUMN response_body;
ALTER TABLE idempotency_keys DROP COLUMN response_status;
