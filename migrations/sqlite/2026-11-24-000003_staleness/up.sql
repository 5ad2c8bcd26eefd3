-- Staleness: the detector's three index-driven questions, and alerts.
ALTER TABLE nodes ADD COLUMN desired_at BIGINT; -- when desired_version was last set
ALTER TABLE nodes ADD COLUMN unseen_at BIGINT;  -- last_seen + the service's stale_after
-- Each index covers only the nodes that can be stale for its reason, so a detector pass
-- costs what the stale nodes cost, not what the fleet costs.
CREATE INDEX nodes_lagging ON nodes (desired_at) WHERE acked_version < desired_version;
CREATE INDEX nodes_unseen_at ON nodes (unseen_at);
CREATE INDEX nodes_cert_not_after ON nodes (cert_not_after);

CREATE TABLE alerts (
    id           TEXT PRIMARY KEY,
    service      TEXT NOT NULL,
    node_id      TEXT NOT NULL,  -- '' for a service-wide alert
    reason       TEXT NOT NULL,  -- lagging | unseen | expiring | stale-share
    state        TEXT NOT NULL,  -- firing | resolved
    detail       TEXT NOT NULL,
    fired_at     BIGINT NOT NULL,
    resolved_at  BIGINT
);
-- At most one firing alert per (service, node, reason): the dedup rule, enforced.
CREATE UNIQUE INDEX alerts_firing ON alerts (service, node_id, reason) WHERE state = 'firing';
CREATE INDEX alerts_service_fired ON alerts (service, fired_at);
