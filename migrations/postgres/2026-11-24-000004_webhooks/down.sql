DROP INDEX deliveries_created;
DROP TABLE alert_events;
ALTER TABLE services DROP COLUMN webhook_key_id;
ALTER TABLE services DROP COLUMN webhook_secret_sealed;
ALTER TABLE services DROP COLUMN webhook_url;
