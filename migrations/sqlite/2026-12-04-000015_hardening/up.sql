-- Dashboard sessions ended by logout. A session is a signed cookie any replica can
-- check; a logged-out one is refused by every replica through this table until the
-- cookie would have expired anyway. `session_hash` is the SHA-256 of the cookie value.
CREATE TABLE revoked_sessions (
    session_hash TEXT PRIMARY KEY,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX revoked_sessions_expires_at ON revoked_sessions (expires_at);
