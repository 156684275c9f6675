-- Each task names the workspace it works for, so a worker shares its slots among workspaces
-- (no workspace takes more than half while another waits). Tasks queued before carry ''.
ALTER TABLE tasks ADD COLUMN workspace_id TEXT NOT NULL DEFAULT '';
