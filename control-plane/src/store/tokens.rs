//! `api_tokens`: bearer tokens of admins (tenant NULL) and tenants, stored as SHA-256.

use super::schema::api_tokens;
use super::{Conn, on_backend};
use diesel::prelude::*;

/// Id of the admin token created on the database's first start.
pub const BOOTSTRAP_ADMIN_ID: &str = "bootstrap-admin";

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = api_tokens)]
pub struct ApiTokenRow {
    pub id: String,
    pub tenant: Option<String>,
    pub token_hash: String,
    pub description: String,
    pub created_at: i64,
}

pub fn insert(c: &mut Conn<'_>, row: &ApiTokenRow) -> QueryResult<()> {
    on_backend!(c, c => diesel::insert_into(api_tokens::table).values(row).execute(c)).map(drop)
}

pub fn find_by_hash(c: &mut Conn<'_>, hash: &str) -> QueryResult<Option<ApiTokenRow>> {
    on_backend!(c, c => api_tokens::table
        .filter(api_tokens::token_hash.eq(hash))
        .select(ApiTokenRow::as_select())
        .first(c)
        .optional())
}

pub fn exists(c: &mut Conn<'_>, id: &str) -> QueryResult<bool> {
    on_backend!(c, c => api_tokens::table.find(id).count().get_result::<i64>(c)).map(|n| n > 0)
}
