-- A page of workspace keys (`me { workspaces { id slug } }`, the most common list) is read from
-- the owner's index alone: each index carries the slug, so no row is looked up in the table.
DROP INDEX workspaces_by_owner_created;
DROP INDEX workspaces_by_owner_updated;
DROP INDEX workspaces_by_owner_name;
CREATE INDEX workspaces_by_owner_created ON workspaces (owner_partner_id, created_at, id, slug);
CREATE INDEX workspaces_by_owner_updated ON workspaces (owner_partner_id, updated_at, id, slug);
CREATE INDEX workspaces_by_owner_name ON workspaces (owner_partner_id, display_name, id, slug);
