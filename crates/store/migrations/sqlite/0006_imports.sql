-- Push imports: a connection's import batches (jobs), the works (one tax preparation for one
-- client) each job brings, and the artifacts (files) of each work. A work belongs to exactly
-- one job, so one row holds both the JobWork and its Work (two ids, as the API shows them);
-- likewise one row holds a JobArtifact and its WorkArtifact.
CREATE TABLE connection_jobs (
    id            TEXT PRIMARY KEY,
    connection_id TEXT NOT NULL REFERENCES provider_connections (id),
    workspace_id  TEXT NOT NULL,
    name          TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('pending', 'active', 'completed', 'failed', 'cancelled')),
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    triggered_at  INTEGER,
    completed_at  INTEGER
);
CREATE INDEX connection_jobs_by_created ON connection_jobs (connection_id, created_at, id);
CREATE INDEX connection_jobs_by_updated ON connection_jobs (connection_id, updated_at, id);
CREATE INDEX connection_jobs_by_name ON connection_jobs (connection_id, name, id);

CREATE TABLE job_works (
    id            TEXT PRIMARY KEY,
    work_id       TEXT NOT NULL UNIQUE,
    job_id        TEXT NOT NULL REFERENCES connection_jobs (id),
    connection_id TEXT NOT NULL,
    workspace_id  TEXT NOT NULL,
    external_id   TEXT NOT NULL,
    name          TEXT NOT NULL,
    tag           TEXT,
    status        TEXT NOT NULL CHECK (status IN ('pending', 'importing', 'ready', 'needs_attention', 'cancelled')),
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    CONSTRAINT job_works_external_id UNIQUE (connection_id, external_id)
);
CREATE INDEX job_works_by_created ON job_works (connection_id, created_at, id);
CREATE INDEX job_works_by_updated ON job_works (connection_id, updated_at, id);
CREATE INDEX job_works_by_name ON job_works (connection_id, name, id);
CREATE INDEX job_works_by_job ON job_works (job_id, created_at, id);

CREATE TABLE job_artifacts (
    id            TEXT PRIMARY KEY,
    artifact_id   TEXT NOT NULL UNIQUE,
    job_work_id   TEXT NOT NULL REFERENCES job_works (id),
    work_id       TEXT NOT NULL,
    job_id        TEXT NOT NULL,
    connection_id TEXT NOT NULL,
    workspace_id  TEXT NOT NULL,
    external_id   TEXT NOT NULL,
    name          TEXT NOT NULL,
    artifact_type TEXT NOT NULL,
    url           TEXT,
    status        TEXT NOT NULL CHECK (status IN ('initial', 'success', 'error', 'terminated')),
    -- The caller's metadata object, plus size, sha256 and mimeType on success or error on
    -- failure, as JSON text.
    metadata      TEXT NOT NULL,
    -- The blob holding the bytes once status is success; its key never changes.
    blob_key      TEXT,
    size          INTEGER,
    sha256        TEXT,
    mime_type     TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    CONSTRAINT job_artifacts_external_id UNIQUE (job_work_id, external_id)
);
CREATE INDEX job_artifacts_by_work ON job_artifacts (job_work_id, status);
CREATE INDEX job_artifacts_by_job ON job_artifacts (job_id, status);

-- Background work: one row per unfinished task, claimed with a lease that expires, so a
-- killed worker's task is taken over. A task is due when run_after has passed; claiming it
-- sets lease_owner and moves run_after to the lease's end (renewals move it on), so a leased
-- task is not due until its lease lapses. A finished task's row is deleted in the same
-- transaction that records its outcome.
CREATE TABLE tasks (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    subject     TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    run_after   INTEGER NOT NULL,
    lease_owner TEXT,
    last_error  TEXT,
    created_at  INTEGER NOT NULL,
    CONSTRAINT tasks_subject UNIQUE (kind, subject)
);
CREATE INDEX tasks_due ON tasks (run_after, id);
