DROP INDEX seats_held;
DROP TABLE idempotency_keys;
DROP TABLE payments;
DROP TABLE reservations;
DROP TABLE wallets;
