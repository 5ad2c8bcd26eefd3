//! `tenants`: the owners of services. The `default` tenant exists from the first start.

use super::schema::tenants;
use super::{Conn, on_backend};
use diesel::prelude::*;

pub const DEFAULT_TENANT: &str = "default";

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = tenants)]
pub struct TenantRow {
    pub name: String,
    pub created_at: i64,
}

pub fn insert(c: &mut Conn<'_>, row: &TenantRow) -> QueryResult<()> {
    on_backend!(c, c => diesel::insert_into(tenants::table).values(row).execute(c)).map(drop)
}

pub fn get(c: &mut Conn<'_>, name: &str) -> QueryResult<Option<TenantRow>> {
    on_backend!(c, c => tenants::table.find(name).select(TenantRow::as_select()).first(c).optional())
}

/// Tenants ordered by name, after `cursor`.
pub fn list(c: &mut Conn<'_>, after: Option<&str>, limit: i64) -> QueryResult<Vec<TenantRow>> {
    let after = after.unwrap_or("").to_owned();
    on_backend!(c, c => tenants::table
        .filter(tenants::name.gt(&after))
        .order(tenants::name)
        .limit(limit)
        .select(TenantRow::as_select())
        .load(c))
}

/// Creates the default tenant unless it exists (first start, or a racing replica).
pub fn ensure_default(c: &mut Conn<'_>, now: i64) -> QueryResult<()> {
    if get(c, DEFAULT_TENANT)?.is_none() {
        insert(
            c,
            &TenantRow {
                name: DEFAULT_TENANT.into(),
                created_at: now,
            },
        )?;
    }
    Ok(())
}

/// Whether a tenant's name starts with `prefix` (a tenant whose namespace lies inside
/// another's).
pub fn any_named_with_prefix(c: &mut Conn<'_>, prefix: &str) -> QueryResult<bool> {
    let pattern = format!("{prefix}%");
    let n: i64 = on_backend!(c, c => tenants::table
        .filter(tenants::name.like(&pattern))
        .count()
        .get_result(c))?;
    Ok(n > 0)
}
