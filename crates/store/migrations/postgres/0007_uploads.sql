-- Files sent to a provider's platform with uploadConnectionFile: one row per upload, sent by
-- an 'upload' task over tus. upload_url is the tus upload's URL once created, kept so that a
-- restarted worker resumes it (HEAD, then PATCH from the server's offset) instead of
-- starting over. The bytes are a blob: the artifact's own, or one kept for this upload.
CREATE TABLE connection_uploads (
    id            TEXT PRIMARY KEY,
    connection_id TEXT NOT NULL REFERENCES provider_connections (id),
    workspace_id  TEXT NOT NULL,
    client_key    TEXT NOT NULL,
    file_name     TEXT NOT NULL,
    content_type  TEXT,
    tusd_endpoint TEXT NOT NULL,
    artifact_id   TEXT,
    blob_key      TEXT NOT NULL,
    total_bytes   BIGINT NOT NULL,
    bytes_sent    BIGINT NOT NULL DEFAULT 0,
    status        TEXT NOT NULL CHECK (status IN ('queued', 'uploading', 'completed', 'failed')),
    upload_url    TEXT,
    error         TEXT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX connection_uploads_by_connection ON connection_uploads (connection_id, created_at, id);
