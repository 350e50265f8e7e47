DROP TABLE queue_gates;
DROP TABLE queue_entries;
