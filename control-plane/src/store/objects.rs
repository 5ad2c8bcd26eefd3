//! `object_sources`, `inventory`, `imported_objects`: what a service reads from
//! customer storage, the last synced inventory, and which bucket objects were imported.

use super::schema::{imported_objects, inventory, nodes, object_sources};
use super::{Conn, on_backend};
use diesel::prelude::*;
use std::collections::HashSet;

pub const INVENTORY: &str = "inventory";
pub const CERTIFICATES: &str = "certificates";

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = object_sources, treat_none_as_null = true)]
pub struct SourceRow {
    pub service: String,
    pub kind: String,
    pub url: String,
    pub policy: String,
    pub interval_seconds: i64,
    pub grace_seconds: i64,
    pub next_sync_at: i64,
    pub synced_at: Option<i64>,
    pub last_error: Option<String>,
}

pub fn put(c: &mut Conn<'_>, row: &SourceRow) -> QueryResult<()> {
    let target = object_sources::table.find((&row.service, &row.kind));
    let n = on_backend!(c, c => diesel::update(target).set(row).execute(c))?;
    if n == 0 {
        on_backend!(c, c => diesel::insert_into(object_sources::table).values(row).execute(c))?;
    }
    Ok(())
}

pub fn get(c: &mut Conn<'_>, service: &str, kind: &str) -> QueryResult<Option<SourceRow>> {
    on_backend!(c, c => object_sources::table.find((service, kind)).select(SourceRow::as_select()).first(c).optional())
}

pub fn delete(c: &mut Conn<'_>, service: &str, kind: &str) -> QueryResult<bool> {
    let n = on_backend!(c, c => diesel::delete(object_sources::table.find((service, kind))).execute(c))?;
    Ok(n > 0)
}

/// Sources whose sync time has come, through the `object_sources_due` index.
pub fn due(c: &mut Conn<'_>, now: i64, limit: i64) -> QueryResult<Vec<SourceRow>> {
    on_backend!(c, c => object_sources::table
        .filter(object_sources::next_sync_at.le(now))
        .order(object_sources::next_sync_at)
        .limit(limit)
        .select(SourceRow::as_select())
        .load(c))
}

/// Claims a due source for one sync (moves its next time forward); false when another
/// replica claimed it first.
pub fn claim(c: &mut Conn<'_>, row: &SourceRow, now: i64) -> QueryResult<bool> {
    let n = on_backend!(c, c => diesel::update(
        object_sources::table
            .find((&row.service, &row.kind))
            .filter(object_sources::next_sync_at.le(now)),
    )
    .set(object_sources::next_sync_at.eq(now + row.interval_seconds * 1000))
    .execute(c))?;
    Ok(n > 0)
}

/// Records the outcome of a sync.
pub fn finish(
    c: &mut Conn<'_>,
    service: &str,
    kind: &str,
    now: i64,
    error: Option<&str>,
) -> QueryResult<()> {
    let target = object_sources::table.find((service, kind));
    match error {
        None => on_backend!(c, c => diesel::update(target)
            .set((object_sources::synced_at.eq(Some(now)), object_sources::last_error.eq(None::<String>)))
            .execute(c)),
        Some(e) => on_backend!(c, c => diesel::update(target)
            .set(object_sources::last_error.eq(Some(e)))
            .execute(c)),
    }
    .map(drop)
}

