DROP TABLE hold_locks;
DROP INDEX seats_held ON seats;
DROP TABLE idempotency_keys;
DROP TABLE payments;
DROP TABLE reservations;
DROP TABLE wallets;
