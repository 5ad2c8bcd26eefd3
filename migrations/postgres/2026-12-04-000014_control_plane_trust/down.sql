ALTER TABLE nodes DROP COLUMN identity_key;
ALTER TABLE nodes DROP COLUMN prev_identity_until;
ALTER TABLE join_tokens DROP COLUMN replaces_nodes;
ALTER TABLE services DROP COLUMN wildcard_names;
ALTER TABLE services DROP COLUMN dns_suffixes;
DROP TABLE control_plane_cas;
