DROP INDEX nodes_pending;
