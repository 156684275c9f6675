-- The audit log (crates/domain/src/audit.rs). Events form one hash chain per workspace and one
-- (`global`) for the rest; `audit_heads` holds each chain's newest link, locked while an event
-- is appended so that writers on many nodes form one chain, and the checkpoint a retention
-- sweep leaves (`base_seq`, `base_hash`: the last event it removed).
CREATE TABLE audit_heads (
    chain TEXT PRIMARY KEY,
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL,
    base_seq BIGINT NOT NULL,
    base_hash TEXT NOT NULL
);

-- `body` is the event's canonical JSON, stored verbatim: the hash covers it, and the other
-- columns repeat what lists filter and sort on (`audit verify` checks they agree).
CREATE TABLE audit_events (
    id TEXT PRIMARY KEY,
    chain TEXT NOT NULL,
    seq BIGINT NOT NULL,
    occurred_at BIGINT NOT NULL,
    action TEXT NOT NULL,
    actor_id TEXT NOT NULL,
    body TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    UNIQUE (chain, seq)
);
-- The export's walk and the retention sweep. Filters by actor read within a chain (by seq):
-- every index here is one more write per event.
CREATE INDEX audit_events_by_time ON audit_events (occurred_at, id);

-- Each event's targets, its acting account and its API key: for `filters.targetIds`, an
-- account's own events and a key's. The sweep removes a removed event's rows by the ids its
-- body names, so no second index is kept; without a rowid, a row is one B-tree entry.
CREATE TABLE audit_targets (
    target_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (target_id, event_id)
) WITHOUT ROWID;
