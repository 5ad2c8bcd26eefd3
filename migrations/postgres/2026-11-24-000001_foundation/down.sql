DROP TABLE audit_log;
DROP TABLE nodes;
DROP TABLE join_tokens;
DROP TABLE services;
DROP TABLE cas;
DROP TABLE api_tokens;
DROP TABLE tenants;
