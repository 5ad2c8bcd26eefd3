-- Dynamic metadata: a customer URL fetched periodically, whose JSON answer is delivered
-- as the metadata value `key` (service-wide, or per node with `{node}` in the URL).
CREATE TABLE sources (
    service          TEXT NOT NULL REFERENCES services(name) ON DELETE CASCADE,
    name             TEXT NOT NULL,
    key              TEXT NOT NULL,   -- the metadata key it writes
    scope            TEXT NOT NULL,   -- service | node
    url              TEXT NOT NULL,   -- node scope: a template with {node}
    interval_seconds BIGINT NOT NULL,
    header_names     TEXT NOT NULL,   -- JSON array: what the API shows of the headers
    headers_sealed   BLOB NOT NULL,   -- nonce || AES-256-GCM(JSON object of the headers)
    key_id           TEXT NOT NULL,   -- the master key that sealed them
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL, -- also tells a fetch that its source changed under it
    PRIMARY KEY (service, name)
);
-- Two sources never write the same key of a service.
CREATE UNIQUE INDEX sources_key ON sources (service, key);

-- Fetch state: one row per fetched URL (node_id '' for a service-scope source, one row
-- per node of a node-scope source), so the fetch job reads only due rows.
CREATE TABLE source_fetches (
    service          TEXT NOT NULL,
    source           TEXT NOT NULL,
    node_id          TEXT NOT NULL,   -- '' for a service-scope source
    next_fetch_at    BIGINT NOT NULL, -- due time; while a fetch runs, the end of its lease
    etag             TEXT,            -- sent as If-None-Match
    value_hash       TEXT,            -- SHA-256 of the last delivered JSON
    last_attempt_at  BIGINT,
    last_success_at  BIGINT,
    last_error       TEXT,
    failures         INTEGER NOT NULL DEFAULT 0, -- consecutive
    circuit          TEXT NOT NULL DEFAULT 'closed', -- closed | open | half-open
    alerting         BOOLEAN NOT NULL DEFAULT FALSE, -- counted in a source-failing alert
    PRIMARY KEY (service, source, node_id),
    FOREIGN KEY (service, source) REFERENCES sources (service, name) ON DELETE CASCADE
);
-- Due work, soonest first: the fetch job's only way in.
CREATE INDEX source_fetches_due ON source_fetches (next_fetch_at);
-- A node's rows (its enrollment and deletion, its source-failing alert).
CREATE INDEX source_fetches_node ON source_fetches (service, node_id);

-- A node-scope source fetches for every node of its service: a node that enrolls gets
-- its rows (due at once), a node that is deleted loses them, whatever code path did it.
CREATE TRIGGER source_fetches_node_insert AFTER INSERT ON nodes
BEGIN
    INSERT INTO source_fetches (service, source, node_id, next_fetch_at)
        SELECT NEW.service, name, NEW.node_id, 0 FROM sources
        WHERE service = NEW.service AND scope = 'node';
END;
CREATE TRIGGER source_fetches_node_delete AFTER DELETE ON nodes
BEGIN
    DELETE FROM source_fetches WHERE service = OLD.service AND node_id = OLD.node_id;
END;
