-- Foundation: tenants, API tokens, the CA, services, join tokens, nodes, audit.
-- Times are unix milliseconds (BIGINT) so the same schema reads alike on SQLite.
CREATE TABLE tenants (
    name        TEXT PRIMARY KEY,
    created_at  BIGINT NOT NULL
);

CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY,
    tenant      TEXT REFERENCES tenants(name) ON DELETE CASCADE, -- NULL: admin
    token_hash  TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL
);

CREATE TABLE cas (
    trust_domain    TEXT PRIMARY KEY,
    cert_pem        TEXT NOT NULL,
    key_ciphertext  BLOB NOT NULL, -- nonce || AES-256-GCM(ciphertext + tag)
    key_id          TEXT NOT NULL,  -- which master key sealed it
    created_at      BIGINT NOT NULL
);

CREATE TABLE services (
    name                 TEXT PRIMARY KEY,
    tenant               TEXT NOT NULL REFERENCES tenants(name),
    cert_ttl_seconds     BIGINT NOT NULL,
    renew_before_seconds BIGINT NOT NULL,
    key_type             TEXT NOT NULL,
    key_mode             TEXT NOT NULL,
    stale_after_seconds  BIGINT NOT NULL,
    grace_seconds        BIGINT NOT NULL,
    alert_before_seconds BIGINT NOT NULL,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL
);
CREATE INDEX services_tenant_name ON services (tenant, name);

CREATE TABLE join_tokens (
    id          TEXT PRIMARY KEY,
    service     TEXT NOT NULL REFERENCES services(name) ON DELETE CASCADE,
    token_hash  TEXT NOT NULL UNIQUE,
    expires_at  BIGINT NOT NULL,
    max_uses    INTEGER NOT NULL,
    uses        INTEGER NOT NULL DEFAULT 0,
    created_at  BIGINT NOT NULL
);
CREATE INDEX join_tokens_service ON join_tokens (service);

CREATE TABLE nodes (
    service               TEXT NOT NULL REFERENCES services(name) ON DELETE CASCADE,
    node_id               TEXT NOT NULL,
    state                 TEXT NOT NULL,
    identity_serial       TEXT NOT NULL,
    prev_identity_serial  TEXT,
    identity_not_after    BIGINT NOT NULL,
    enrolled_at           BIGINT NOT NULL,
    last_seen             BIGINT,
    desired_version       BIGINT NOT NULL DEFAULT 0,
    acked_version         BIGINT NOT NULL DEFAULT 0,
    cert_not_after        BIGINT,
    PRIMARY KEY (service, node_id)
);

CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      BIGINT NOT NULL,
    actor   TEXT NOT NULL,
    tenant  TEXT,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    detail  TEXT NOT NULL
);
CREATE INDEX audit_log_tenant_id ON audit_log (tenant, id);
