-- Rate limits the fleet counts together (`taxbridge_domain::limits`). A single SQLite node
-- counts in memory and never writes here; the table exists so the store behaves the same on
-- both databases (the contract suite runs it on each).
CREATE TABLE rate_limit_cells (
    key TEXT PRIMARY KEY,
    tat INTEGER NOT NULL,
    allowed INTEGER NOT NULL DEFAULT 1
) WITHOUT ROWID;
