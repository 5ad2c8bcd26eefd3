//! Reads for the admin dashboard that no API route needs: the latest deliveries, a
//! signed-in admin's token still existing and its session not logged out, and each
//! running rotation's progress. Logout is the one write; every other number on the page
//! comes from the status summary.

use super::deliveries::DeliveryRow;
use super::rotations::RotationRow;
use super::schema::{api_tokens, deliveries, revoked_sessions};
use super::{Conn, on_backend};
use diesel::prelude::*;

/// The `limit` most recently created deliveries, newest first, across every service.
pub fn recent_deliveries(c: &mut Conn<'_>, limit: i64) -> QueryResult<Vec<DeliveryRow>> {
    on_backend!(c, c => deliveries::table
        .order((deliveries::created_at.desc(), deliveries::id.desc()))
        .limit(limit)
        .select(DeliveryRow::as_select())
        .load(c))
}

/// True when `id` names an admin token (no tenant) that still exists: a session outlives
/// neither its token's deletion nor a change of what the token is.
pub fn admin_token_exists(c: &mut Conn<'_>, id: &str) -> QueryResult<bool> {
    on_backend!(c, c => api_tokens::table
        .filter(api_tokens::id.eq(id))
        .filter(api_tokens::tenant.is_null())
        .count()
        .get_result::<i64>(c))
    .map(|n| n > 0)
}

/// True when the session whose cookie hashes to `session_hash` was logged out.
pub fn session_revoked(c: &mut Conn<'_>, session_hash: &str) -> QueryResult<bool> {
    on_backend!(c, c => revoked_sessions::table
        .find(session_hash)
        .count()
        .get_result::<i64>(c))
    .map(|n| n > 0)
}

/// Ends a session until `expires_at` (unix ms, when its cookie expires anyway), and
/// forgets sessions that have expired since (their cookies are refused by expiry).
pub fn revoke_session(
    c: &mut Conn<'_>,
    session_hash: &str,
    expires_at: i64,
    now: i64,
) -> QueryResult<()> {
    on_backend!(c, c => diesel::delete(revoked_sessions::table.filter(revoked_sessions::expires_at.le(now))).execute(c))?;
    if session_revoked(c, session_hash)? {
        return Ok(()); // logged out before
    }
    let inserted = on_backend!(c, c => diesel::insert_into(revoked_sessions::table)
        .values((
            revoked_sessions::session_hash.eq(session_hash),
            revoked_sessions::expires_at.eq(expires_at),
        ))
        .execute(c));
    match inserted {
        // Logged out twice at once (SQLite's one writer; on PostgreSQL the losing
        // transaction is aborted and that logout answers 500, the session still ended).
        Err(e) if super::is_unique_violation(&e) => Ok(()),
        other => other.map(drop),
    }
}

/// A running rotation with its deliveries counted by state.
#[derive(Debug, Clone)]
pub struct RotationProgress {
    pub rotation: RotationRow,
    pub queued: i64,
    pub pending: i64,
    pub delivered: i64,
    pub failed: i64,
    pub superseded: i64,
}

impl RotationProgress {
    /// Entries that reached an end state.
    pub fn finished(&self) -> i64 {
        self.delivered + self.failed + self.superseded
    }
}

/// Every running rotation, oldest first, with its progress.
pub fn running_rotations(c: &mut Conn<'_>) -> QueryResult<Vec<RotationProgress>> {
    let mut out = Vec::new();
    for rotation in super::rotations::running(c)? {
        let counts = super::deliveries::rotation_counts(c, &rotation.id)?;
        let get = |s: &str| counts.iter().find(|(k, _)| k == s).map_or(0, |(_, n)| *n);
        out.push(RotationProgress {
            queued: get("queued"),
            pending: get("pending"),
            delivered: get("delivered"),
            failed: get("failed"),
            superseded: get("superseded"),
            rotation,
        });
    }
    Ok(out)
}
