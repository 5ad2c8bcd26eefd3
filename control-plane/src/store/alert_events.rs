//! `alert_events`: the webhook outbox. Rows are written in the transaction that fires
//! or resolves the alert, claimed with a lease by one sender at a time, and marked
//! delivered after a 2xx. Per service, only the oldest open event is sent, so a
//! `resolved` never overtakes its `firing`.

use super::schema::alert_events;
use super::{Conn, on_backend};
use diesel::prelude::*;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = alert_events)]
pub struct EventRow {
    pub id: String,
    pub alert_id: String,
    pub service: String,
    pub payload: String,
    pub created_at: i64,
    pub attempts: i32,
    pub next_attempt_at: i64,
    pub lease_until: Option<i64>,
    pub delivered_at: Option<i64>,
    pub last_error: Option<String>,
}

pub fn insert(c: &mut Conn<'_>, row: &EventRow) -> QueryResult<()> {
    on_backend!(c, c => diesel::insert_into(alert_events::table).values(row).execute(c)).map(drop)
}

/// Claims up to `limit` due events, at most one per service (its oldest open one), for
/// `lease_ms`. Rows another replica is claiming right now are skipped (PostgreSQL).
pub fn claim_due(
    c: &mut Conn<'_>,
    now: i64,
    lease_ms: i64,
    limit: i64,
) -> QueryResult<Vec<EventRow>> {
    // The oldest open event of each service with anything open.
    let heads: Vec<(String, Option<i64>)> = on_backend!(c, c => alert_events::table
        .filter(alert_events::delivered_at.is_null())
        .group_by(alert_events::service)
        .select((alert_events::service, diesel::dsl::min(alert_events::created_at)))
        .limit(limit)
        .load(c))?;
    let mut claimed = Vec::new();
    for (service, oldest) in heads {
        let Some(oldest) = oldest else { continue };
        macro_rules! head {
            () => {
                alert_events::table
                    .filter(alert_events::service.eq(&service))
                    .filter(alert_events::created_at.eq(oldest))
                    .filter(alert_events::delivered_at.is_null())
                    .filter(alert_events::next_attempt_at.le(now))
                    .filter(
                        alert_events::lease_until
                            .is_null()
                            .or(alert_events::lease_until.lt(now)),
                    )
                    .order(alert_events::id)
                    .limit(1)
                    .select(EventRow::as_select())
            };
        }
        let row: Option<EventRow> = match c {
            Conn::Pg(c) => head!().for_update().skip_locked().first(*c).optional()?,
            Conn::Sqlite(c) => head!().first(*c).optional()?,
        };
        if let Some(mut row) = row {
            row.lease_until = Some(now + lease_ms);
            on_backend!(c, c => diesel::update(alert_events::table.find(&row.id))
                .set(alert_events::lease_until.eq(row.lease_until))
                .execute(c))?;
            claimed.push(row);
        }
    }
    Ok(claimed)
}

pub fn mark_delivered(c: &mut Conn<'_>, id: &str, now: i64) -> QueryResult<()> {
    on_backend!(c, c => diesel::update(alert_events::table.find(id))
        .set((alert_events::delivered_at.eq(Some(now)), alert_events::lease_until.eq(None::<i64>)))
        .execute(c))
    .map(drop)
}

pub fn mark_failed(
    c: &mut Conn<'_>,
    id: &str,
    attempts: i32,
    next_attempt_at: i64,
    error: &str,
) -> QueryResult<()> {
    on_backend!(c, c => diesel::update(alert_events::table.find(id))
        .set((
            alert_events::attempts.eq(attempts),
            alert_events::next_attempt_at.eq(next_attempt_at),
            alert_events::lease_until.eq(None::<i64>),
            alert_events::last_error.eq(Some(error)),
        ))
        .execute(c))
    .map(drop)
}
