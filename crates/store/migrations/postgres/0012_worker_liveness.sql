-- Each running worker renews its row every second or so; the tasks of a worker whose row
-- lapsed (a killed node) are handed back at once instead of after their leases.
CREATE TABLE worker_liveness (
    owner TEXT PRIMARY KEY,
    alive_until BIGINT NOT NULL
);
