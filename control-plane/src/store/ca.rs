//! `cas`: one root CA per trust domain, its key sealed with the master key; and
//! `control_plane_cas`: the CA that signs only the control plane's server certificate.

use super::schema::{cas, control_plane_cas};
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

/// Which of the two CAs of a trust domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Signs node identities and delivered certificates.
    Root,
    /// Signs the control plane's server certificate and nothing else.
    ControlPlane,
}

/// The CA of `purpose` for `trust_domain`, if generated.
pub fn get_for(
    c: &mut Conn<'_>,
    purpose: Purpose,
    trust_domain: &str,
) -> QueryResult<Option<CaRow>> {
    match purpose {
        Purpose::Root => get(c, trust_domain),
        Purpose::ControlPlane => on_backend!(c, c => control_plane_cas::table
            .find(trust_domain)
            .select((
                control_plane_cas::trust_domain,
                control_plane_cas::cert_pem,
                control_plane_cas::key_ciphertext,
                control_plane_cas::key_id,
                control_plane_cas::created_at,
            ))
            .first::<(String, String, Vec<u8>, String, i64)>(c)
            .optional())
        .map(|r| {
            r.map(
                |(trust_domain, cert_pem, key_ciphertext, key_id, created_at)| CaRow {
                    trust_domain,
                    cert_pem,
                    key_ciphertext,
                    key_id,
                    created_at,
                },
            )
        }),
    }
}

/// Inserts the CA of `purpose` (a unique violation means another replica won the race).
pub fn insert_for(c: &mut Conn<'_>, purpose: Purpose, row: &CaRow) -> QueryResult<()> {
    match purpose {
        Purpose::Root => insert(c, row),
        Purpose::ControlPlane => on_backend!(c, c => diesel::insert_into(control_plane_cas::table)
            .values((
                control_plane_cas::trust_domain.eq(&row.trust_domain),
                control_plane_cas::cert_pem.eq(&row.cert_pem),
                control_plane_cas::key_ciphertext.eq(&row.key_ciphertext),
                control_plane_cas::key_id.eq(&row.key_id),
                control_plane_cas::created_at.eq(row.created_at),
            ))
            .execute(c))
        .map(drop),
    }
}
