-- Custom metadata: service-wide values (node_id '') and per-node overrides, each an
-- optionally expiring JSON value. A node's bundle carries the merge of both.
CREATE TABLE metadata (
    service     TEXT NOT NULL REFERENCES services(name) ON DELETE CASCADE,
    node_id     TEXT NOT NULL,  -- '' for the service-wide value
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,  -- JSON
    source      TEXT,           -- NULL: set through the API; else the dynamic source's name
    expires_at  BIGINT,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (service, node_id, key)
);
-- The expiry job reads only values that expire.
CREATE INDEX metadata_expires_at ON metadata (expires_at) WHERE expires_at IS NOT NULL;
