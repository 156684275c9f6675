-- The workspace dashboard lists a workspace's most recently updated import jobs and works
-- across all of its connections; these keep that a short index walk at any table size.
CREATE INDEX connection_jobs_by_workspace ON connection_jobs (workspace_id, updated_at, id);
CREATE INDEX job_works_by_workspace ON job_works (workspace_id, updated_at, id);
