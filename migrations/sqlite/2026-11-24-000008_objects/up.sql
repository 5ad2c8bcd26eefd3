-- Objects a service reads from customer storage: the inventory (which nodes should
-- exist) and, in `imported` key mode, a bucket prefix of `{node}.pem` + `{node}.key`.
CREATE TABLE object_sources (
    service          TEXT NOT NULL REFERENCES services(name) ON DELETE CASCADE,
    kind             TEXT NOT NULL,   -- inventory | certificates
    url              TEXT NOT NULL,   -- s3://bucket/key, s3://bucket/prefix/ or https://...
    policy           TEXT NOT NULL,   -- inventory: flag | revoke; certificates: import
    interval_seconds BIGINT NOT NULL,
    grace_seconds    BIGINT NOT NULL, -- inventory: never-enrolled nodes alert after this
    next_sync_at     BIGINT NOT NULL,
    synced_at        BIGINT,
    last_error       TEXT,
    PRIMARY KEY (service, kind)
);
CREATE INDEX object_sources_due ON object_sources (next_sync_at);

-- The last synced inventory: one row per listed node id.
CREATE TABLE inventory (
    service    TEXT NOT NULL REFERENCES services(name) ON DELETE CASCADE,
    node_id    TEXT NOT NULL,
    listed_at  BIGINT NOT NULL,  -- first seen in the inventory (never-enrolled grace)
    PRIMARY KEY (service, node_id)
);

-- What was imported from a bucket, so an unchanged object is not imported again.
CREATE TABLE imported_objects (
    service    TEXT NOT NULL REFERENCES services(name) ON DELETE CASCADE,
    node_id    TEXT NOT NULL,
    etags      TEXT NOT NULL,  -- "<cert etag> <key etag>"
    version    BIGINT NOT NULL,
    imported_at BIGINT NOT NULL,
    PRIMARY KEY (service, node_id)
);
