//! `metadata`: custom key/values of a service (`node_id` '') and per-node overrides,
//! optionally expiring. Reads merge both for one node and leave out expired values
//! even before the expiry job has removed them.

use super::schema::{metadata, nodes, services};
use super::{Conn, on_backend};
use diesel::prelude::*;
use std::collections::{BTreeMap, HashMap};

/// The `node_id` of a service-wide value.
pub const SERVICE_WIDE: &str = "";

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = metadata, treat_none_as_null = true)]
pub struct MetadataRow {
    pub service: String,
    pub node_id: String,
    pub key: String,
    /// JSON text.
    pub value: String,
    pub source: Option<String>,
    pub expires_at: Option<i64>,
    pub updated_at: i64,
}

/// Sets a value (insert or replace).
pub fn put(c: &mut Conn<'_>, row: &MetadataRow) -> QueryResult<()> {
    let target = metadata::table.find((&row.service, &row.node_id, &row.key));
    let updated = on_backend!(c, c => diesel::update(target).set(row).execute(c))?;
    if updated == 0 {
        on_backend!(c, c => diesel::insert_into(metadata::table).values(row).execute(c))?;
    }
    Ok(())
}

/// One stored value, unless it has expired.
pub fn get(
    c: &mut Conn<'_>,
    service: &str,
    node_id: &str,
    key: &str,
    now: i64,
) -> QueryResult<Option<MetadataRow>> {
    let row: Option<MetadataRow> = on_backend!(c, c => metadata::table
        .find((service, node_id, key))
        .select(MetadataRow::as_select())
        .first(c)
        .optional())?;
    Ok(row.filter(|r| r.expires_at.is_none_or(|t| t > now)))
}

/// Removes one value; whether it existed.
pub fn delete(c: &mut Conn<'_>, service: &str, node_id: &str, key: &str) -> QueryResult<bool> {
    let n = on_backend!(c, c => diesel::delete(metadata::table.find((service, node_id, key))).execute(c))?;
    Ok(n > 0)
}

/// Live values stored at one level (service-wide or one node), by key.
pub fn list(
    c: &mut Conn<'_>,
    service: &str,
    node_id: &str,
    now: i64,
) -> QueryResult<Vec<MetadataRow>> {
    on_backend!(c, c => metadata::table
        .filter(metadata::service.eq(service))
        .filter(metadata::node_id.eq(node_id))
        .filter(metadata::expires_at.is_null().or(metadata::expires_at.gt(now)))
        .order(metadata::key)
        .select(MetadataRow::as_select())
        .load(c))
}

/// What a node's bundle carries: service-wide values with the node's own on top.
pub fn resolved(
    c: &mut Conn<'_>,
    service: &str,
    node_id: &str,
    now: i64,
) -> QueryResult<BTreeMap<String, serde_json::Value>> {
    let rows: Vec<(String, String, String)> = on_backend!(c, c => metadata::table
        .filter(metadata::service.eq(service))
        .filter(metadata::node_id.eq_any([SERVICE_WIDE, node_id]))
        .filter(metadata::expires_at.is_null().or(metadata::expires_at.gt(now)))
        .select((metadata::node_id, metadata::key, metadata::value))
        .load(c))?;
    let mut out = BTreeMap::new();
    // Service-wide first, so a node's value replaces it.
    for (_, key, value) in rows
        .iter()
        .filter(|r| r.0.is_empty())
        .chain(rows.iter().filter(|r| !r.0.is_empty()))
    {
        // Values are validated JSON when stored; a corrupt one is left out, not served.
        if let Ok(v) = serde_json::from_str(value) {
            out.insert(key.clone(), v);
        }
    }
    Ok(out)
}

/// The service-wide values of `service` as of `now`, and the earliest expiry among
/// them (after which this answer is out of date).
pub fn service_wide(
    c: &mut Conn<'_>,
    service: &str,
    now: i64,
) -> QueryResult<(BTreeMap<String, serde_json::Value>, Option<i64>)> {
    let rows: Vec<(String, String, Option<i64>)> = on_backend!(c, c => metadata::table
        .filter(metadata::service.eq(service))
        .filter(metadata::node_id.eq(SERVICE_WIDE))
        .filter(metadata::expires_at.is_null().or(metadata::expires_at.gt(now)))
        .select((metadata::key, metadata::value, metadata::expires_at))
        .load(c))?;
    let expires = rows.iter().filter_map(|r| r.2).min();
    let values = rows
        .into_iter()
        .filter_map(|(k, v, _)| Some((k, serde_json::from_str(&v).ok()?)))
        .collect();
    Ok((values, expires))
}

