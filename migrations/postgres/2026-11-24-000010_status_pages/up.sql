-- Paged status: the nodes that are not settled (behind their desired version, or
-- without an installed certificate yet), keyed by service, so one page of services
-- reads only its own candidates and the fleet total counts them from the index alone.
-- Its columns and predicate are already indexed elsewhere (nodes_lagging,
-- nodes_cert_not_after), so it costs no HOT update that was not already lost.
CREATE INDEX nodes_pending ON nodes (service, node_id)
    WHERE acked_version < desired_version OR cert_not_after IS NULL;
