-- The writes of a hold, as a pgbench transaction: the per-user advisory lock, the seat taken
-- by a conditional UPDATE, and the seat given back (so that every transaction finds it free).
-- Run it on a database of its own that `marquee seed` filled (it changes seats at random):
-- docs/performance.md, "Prepared writes", has the commands. `-M prepared` sends each
-- statement prepared once per connection, `-M extended` as an unnamed statement, parsed and
-- planned on every call: what diesel sends for an UPDATE unless told otherwise.
\set seat random(1, 24000)
\set user random(1, 1000000)
BEGIN;
SELECT pg_advisory_xact_lock(1, :user);
UPDATE seats SET status = 'HELD', held_by = :user, held_until = now() + interval '5 min'
  WHERE id = :seat AND (status = 'AVAILABLE' OR (status = 'HELD' AND held_until <= now()));
UPDATE seats SET status = 'AVAILABLE', held_by = NULL, held_until = NULL WHERE id = :seat;
COMMIT;
