-- Provider connections: a workspace's link to one provider's platform. Secret inputs are
-- stored only sealed (credentials, AES-256-GCM, naming its key id); settings are the
-- non-secret inputs as a JSON object.
CREATE TABLE provider_connections (
    id               TEXT PRIMARY KEY,
    workspace_id     TEXT NOT NULL REFERENCES workspaces (id),
    provider_key     TEXT NOT NULL,
    category         TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'active', 'failed', 'disconnected')),
    display_name     TEXT,
    settings         TEXT NOT NULL,
    credentials      TEXT,
    status_detail    TEXT,
    last_verified_at BIGINT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
-- A workspace's first page in any order costs the same however many connections it has.
CREATE INDEX provider_connections_by_created ON provider_connections (workspace_id, created_at, id);
CREATE INDEX provider_connections_by_updated ON provider_connections (workspace_id, updated_at, id);
CREATE INDEX provider_connections_by_name ON provider_connections (workspace_id, display_name, id);
