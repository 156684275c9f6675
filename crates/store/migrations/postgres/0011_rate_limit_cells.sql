-- Rate limits the fleet counts together (`taxbridge_domain::limits`): one row per key holding
-- the theoretical arrival time of its next event, in milliseconds, and whether the last event
-- counted was allowed. UNLOGGED: written on every request, and worth nothing after a crash
-- (an emptied table only means full quotas).
CREATE UNLOGGED TABLE rate_limit_cells (
    key TEXT PRIMARY KEY,
    tat BIGINT NOT NULL,
    allowed BIGINT NOT NULL DEFAULT 1
);
