-- Status without scanning the fleet: each service keeps its node count, maintained by
-- triggers on every insert and delete of a node (enrollment, revocation, cascades), and
-- every other status figure is read from an index that holds only the nodes it counts.
ALTER TABLE services ADD COLUMN node_count BIGINT NOT NULL DEFAULT 0;
UPDATE services SET node_count = (SELECT count(*) FROM nodes WHERE nodes.service = services.name);

CREATE TRIGGER nodes_count_insert AFTER INSERT ON nodes
BEGIN
    UPDATE services SET node_count = node_count + 1 WHERE name = NEW.service;
END;
CREATE TRIGGER nodes_count_delete AFTER DELETE ON nodes
BEGIN
    UPDATE services SET node_count = node_count - 1 WHERE name = OLD.service;
END;

-- The same partial index as before, with the service in it so pending nodes are counted
-- per service from the index alone.
DROP INDEX nodes_lagging;
CREATE INDEX nodes_lagging ON nodes (desired_at, service) WHERE acked_version < desired_version;
-- Expiry ranges grouped by service: the detector reads the short end, the status the
-- long end (with hour-long certificates both ends are small).
DROP INDEX nodes_cert_not_after;
CREATE INDEX nodes_cert_not_after ON nodes (cert_not_after, service);
-- The soonest expiry of each service (a metric): one index probe per service.
CREATE INDEX nodes_service_expiry ON nodes (service, cert_not_after);
-- Deliveries of the last hour per service, from the index alone.
DROP INDEX deliveries_created;
CREATE INDEX deliveries_created ON deliveries (created_at, service);
