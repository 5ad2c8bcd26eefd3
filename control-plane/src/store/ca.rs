//! `cas`: one root CA per trust domain, its key sealed with the master key.

use super::schema::cas;
use super::{Conn, on_backend};
use diesel::prelude::*;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = cas)]
pub struct CaRow {
    pub trust_domain: String,
    pub cert_pem: String,
    pub key_ciphertext: Vec<u8>,
    pub key_id: String,
    pub created_at: i64,
}

pub fn get(c: &mut Conn<'_>, trust_domain: &str) -> QueryResult<Option<CaRow>> {
    on_backend!(c, c => cas::table.find(trust_domain).select(CaRow::as_select()).first(c).optional())
}

/// Inserts the CA; a replica that lost the first-start race gets a unique violation
/// and reads the winner's row instead.
pub fn insert(c: &mut Conn<'_>, row: &CaRow) -> QueryResult<()> {
    on_backend!(c, c => diesel::insert_into(cas::table).values(row).execute(c)).map(drop)
}
