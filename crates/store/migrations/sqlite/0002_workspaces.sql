-- Workspaces (one tax firm each) and their members.
CREATE TABLE workspaces (
    id               TEXT PRIMARY KEY,
    slug             TEXT NOT NULL UNIQUE,
    display_name     TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('active', 'suspended')),
    workspace_type   TEXT NOT NULL CHECK (workspace_type IN ('partner', 'customer')),
    firm_size        TEXT,
    metadata         TEXT,
    owner_partner_id TEXT REFERENCES accounts (id),
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
-- A partner's first page in any order costs the same however many workspaces it owns.
CREATE INDEX workspaces_by_owner_created ON workspaces (owner_partner_id, created_at, id);
CREATE INDEX workspaces_by_owner_updated ON workspaces (owner_partner_id, updated_at, id);
CREATE INDEX workspaces_by_owner_name ON workspaces (owner_partner_id, display_name, id);

CREATE TABLE workspace_members (
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    account_id   TEXT NOT NULL REFERENCES accounts (id),
    role         TEXT NOT NULL CHECK (role IN ('admin', 'user')),
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, account_id)
);
CREATE INDEX workspace_members_by_account ON workspace_members (account_id, workspace_id);
CREATE INDEX workspace_members_by_workspace ON workspace_members (workspace_id, created_at, account_id);
