-- A collect holds its connection until this instant (milliseconds), so two collects of one
-- connection never run at once, on one node or on several. A lease left by a node that died
-- lapses by itself.
ALTER TABLE provider_connections ADD COLUMN collect_lease_until BIGINT;
