//! `join_tokens`: expiring, use-limited enrollment secrets, stored as SHA-256.

use super::schema::join_tokens;
use super::{Conn, on_backend};
use diesel::prelude::*;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = join_tokens)]
pub struct JoinTokenRow {
    pub id: String,
    pub service: String,
    pub token_hash: String,
    pub expires_at: i64,
    pub max_uses: i32,
    pub uses: i32,
    pub created_at: i64,
    /// May enroll over an existing node, replacing its identity and key.
    pub replaces_nodes: bool,
}

pub fn insert(c: &mut Conn<'_>, row: &JoinTokenRow) -> QueryResult<()> {
    on_backend!(c, c => diesel::insert_into(join_tokens::table).values(row).execute(c)).map(drop)
}

pub fn find_by_hash(c: &mut Conn<'_>, hash: &str) -> QueryResult<Option<JoinTokenRow>> {
    on_backend!(c, c => join_tokens::table
        .filter(join_tokens::token_hash.eq(hash))
        .select(JoinTokenRow::as_select())
        .first(c)
        .optional())
}

/// Spends one use of the token if it is still valid at `now`. The check and the
/// increment are one statement, so concurrent enrollments cannot overspend it.
pub fn consume(c: &mut Conn<'_>, id: &str, now: i64) -> QueryResult<bool> {
    on_backend!(c, c => diesel::update(
        join_tokens::table
            .find(id)
            .filter(join_tokens::uses.lt(join_tokens::max_uses))
            .filter(join_tokens::expires_at.gt(now)),
    )
    .set(join_tokens::uses.eq(join_tokens::uses + 1))
    .execute(c))
    .map(|n| n == 1)
}

/// The tokens of `ids`, locked until the transaction ends (PostgreSQL, in id order so
/// concurrent batches never wait on each other in a circle; SQLite's writer is alone).
pub fn lock(c: &mut Conn<'_>, ids: &[String]) -> QueryResult<Vec<JoinTokenRow>> {
    macro_rules! q {
        () => {
            join_tokens::table
                .filter(join_tokens::id.eq_any(ids))
                .order(join_tokens::id)
                .select(JoinTokenRow::as_select())
        };
    }
    match c {
        Conn::Pg(c) => q!().for_update().load(*c),
        Conn::Sqlite(c) => q!().load(*c),
    }
}

/// Spends `n` uses of a token locked by [`lock`] (the caller checked they are left).
pub fn add_uses(c: &mut Conn<'_>, id: &str, n: i32) -> QueryResult<()> {
    on_backend!(c, c => diesel::update(join_tokens::table.find(id))
        .set(join_tokens::uses.eq(join_tokens::uses + n))
        .execute(c))
    .map(drop)
}
