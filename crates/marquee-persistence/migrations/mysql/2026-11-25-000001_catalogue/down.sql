DROP TABLE seats;
DROP TABLE schedules;
DROP TABLE concerts;
