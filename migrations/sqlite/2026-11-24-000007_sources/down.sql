DROP TRIGGER source_fetches_node_delete;
DROP TRIGGER source_fetches_node_insert;
DROP TABLE source_fetches;
DROP TABLE sources;
