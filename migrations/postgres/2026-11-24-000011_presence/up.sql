-- Presence from held connections (issue 14): a replica records in batches which nodes
-- hold a long-poll on it (`held_by`, with `unseen_at` cleared while held) and keeps a
-- heartbeat row; the nodes of a replica whose heartbeat stops are given back their
-- deadline (`heartbeat_at + stale_after`) by whichever replica sweeps it. An idle,
-- connected node therefore costs no row write at all.
CREATE TABLE replicas (
    id TEXT PRIMARY KEY,
    started_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL,
    held BIGINT NOT NULL DEFAULT 0
);
ALTER TABLE nodes ADD COLUMN held_by TEXT;
-- Only held nodes, only read when a replica is swept.
CREATE INDEX nodes_held_by ON nodes (held_by) WHERE held_by IS NOT NULL;
-- Re-issues rewrite a ~1.3 KB bundle row whose only index is the primary key: room
-- on the page lets them be HOT (no index insert, pruned in place).
ALTER TABLE bundles SET (fillfactor = 50);
ALTER TABLE nodes SET (fillfactor = 80);
