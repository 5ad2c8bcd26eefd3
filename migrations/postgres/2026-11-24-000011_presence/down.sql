ALTER TABLE nodes RESET (fillfactor);
ALTER TABLE bundles RESET (fillfactor);
DROP INDEX nodes_held_by;
ALTER TABLE nodes DROP COLUMN held_by;
DROP TABLE replicas;
