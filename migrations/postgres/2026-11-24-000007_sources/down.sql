DROP TRIGGER source_fetches_node_delete ON nodes;
DROP TRIGGER source_fetches_node_insert ON nodes;
DROP FUNCTION ferry_source_fetches_node();
DROP TABLE source_fetches;
DROP TABLE sources;
