DROP TABLE queue_gates;
DROP INDEX queue_entries_active;
DROP INDEX queue_entries_waiting;
DROP TABLE queue_entries;
