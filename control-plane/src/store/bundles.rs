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
