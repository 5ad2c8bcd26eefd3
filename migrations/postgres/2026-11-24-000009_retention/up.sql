-- Retention reads only what it may remove: resolved alerts and delivered webhook events
-- by age (finished deliveries use `deliveries_created`).
CREATE INDEX alerts_resolved_at ON alerts (resolved_at) WHERE state = 'resolved';
CREATE INDEX alert_events_delivered_at ON alert_events (delivered_at) WHERE delivered_at IS NOT NULL;
