//! `bundles`: the current desired bundle of each node, its key sealed at rest.

use super::schema::bundles;
use super::{Conn, on_backend};
use diesel::prelude::*;

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = bundles, treat_none_as_null = true)]
pub struct BundleRow {
    pub service: String,
    pub node_id: String,
    pub version: i64,
    pub content_hash: String,
    pub cert_pem: String,
    pub chain_pem: String,
    pub key_sealed: Option<Vec<u8>>,
    pub key_id: Option<String>,
    pub not_after: Option<i64>,
    pub csr_required: bool,
    pub metadata: String,
    pub created_at: i64,
}

pub fn get(c: &mut Conn<'_>, service: &str, node_id: &str) -> QueryResult<Option<BundleRow>> {
    on_backend!(c, c => bundles::table.find((service, node_id)).select(BundleRow::as_select()).first(c).optional())
}

/// Replaces (or inserts) the bundles of many nodes: on PostgreSQL one statement per
/// 500 rows; on SQLite (whose multi-row insert diesel cannot combine with an upsert,
/// and whose statements cost no round trip) one upsert per row.
pub fn put_many(c: &mut Conn<'_>, rows: &[BundleRow]) -> QueryResult<()> {
    use diesel::upsert::excluded;
    macro_rules! set {
        () => {
            (
                bundles::version.eq(excluded(bundles::version)),
                bundles::content_hash.eq(excluded(bundles::content_hash)),
                bundles::cert_pem.eq(excluded(bundles::cert_pem)),
                bundles::chain_pem.eq(excluded(bundles::chain_pem)),
                bundles::key_sealed.eq(excluded(bundles::key_sealed)),
                bundles::key_id.eq(excluded(bundles::key_id)),
                bundles::not_after.eq(excluded(bundles::not_after)),
                bundles::csr_required.eq(excluded(bundles::csr_required)),
                bundles::metadata.eq(excluded(bundles::metadata)),
                bundles::created_at.eq(excluded(bundles::created_at)),
            )
        };
    }
    match c {
        Conn::Pg(c) => {
            for chunk in rows.chunks(500) {
                diesel::insert_into(bundles::table)
                    .values(chunk)
                    .on_conflict((bundles::service, bundles::node_id))
                    .do_update()
                    .set(set!())
                    .execute(*c)?;
            }
        }
        Conn::Sqlite(c) => {
            for row in rows {
                diesel::insert_into(bundles::table)
                    .values(row)
                    .on_conflict((bundles::service, bundles::node_id))
                    .do_update()
                    .set(set!())
                    .execute(*c)?;
            }
        }
    }
    Ok(())
}

/// Replaces the node's bundle (insert the first time).
pub fn put(c: &mut Conn<'_>, row: &BundleRow) -> QueryResult<()> {
    let updated = on_backend!(c, c => diesel::update(bundles::table.find((&row.service, &row.node_id)))
        .set(row)
        .execute(c))?;
    if updated == 0 {
        on_backend!(c, c => diesel::insert_into(bundles::table).values(row).execute(c))?;
    }
    Ok(())
}
