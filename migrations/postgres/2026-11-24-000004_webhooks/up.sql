-- Alert webhooks: a per-service endpoint and secret, and an outbox of alert events
-- written in the same transaction as the alert change.
ALTER TABLE services ADD COLUMN webhook_url TEXT;
ALTER TABLE services ADD COLUMN webhook_secret_sealed BYTEA; -- nonce || AES-256-GCM(secret)
ALTER TABLE services ADD COLUMN webhook_key_id TEXT;

CREATE TABLE alert_events (
    id               TEXT PRIMARY KEY,  -- sent as Ferry-Event-Id: receivers dedupe on it
    alert_id         TEXT NOT NULL,
    service          TEXT NOT NULL,
    payload          TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    lease_until      BIGINT,            -- a sender has claimed it until then
    delivered_at     BIGINT,
    last_error       TEXT
);
CREATE INDEX alert_events_due ON alert_events (next_attempt_at) WHERE delivered_at IS NULL;
-- The dashboard's "recent deliveries" reads the newest first.
CREATE INDEX deliveries_created ON deliveries (created_at);
CREATE INDEX alert_events_service_open ON alert_events (service, created_at) WHERE delivered_at IS NULL;
