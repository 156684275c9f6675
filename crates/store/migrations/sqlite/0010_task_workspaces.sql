-- Each task names the workspace it works for, so a worker shares its slots among workspaces
-- (no workspace takes more than half while another waits). Tasks queued before carry ''.
ALTER TABLE tasks ADD COLUMN workspace_id TEXT NOT NULL DEFAULT '';
-- A claim reads the oldest due tasks with their kind and workspace: from the index alone.
DROP INDEX tasks_due;
CREATE INDEX tasks_due ON tasks (run_after, id, kind, workspace_id);
