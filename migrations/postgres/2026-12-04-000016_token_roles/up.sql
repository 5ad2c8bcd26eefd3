-- Scoped API tokens: a name (unique per tenant; admin tokens share the '' scope), a
-- role, an optional expiry. Tokens that existed before keep working as `admin` (what
-- every token could do) and are named by their id.
ALTER TABLE api_tokens ADD COLUMN name TEXT NOT NULL DEFAULT '';
UPDATE api_tokens SET name = id;
ALTER TABLE api_tokens ALTER COLUMN name DROP DEFAULT;
ALTER TABLE api_tokens ADD COLUMN role TEXT NOT NULL DEFAULT 'admin'
    CHECK (role IN ('read', 'deliver', 'admin'));
ALTER TABLE api_tokens ADD COLUMN expires_at BIGINT; -- unix ms; NULL: never
CREATE UNIQUE INDEX api_tokens_tenant_name ON api_tokens (COALESCE(tenant, ''), name);
