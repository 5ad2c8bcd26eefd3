//! `audit_log`: one row per mutating call, written in the same transaction as the change.

use super::schema::audit_log;
use super::{Conn, on_backend};
use diesel::prelude::*;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = audit_log)]
pub struct AuditRow {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub tenant: Option<String>,
    pub action: String,
    pub target: String,
    pub detail: String,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = audit_log)]
pub struct NewAudit {
    pub at: i64,
    pub actor: String,
    pub tenant: Option<String>,
    pub action: String,
    pub target: String,
    pub detail: String,
}

pub fn record(c: &mut Conn<'_>, entry: &NewAudit) -> QueryResult<()> {
    on_backend!(c, c => diesel::insert_into(audit_log::table).values(entry).execute(c)).map(drop)
}

/// Many rows in few statements (a batch of enrollments).
pub fn record_many(c: &mut Conn<'_>, entries: &[NewAudit]) -> QueryResult<()> {
    for chunk in entries.chunks(500) {
        on_backend!(c, c => diesel::insert_into(audit_log::table).values(chunk).execute(c))?;
    }
    Ok(())
}

/// Newest first, before `before_id`.
pub fn list(c: &mut Conn<'_>, before_id: Option<i64>, limit: i64) -> QueryResult<Vec<AuditRow>> {
    let before = before_id.unwrap_or(i64::MAX);
    on_backend!(c, c => audit_log::table
        .filter(audit_log::id.lt(before))
        .order(audit_log::id.desc())
        .limit(limit)
        .select(AuditRow::as_select())
        .load(c))
}
