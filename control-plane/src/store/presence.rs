//! `replicas` and node presence: which replica holds each node's long-poll.
//!
//! A held node has `held_by` set and no `unseen_at` deadline, so the staleness detector
//! (which reads `unseen_at < now`) never sees it; a released node gets
//! `last_seen = released_at` and `unseen_at = released_at + stale_after`, exactly the
//! deadline a poll-by-poll `last_seen` would give. A replica that stops heartbeating is
//! swept: its row is deleted and its nodes get `heartbeat_at + stale_after`, so they go
//! unseen on time if nobody picks them up. Each flush is one statement for every node
//! whose presence changed; a connected, idle node costs nothing.

use super::schema::replicas;
use super::{Conn, on_backend};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

/// One node's presence change, as written by a flush.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PresenceWrite {
    pub service: String,
    pub node_id: String,
    /// When the node was last known connected (now for a hold, the release time else).
    pub at: i64,
    /// True: the node holds a poll on this replica now.
    pub held: bool,
}

/// Records that replica `id` is alive and holds `held` polls. False when its row was
/// gone (swept as dead while it was cut off): the row is created again and the caller
/// must write every node it holds, since the sweep released them.
pub fn heartbeat(c: &mut Conn<'_>, id: &str, now: i64, held: i64) -> QueryResult<bool> {
    let n = on_backend!(c, c => diesel::update(replicas::table.find(id))
        .set((replicas::heartbeat_at.eq(now), replicas::held.eq(held)))
        .execute(c))?;
    if n > 0 {
        return Ok(true);
    }
    on_backend!(c, c => diesel::insert_into(replicas::table)
        .values((
            replicas::id.eq(id),
            replicas::started_at.eq(now),
            replicas::heartbeat_at.eq(now),
            replicas::held.eq(held),
        ))
        .execute(c))?;
    Ok(false)
}

const WRITE_PG: &str = "UPDATE nodes AS n SET \
       held_by = CASE WHEN u.held THEN $2 ELSE NULL END, \
       last_seen = u.at, \
       unseen_at = CASE WHEN u.held THEN NULL ELSE u.at + s.stale_after_seconds * 1000 END \
     FROM json_to_recordset($1::json) AS u(service text, node_id text, at bigint, held boolean) \
     JOIN services s ON s.name = u.service \
     WHERE n.service = u.service AND n.node_id = u.node_id \
       AND (u.held OR n.held_by IS NULL OR n.held_by = $2) \
       AND (n.last_seen IS NULL OR n.last_seen <= u.at)";

const WRITE_SQLITE: &str = "UPDATE nodes SET \
       held_by = CASE WHEN u.held THEN ?2 ELSE NULL END, \
       last_seen = u.at, \
       unseen_at = CASE WHEN u.held THEN NULL ELSE u.at + u.stale_ms END \
     FROM (SELECT json_extract(j.value, '$.service') AS service, \
                  json_extract(j.value, '$.node_id') AS node_id, \
                  json_extract(j.value, '$.at') AS at, \
                  json_extract(j.value, '$.held') AS held, \
                  s.stale_after_seconds * 1000 AS stale_ms \
             FROM json_each(?1) AS j \
             JOIN services s ON s.name = json_extract(j.value, '$.service')) AS u \
     WHERE nodes.service = u.service AND nodes.node_id = u.node_id \
       AND (u.held OR nodes.held_by IS NULL OR nodes.held_by = ?2) \
       AND (nodes.last_seen IS NULL OR nodes.last_seen <= u.at)";

/// Writes presence changes of replica `replica` in one statement. A release never
/// overwrites a node another replica holds now, and no write moves `last_seen` back.
pub fn write(c: &mut Conn<'_>, replica: &str, writes: &[PresenceWrite]) -> QueryResult<usize> {
    if writes.is_empty() {
        return Ok(0);
    }
    let json = serde_json::to_string(writes)
        .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
    match c {
        Conn::Pg(c) => diesel::sql_query(WRITE_PG)
            .bind::<Text, _>(json)
            .bind::<Text, _>(replica)
            .execute(*c),
        Conn::Sqlite(c) => diesel::sql_query(WRITE_SQLITE)
            .bind::<Text, _>(json)
            .bind::<Text, _>(replica)
            .execute(*c),
    }
}

#[derive(QueryableByName)]
struct Dead {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = BigInt)]
    heartbeat_at: i64,
}

const RELEASE_DEAD: &str = "UPDATE nodes SET held_by = NULL, \
       last_seen = CASE WHEN last_seen IS NULL OR last_seen < $2 THEN $2 ELSE last_seen END, \
       unseen_at = $2 + (SELECT s.stale_after_seconds * 1000 FROM services s WHERE s.name = nodes.service) \
     WHERE held_by = $1";

/// Deletes the rows of replicas whose heartbeat is older than `dead_before` and gives
/// their nodes back a deadline from the last heartbeat. Returns (replicas, nodes).
///
/// On PostgreSQL the delete waits for a flush in progress on that replica's row (the
/// flush updates its heartbeat first, in the same transaction) and then re-checks the
/// heartbeat, so a live replica's nodes are never released under it.
pub fn sweep(c: &mut Conn<'_>, dead_before: i64) -> QueryResult<(usize, usize)> {
    let dead: Vec<Dead> = match c {
        Conn::Pg(c) => diesel::sql_query(
            "DELETE FROM replicas WHERE heartbeat_at < $1 RETURNING id, heartbeat_at",
        )
        .bind::<BigInt, _>(dead_before)
        .load(*c)?,
        Conn::Sqlite(c) => diesel::sql_query(
            "DELETE FROM replicas WHERE heartbeat_at < ?1 RETURNING id, heartbeat_at",
        )
        .bind::<BigInt, _>(dead_before)
        .load(*c)?,
    };
    let mut nodes = 0;
    for d in &dead {
        nodes += match c {
            Conn::Pg(c) => diesel::sql_query(RELEASE_DEAD)
                .bind::<Text, _>(&d.id)
                .bind::<BigInt, _>(d.heartbeat_at)
                .execute(*c)?,
            Conn::Sqlite(c) => diesel::sql_query(RELEASE_DEAD.replace('$', "?"))
                .bind::<Text, _>(&d.id)
                .bind::<BigInt, _>(d.heartbeat_at)
                .execute(*c)?,
        };
    }
    Ok((dead.len(), nodes))
}

/// A replica leaving cleanly: its row goes (its nodes were released by its last flush).
pub fn leave(c: &mut Conn<'_>, id: &str) -> QueryResult<()> {
    on_backend!(c, c => diesel::delete(replicas::table.find(id)).execute(c)).map(drop)
}

/// Live replicas: (id, started_at, heartbeat_at, held), for `/metrics` and status.
pub fn list(c: &mut Conn<'_>) -> QueryResult<Vec<(String, i64, i64, i64)>> {
    on_backend!(c, c => replicas::table
        .order(replicas::id)
        .select((replicas::id, replicas::started_at, replicas::heartbeat_at, replicas::held))
        .load(c))
}
