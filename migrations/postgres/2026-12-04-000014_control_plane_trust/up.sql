-- Separate trust for the control plane: its server certificate is signed by a CA of
-- its own that signs nothing else, so no certificate a tenant obtains can pass for it.
CREATE TABLE control_plane_cas (
    trust_domain    TEXT PRIMARY KEY,
    cert_pem        TEXT NOT NULL,
    key_ciphertext  BYTEA NOT NULL, -- sealed like the root's, under another AAD
    key_id          TEXT NOT NULL,
    created_at      BIGINT NOT NULL
);

-- Names a service's certificates may carry, set by an admin: a JSON array of DNS
-- suffixes (NULL: only names under the service's own <service>.<trust domain>), and
-- whether a leftmost '*' label is allowed.
ALTER TABLE services ADD COLUMN dns_suffixes TEXT;
ALTER TABLE services ADD COLUMN wildcard_names BOOLEAN NOT NULL DEFAULT FALSE;

-- A join token may enroll over an existing node only when created to replace nodes.
ALTER TABLE join_tokens ADD COLUMN replaces_nodes BOOLEAN NOT NULL DEFAULT FALSE;

-- The identity a node renewed from is accepted only until this time (the retry of a
-- renewal whose answer was lost), and never renews itself again after that.
ALTER TABLE nodes ADD COLUMN prev_identity_until BIGINT;
UPDATE nodes SET prev_identity_until = (extract(epoch from now()) * 1000)::bigint + 600000 WHERE prev_identity_serial IS NOT NULL;
-- sha256 of the identity key's SubjectPublicKeyInfo: an agent whose identity expired
-- re-enrolls with the same key, which proves it is the node and not a token thief.
ALTER TABLE nodes ADD COLUMN identity_key TEXT;