/// Replaces the service's inventory with `ids`; ids already listed keep their
/// `listed_at`. Returns (added, removed).
pub fn replace_inventory(
    c: &mut Conn<'_>,
    service: &str,
    ids: &HashSet<String>,
    now: i64,
) -> QueryResult<(usize, usize)> {
    let old: HashSet<String> = on_backend!(c, c => inventory::table
        .filter(inventory::service.eq(service))
        .select(inventory::node_id)
        .load::<String>(c))?
    .into_iter()
    .collect();
    let gone: Vec<&String> = old.difference(ids).collect();
    let new: Vec<(String, String, i64)> = ids
        .difference(&old)
        .map(|n| (service.to_owned(), n.clone(), now))
        .collect();
    for chunk in gone.chunks(500) {
        on_backend!(c, c => diesel::delete(
            inventory::table.filter(inventory::service.eq(service)).filter(inventory::node_id.eq_any(chunk)),
        )
        .execute(c))?;
    }
    for chunk in new.chunks(300) {
        let rows: Vec<_> = chunk
            .iter()
            .map(|(s, n, t)| {
                (
                    inventory::service.eq(s),
                    inventory::node_id.eq(n),
                    inventory::listed_at.eq(*t),
                )
            })
            .collect();
        on_backend!(c, c => diesel::insert_into(inventory::table).values(&rows).execute(c))?;
    }
    Ok((new.len(), gone.len()))
}

/// Number of ids in the service's inventory.
pub fn listed_count(c: &mut Conn<'_>, service: &str) -> QueryResult<i64> {
    on_backend!(c, c => inventory::table.filter(inventory::service.eq(service)).count().get_result(c))
}

/// Inventory entries of `service` without an enrolled node: (node id, listed since).
pub fn never_enrolled(c: &mut Conn<'_>, service: &str) -> QueryResult<Vec<(String, i64)>> {
    use diesel::dsl::{exists, not};
    on_backend!(c, c => inventory::table
        .filter(inventory::service.eq(service))
        .filter(not(exists(
            nodes::table
                .filter(nodes::service.eq(inventory::service))
                .filter(nodes::node_id.eq(inventory::node_id)),
        )))
        .order(inventory::node_id)
        .select((inventory::node_id, inventory::listed_at))
        .load(c))
}

/// Enrolled nodes of `service` the inventory does not list.
pub fn not_in_inventory(c: &mut Conn<'_>, service: &str) -> QueryResult<Vec<String>> {
    use diesel::dsl::{exists, not};
    on_backend!(c, c => nodes::table
        .filter(nodes::service.eq(service))
        .filter(not(exists(
            inventory::table
                .filter(inventory::service.eq(nodes::service))
                .filter(inventory::node_id.eq(nodes::node_id)),
        )))
        .order(nodes::node_id)
        .select(nodes::node_id)
        .load(c))
}

/// Never-enrolled counts of every service that has an inventory, or only of the
/// services in `only`.
pub fn never_enrolled_counts(
    c: &mut Conn<'_>,
    only: Option<&[String]>,
) -> QueryResult<Vec<(String, i64)>> {
    use diesel::dsl::{count_star, exists, not};
    on_backend!(c, c => {
        let mut q = inventory::table
            .filter(not(exists(
                nodes::table
                    .filter(nodes::service.eq(inventory::service))
                    .filter(nodes::node_id.eq(inventory::node_id)),
            )))
            .group_by(inventory::service)
            .select((inventory::service, count_star()))
            .into_boxed();
        if let Some(names) = only {
            q = q.filter(inventory::service.eq_any(names));
        }
        q.load(c)
    })
}

/// The ETags last imported for a node ("<cert> <key>").
pub fn imported_etags(
    c: &mut Conn<'_>,
    service: &str,
    node_id: &str,
) -> QueryResult<Option<String>> {
    on_backend!(c, c => imported_objects::table
        .find((service, node_id))
        .select(imported_objects::etags)
        .first(c)
        .optional())
}

pub fn record_import(
    c: &mut Conn<'_>,
    service: &str,
    node_id: &str,
    etags: &str,
    version: i64,
    now: i64,
) -> QueryResult<()> {
    let target = imported_objects::table.find((service, node_id));
    let set = (
        imported_objects::etags.eq(etags),
        imported_objects::version.eq(version),
        imported_objects::imported_at.eq(now),
    );
    let n = on_backend!(c, c => diesel::update(target).set(set).execute(c))?;
    if n == 0 {
        on_backend!(c, c => diesel::insert_into(imported_objects::table)
            .values((imported_objects::service.eq(service), imported_objects::node_id.eq(node_id), set))
            .execute(c))?;
    }
    Ok(())
}
