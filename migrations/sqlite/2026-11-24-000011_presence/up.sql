-- Presence from held connections: see the PostgreSQL migration of the same name.
CREATE TABLE replicas (
    id TEXT PRIMARY KEY,
    started_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL,
    held BIGINT NOT NULL DEFAULT 0
);
ALTER TABLE nodes ADD COLUMN held_by TEXT;
CREATE INDEX nodes_held_by ON nodes (held_by) WHERE held_by IS NOT NULL;
