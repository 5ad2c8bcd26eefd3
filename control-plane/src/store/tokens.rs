//! `api_tokens`: bearer tokens of admins (tenant NULL) and tenants, stored as SHA-256,
//! each with a name (unique per tenant), a role and an optional expiry.

use super::schema::api_tokens;
use super::{Conn, on_backend};
use diesel::prelude::*;

/// Id of the admin token created on the database's first start.
pub const BOOTSTRAP_ADMIN_ID: &str = "bootstrap-admin";

/// The role of admin tokens and of every token made before roles existed.
pub const ADMIN_ROLE: &str = "admin";

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = api_tokens)]
pub struct ApiTokenRow {
    pub id: String,
    pub tenant: Option<String>,
    pub token_hash: String,
    pub description: String,
    pub created_at: i64,
    pub name: String,
    /// `read`, `deliver` or `admin` (checked by the table); admin tokens are `admin`.
    pub role: String,
    /// Unix milliseconds; `None`: never expires.
    pub expires_at: Option<i64>,
}

impl ApiTokenRow {
    pub fn expired(&self, now_ms: i64) -> bool {
        self.expires_at.is_some_and(|at| at <= now_ms)
    }
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

/// One page of a tenant's tokens in name order, after the name `after`.
pub fn list(
    c: &mut Conn<'_>,
    tenant: &str,
    after: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<ApiTokenRow>> {
    let (tenant, after) = (tenant.to_owned(), after.unwrap_or("").to_owned());
    on_backend!(c, c => api_tokens::table
        .filter(api_tokens::tenant.eq(&tenant))
        .filter(api_tokens::name.gt(&after))
        .order(api_tokens::name)
        .limit(limit)
        .select(ApiTokenRow::as_select())
        .load(c))
}

/// Deletes the tenant's token called `name`, returning it (its sessions and requests
/// are refused from the next request on: every request looks the token up).
pub fn delete_by_name(
    c: &mut Conn<'_>,
    tenant: &str,
    name: &str,
) -> QueryResult<Option<ApiTokenRow>> {
    let (tenant, name) = (tenant.to_owned(), name.to_owned());
    let row: Option<ApiTokenRow> = on_backend!(c, c => api_tokens::table
        .filter(api_tokens::tenant.eq(&tenant))
        .filter(api_tokens::name.eq(&name))
        .select(ApiTokenRow::as_select())
        .first(c)
        .optional())?;
    if let Some(r) = &row {
        let id = r.id.clone();
        on_backend!(c, c => diesel::delete(api_tokens::table.find(&id)).execute(c))?;
    }
    Ok(row)
}
