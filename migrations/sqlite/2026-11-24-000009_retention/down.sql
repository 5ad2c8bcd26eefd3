DROP INDEX alert_events_delivered_at;
DROP INDEX alerts_resolved_at;
