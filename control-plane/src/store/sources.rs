//! `sources`: dynamic metadata sources, a customer URL per service (or a URL template
//! per node) whose JSON answer becomes one metadata key. Request headers are stored
//! sealed with the master key; only their names are kept in clear. What was fetched,
//! and when to fetch next, is in `source_fetches`.

use super::schema::sources;
use super::{Conn, on_backend};
use diesel::prelude::*;

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = sources)]
pub struct SourceRow {
    pub service: String,
    pub name: String,
    /// The metadata key the value is delivered as.
    pub key: String,
    /// `service` | `node`.
    pub scope: String,
    /// Node scope: a template with `{node}`.
    pub url: String,
    pub interval_seconds: i64,
    /// JSON array of header names.
    pub header_names: String,
    /// nonce || AES-256-GCM(JSON object of the headers), associated data [`aad`].
    pub headers_sealed: Vec<u8>,
    pub key_id: String,
    pub created_at: i64,
    /// Changes with every PUT: a fetch started before it does not record its answer.
    pub updated_at: i64,
}

impl SourceRow {
    pub fn is_node_scope(&self) -> bool {
        self.scope == "node"
    }

    /// The header names, as stored.
    pub fn header_names(&self) -> Vec<String> {
        serde_json::from_str(&self.header_names).unwrap_or_default()
    }
}

/// Associated data of a source's sealed headers: a blob copied to another source does
/// not open.
pub fn aad(service: &str, name: &str) -> String {
    format!("source/{service}/{name}")
}

pub fn get(c: &mut Conn<'_>, service: &str, name: &str) -> QueryResult<Option<SourceRow>> {
    on_backend!(c, c => sources::table
        .find((service, name))
        .select(SourceRow::as_select())
        .first(c)
        .optional())
}

/// The source of `service` writing `key`, if any.
pub fn by_key(c: &mut Conn<'_>, service: &str, key: &str) -> QueryResult<Option<SourceRow>> {
    on_backend!(c, c => sources::table
        .filter(sources::service.eq(service))
        .filter(sources::key.eq(key))
        .select(SourceRow::as_select())
        .first(c)
        .optional())
}

/// A service's sources, by name.
pub fn list(c: &mut Conn<'_>, service: &str) -> QueryResult<Vec<SourceRow>> {
    on_backend!(c, c => sources::table
        .filter(sources::service.eq(service))
        .order(sources::name)
        .select(SourceRow::as_select())
        .load(c))
}

pub fn insert(c: &mut Conn<'_>, row: &SourceRow) -> QueryResult<()> {
    on_backend!(c, c => diesel::insert_into(sources::table).values(row).execute(c)).map(drop)
}

pub fn update(c: &mut Conn<'_>, row: &SourceRow) -> QueryResult<()> {
    on_backend!(c, c => diesel::update(sources::table.find((&row.service, &row.name)))
        .set(row)
        .execute(c))
    .map(drop)
}

/// Removes a source; whether it existed. Its fetch rows go with it.
pub fn delete(c: &mut Conn<'_>, service: &str, name: &str) -> QueryResult<bool> {
    super::source_fetches::delete_source(c, service, name)?;
    let n = on_backend!(c, c => diesel::delete(sources::table.find((service, name))).execute(c))?;
    Ok(n > 0)
}
