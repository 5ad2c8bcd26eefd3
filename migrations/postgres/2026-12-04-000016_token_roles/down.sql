DROP INDEX api_tokens_tenant_name;
ALTER TABLE api_tokens DROP COLUMN expires_at;
ALTER TABLE api_tokens DROP COLUMN role;
ALTER TABLE api_tokens DROP COLUMN name;
