DROP TABLE alerts;
DROP INDEX nodes_cert_not_after;
DROP INDEX nodes_unseen_at;
DROP INDEX nodes_lagging;
ALTER TABLE nodes DROP COLUMN unseen_at;
ALTER TABLE nodes DROP COLUMN desired_at;
