DROP TRIGGER nodes_count_insert ON nodes;
DROP TRIGGER nodes_count_delete ON nodes;
DROP FUNCTION ferry_nodes_count_inserted();
DROP FUNCTION ferry_nodes_count_deleted();
CREATE TRIGGER nodes_count_insert AFTER INSERT ON nodes
    FOR EACH ROW EXECUTE FUNCTION ferry_nodes_count();
CREATE TRIGGER nodes_count_delete AFTER DELETE ON nodes
    FOR EACH ROW EXECUTE FUNCTION ferry_nodes_count();
