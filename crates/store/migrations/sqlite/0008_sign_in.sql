-- Signing in to the web pages: one-time codes (one per email, replaced when a new one is
-- asked for) and sessions. Codes and session tokens are kept only as hashes.
CREATE TABLE sign_in_codes (
    email      TEXT PRIMARY KEY,
    code_hash  TEXT NOT NULL,
    tries      INTEGER NOT NULL DEFAULT 0,
    expires_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE web_sessions (
    token_hash TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    csrf       TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX web_sessions_by_account ON web_sessions (account_id);
CREATE INDEX web_sessions_by_expiry ON web_sessions (expires_at);