/// A node's own values as of `now` (without the service-wide ones).
pub fn node_only(
    c: &mut Conn<'_>,
    service: &str,
    node_id: &str,
    now: i64,
) -> QueryResult<BTreeMap<String, serde_json::Value>> {
    let rows: Vec<(String, String)> = on_backend!(c, c => metadata::table
        .filter(metadata::service.eq(service))
        .filter(metadata::node_id.eq(node_id))
        .filter(metadata::expires_at.is_null().or(metadata::expires_at.gt(now)))
        .select((metadata::key, metadata::value))
        .load(c))?;
    Ok(rows
        .into_iter()
        .filter_map(|(k, v)| Some((k, serde_json::from_str(&v).ok()?)))
        .collect())
}

/// What each of `ids` (nodes of one service) carries, in one query: the service-wide
/// values with each node's own on top.
pub fn resolved_many(
    c: &mut Conn<'_>,
    service: &str,
    ids: &[String],
    now: i64,
) -> QueryResult<HashMap<String, BTreeMap<String, serde_json::Value>>> {
    let mut wanted: Vec<&str> = ids.iter().map(String::as_str).collect();
    wanted.push(SERVICE_WIDE);
    let rows: Vec<(String, String, String)> = on_backend!(c, c => metadata::table
        .filter(metadata::service.eq(service))
        .filter(metadata::node_id.eq_any(&wanted))
        .filter(metadata::expires_at.is_null().or(metadata::expires_at.gt(now)))
        .select((metadata::node_id, metadata::key, metadata::value))
        .load(c))?;
    let parse = |v: &str| serde_json::from_str::<serde_json::Value>(v).ok();
    let wide: BTreeMap<String, serde_json::Value> = rows
        .iter()
        .filter(|r| r.0.is_empty())
        .filter_map(|(_, k, v)| Some((k.clone(), parse(v)?)))
        .collect();
    let mut out: HashMap<String, BTreeMap<String, serde_json::Value>> =
        ids.iter().map(|id| (id.clone(), wide.clone())).collect();
    for (node, key, value) in rows.iter().filter(|r| !r.0.is_empty()) {
        if let (Some(m), Some(v)) = (out.get_mut(node), parse(value)) {
            m.insert(key.clone(), v);
        }
    }
    Ok(out)
}

/// Values whose expiry has come, oldest first, through the `metadata_expires_at` index.
pub fn expired(c: &mut Conn<'_>, now: i64, limit: i64) -> QueryResult<Vec<MetadataRow>> {
    on_backend!(c, c => metadata::table
        .filter(metadata::expires_at.le(now))
        .order(metadata::expires_at)
        .limit(limit)
        .select(MetadataRow::as_select())
        .load(c))
}

/// Removes an expired value if it is still the expired one (a replica racing us, or a
/// new PUT, may have changed it); whether it was removed.
pub fn delete_expired(c: &mut Conn<'_>, row: &MetadataRow, now: i64) -> QueryResult<bool> {
    let n = on_backend!(c, c => diesel::delete(
        metadata::table
            .find((&row.service, &row.node_id, &row.key))
            .filter(metadata::expires_at.le(now)),
    )
    .execute(c))?;
    Ok(n > 0)
}

/// Removes every value a dynamic source wrote (service-wide and per node); how many.
pub fn delete_from_source(c: &mut Conn<'_>, service: &str, source: &str) -> QueryResult<usize> {
    on_backend!(c, c => diesel::delete(
        metadata::table.filter(metadata::service.eq(service)).filter(metadata::source.eq(source)),
    )
    .execute(c))
}

/// Removes a node's own values (it was revoked).
pub fn delete_node(c: &mut Conn<'_>, service: &str, node_id: &str) -> QueryResult<usize> {
    on_backend!(c, c => diesel::delete(
        metadata::table.filter(metadata::service.eq(service)).filter(metadata::node_id.eq(node_id)),
    )
    .execute(c))
}

