DROP INDEX nodes_held_by;
ALTER TABLE nodes DROP COLUMN held_by;
DROP TABLE replicas;
