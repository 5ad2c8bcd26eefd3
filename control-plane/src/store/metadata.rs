//! `metadata`: custom key/values of a service (`node_id` '') and per-node overrides,
//! optionally expiring. Reads merge both for one node and leave out expired values
//! even before the expiry job has removed them.

use super::schema::{metadata, nodes};
use super::{Conn, on_backend};
use diesel::prelude::*;
use std::collections::BTreeMap;

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
/// statement; the cached content hash is cleared (it is computed again from the bundle
/// and the metadata). Returns the number of nodes.
pub fn bump_service(c: &mut Conn<'_>, service: &str, now: i64) -> QueryResult<usize> {
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