/// A new desired version for every node of `service` that has a bundle, in one
/// statement (on PostgreSQL after locking the rows in node-id order); the cached content hash is cleared (it is computed again from the bundle
/// and the metadata). Returns the number of nodes.
pub fn bump_service(c: &mut Conn<'_>, service: &str, now: i64) -> QueryResult<usize> {
    // Lock the rows first in node-id order, the order batch issuers lock in: an UPDATE
    // alone locks in physical order, which could deadlock with a batch holding some.
    if let Conn::Pg(c) = c {
        nodes::table
            .filter(nodes::service.eq(service))
            .filter(nodes::desired_version.gt(0i64))
            .order(nodes::node_id)
            .select(nodes::node_id)
            .for_no_key_update()
            .load::<String>(*c)?;
    }
    on_backend!(c, c => diesel::update(nodes::table.filter(nodes::service.eq(service)).filter(nodes::desired_version.gt(0i64)))
        .set((
            nodes::desired_version.eq(nodes::desired_version + 1i64),
            nodes::desired_hash.eq(None::<String>),
            nodes::desired_at.eq(Some(now)),
        ))
        .execute(c))
}

/// A new desired version for one node (if it has a bundle); whether it had one.
pub fn bump_node(c: &mut Conn<'_>, service: &str, node_id: &str, now: i64) -> QueryResult<bool> {
    let n = on_backend!(c, c => diesel::update(nodes::table.find((service, node_id)).filter(nodes::desired_version.gt(0i64)))
        .set((
            nodes::desired_version.eq(nodes::desired_version + 1i64),
            nodes::desired_hash.eq(None::<String>),
            nodes::desired_at.eq(Some(now)),
        ))
        .execute(c))?;
    Ok(n > 0)
}

diesel::define_sql_function! {
    /// Bytes of a text (both backends have it; SQLite since 3.43).
    fn octet_length(x: diesel::sql_types::Text) -> diesel::sql_types::Integer;
}

/// Bytes (keys and JSON values) the fullest bundle `row` reaches would carry with `row`
/// in place of whatever it replaces: a service value counts against the node with the
/// most values of its own, a node value against the service's values. A key set at both
/// levels is counted twice, so the figure errs on the safe side. Callers compare it with
/// `ferry_shared::metadata::MAX_BUNDLE_METADATA_BYTES` inside the writing transaction.
/// On PostgreSQL it first locks the service's row until that transaction ends, so two
/// writers of one service (an API PUT and a source fetch, say) check one after the
/// other and cannot both fit into the same room; SQLite's writers are serialized already.
pub fn bundle_bytes_with(c: &mut Conn<'_>, row: &MetadataRow) -> QueryResult<i64> {
    if let Conn::Pg(pg) = c {
        services::table
            .find(&row.service)
            .select(services::name)
            .for_update()
            .first::<String>(*pg)
            .optional()?;
    }
    let only = (row.node_id != SERVICE_WIDE).then_some(row.node_id.as_str());
    let levels = bytes_per_level(
        c,
        &row.service,
        only,
        (&row.node_id, &row.key),
        row.updated_at,
    )?;
    let wide = levels.get(SERVICE_WIDE).copied().unwrap_or(0);
    let nodes = levels
        .iter()
        .filter(|(n, _)| n.as_str() != SERVICE_WIDE)
        .map(|(_, t)| *t);
    Ok(wide + nodes.max().unwrap_or(0) + (row.key.len() + row.value.len()) as i64)
}

/// Bytes (keys and JSON values) of the live values of `service`, per level: the
/// service-wide total (`node_id` '') and each node's own, in one statement. `only`
/// limits the nodes to one; the value at (`except_node`, `except_key`) is left out
/// (the one a PUT is about to replace).
pub fn bytes_per_level(
    c: &mut Conn<'_>,
    service: &str,
    only: Option<&str>,
    (except_node, except_key): (&str, &str),
    now: i64,
) -> QueryResult<HashMap<String, i64>> {
    let levels: Vec<&str> = only.into_iter().chain([SERVICE_WIDE]).collect();
    let replaced = metadata::node_id
        .eq(except_node)
        .and(metadata::key.eq(except_key));
    let live = metadata::expires_at
        .is_null()
        .or(metadata::expires_at.gt(now));
    let size = diesel::dsl::sum(octet_length(metadata::key) + octet_length(metadata::value));
    let rows: Vec<(String, Option<i64>)> = match only {
        Some(_) => on_backend!(c, c => metadata::table
            .filter(metadata::service.eq(service))
            .filter(metadata::node_id.eq_any(&levels))
            .filter(diesel::dsl::not(replaced))
            .filter(live)
            .group_by(metadata::node_id)
            .select((metadata::node_id, size))
            .load(c))?,
        None => on_backend!(c, c => metadata::table
            .filter(metadata::service.eq(service))
            .filter(diesel::dsl::not(replaced))
            .filter(live)
            .group_by(metadata::node_id)
            .select((metadata::node_id, size))
            .load(c))?,
    };
    Ok(rows.into_iter().map(|(n, t)| (n, t.unwrap_or(0))).collect())
}
