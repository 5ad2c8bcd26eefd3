//! `rotations`: service-wide re-issues, paced by `max_in_flight`.

use super::schema::rotations;
use super::{Conn, on_backend};
use diesel::prelude::*;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = rotations)]
pub struct RotationRow {
    pub id: String,
    pub service: String,
    pub max_in_flight: i32,
    pub state: String,
    pub total: i64,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

pub fn insert(c: &mut Conn<'_>, row: &RotationRow) -> QueryResult<()> {
    on_backend!(c, c => diesel::insert_into(rotations::table).values(row).execute(c)).map(drop)
}

pub fn get(c: &mut Conn<'_>, id: &str) -> QueryResult<Option<RotationRow>> {
    on_backend!(c, c => rotations::table.find(id).select(RotationRow::as_select()).first(c).optional())
}

pub fn running(c: &mut Conn<'_>) -> QueryResult<Vec<RotationRow>> {
    on_backend!(c, c => rotations::table
        .filter(rotations::state.eq("running"))
        .order(rotations::created_at)
        .select(RotationRow::as_select())
        .load(c))
}

pub fn finish(c: &mut Conn<'_>, id: &str, now: i64) -> QueryResult<()> {
    on_backend!(c, c => diesel::update(rotations::table.find(id))
        .set((rotations::state.eq("done"), rotations::finished_at.eq(Some(now))))
        .execute(c))
    .map(drop)
}
