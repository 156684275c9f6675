-- Accounts, API keys and usage counts. Instants are milliseconds since the Unix epoch.
CREATE TABLE accounts (
    id           TEXT PRIMARY KEY,
    email        TEXT NOT NULL UNIQUE,
    name         TEXT,
    account_type TEXT NOT NULL CHECK (account_type IN ('customer', 'partner')),
    provider_key TEXT UNIQUE,
    disabled_at  BIGINT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id             TEXT PRIMARY KEY,
    account_id     TEXT NOT NULL REFERENCES accounts (id),
    name           TEXT NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('personal', 'partner')),
    key_hash       TEXT NOT NULL UNIQUE,
    display_prefix TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    last_used_at   BIGINT,
    expires_at     BIGINT,
    revoked_at     BIGINT
);
CREATE INDEX api_keys_by_account ON api_keys (account_id, created_at);

-- api_key_id is '' for requests that no key was behind.
CREATE TABLE usage_counts (
    day             TEXT NOT NULL,
    api_key_id      TEXT NOT NULL,
    source_platform TEXT NOT NULL,
    operation       TEXT NOT NULL,
    count           BIGINT NOT NULL,
    PRIMARY KEY (day, api_key_id, source_platform, operation)
);
