-- Delivery: each node's desired bundle, acknowledgements, forced deliveries, rotations.
ALTER TABLE nodes ADD COLUMN desired_hash TEXT;
ALTER TABLE nodes ADD COLUMN acked_hash TEXT;
ALTER TABLE nodes ADD COLUMN acked_at BIGINT;
ALTER TABLE nodes ADD COLUMN renew_at BIGINT; -- NULL: nothing scheduled (node-key node owes a CSR)
ALTER TABLE nodes ADD COLUMN clock_skew_ms BIGINT;
ALTER TABLE nodes ADD COLUMN last_error TEXT;
ALTER TABLE nodes ADD COLUMN hook_exit_code INTEGER;
ALTER TABLE nodes ADD COLUMN agent_version TEXT;
-- DNS SANs of delivered certificates: comma-separated, with {node}, {service}, {trust_domain}.
ALTER TABLE services ADD COLUMN san_template TEXT NOT NULL DEFAULT '{node}.{service}.{trust_domain}';
-- The renewal scheduler's only query: due nodes, oldest first. Partial, so nodes with
-- nothing scheduled cost nothing.
CREATE INDEX nodes_renew_at ON nodes (renew_at) WHERE renew_at IS NOT NULL;

-- The current desired bundle of each node (history is in the ack columns and deliveries).
CREATE TABLE bundles (
    service       TEXT NOT NULL,
    node_id       TEXT NOT NULL,
    version       BIGINT NOT NULL,
    content_hash  TEXT NOT NULL,
    cert_pem      TEXT NOT NULL,
    chain_pem     TEXT NOT NULL,
    key_sealed    BLOB,          -- central mode: nonce || AES-256-GCM(key PEM)
    key_id        TEXT,
    not_after     BIGINT,
    csr_required  BOOLEAN NOT NULL,
    metadata      TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (service, node_id),
    FOREIGN KEY (service, node_id) REFERENCES nodes (service, node_id) ON DELETE CASCADE
);

CREATE TABLE rotations (
    id             TEXT PRIMARY KEY,
    service        TEXT NOT NULL REFERENCES services(name) ON DELETE CASCADE,
    max_in_flight  INTEGER NOT NULL,
    state          TEXT NOT NULL, -- running | done
    total          BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    finished_at    BIGINT
);
CREATE INDEX rotations_running ON rotations (created_at) WHERE state = 'running';

CREATE TABLE deliveries (
    id               TEXT PRIMARY KEY,
    service          TEXT NOT NULL,
    node_id          TEXT NOT NULL,
    rotation_id      TEXT REFERENCES rotations(id) ON DELETE CASCADE,
    idempotency_key  TEXT,
    state            TEXT NOT NULL, -- queued | pending | delivered | failed | superseded
    version          BIGINT,
    error            TEXT,
    created_at       BIGINT NOT NULL,
    issued_at        BIGINT,
    finished_at      BIGINT
);
CREATE UNIQUE INDEX deliveries_idempotency ON deliveries (service, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX deliveries_node_pending ON deliveries (service, node_id) WHERE state = 'pending';
CREATE INDEX deliveries_rotation_state ON deliveries (rotation_id, state, node_id) WHERE rotation_id IS NOT NULL;
CREATE INDEX deliveries_pending_issued ON deliveries (issued_at) WHERE state = 'pending';
