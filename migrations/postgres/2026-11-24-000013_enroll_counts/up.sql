-- Node counts per statement, not per row: a batch of enrollments (one multi-row
-- INSERT) or a service's cascade delete updates each service's row once. The count is
-- still kept by triggers on every insert and delete, so no code path can forget it.
DROP TRIGGER nodes_count_insert ON nodes;
DROP TRIGGER nodes_count_delete ON nodes;
CREATE FUNCTION ferry_nodes_count_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE services s SET node_count = s.node_count + c.n
      FROM (SELECT service, count(*) AS n FROM inserted GROUP BY service) c
     WHERE s.name = c.service;
    RETURN NULL;
END $$;
CREATE FUNCTION ferry_nodes_count_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE services s SET node_count = s.node_count - c.n
      FROM (SELECT service, count(*) AS n FROM deleted GROUP BY service) c
     WHERE s.name = c.service;
    RETURN NULL;
END $$;
CREATE TRIGGER nodes_count_insert AFTER INSERT ON nodes
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION ferry_nodes_count_inserted();
CREATE TRIGGER nodes_count_delete AFTER DELETE ON nodes
    REFERENCING OLD TABLE AS deleted
    FOR EACH STATEMENT EXECUTE FUNCTION ferry_nodes_count_deleted();
