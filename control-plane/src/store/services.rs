//! `services`: what customers onboard. Names are unique in the trust domain because
//! they appear in node identities; visibility is scoped by `tenant`. Deleting a
//! service removes its history too, so whoever re-creates the name starts empty.

use super::schema::{alert_events, alerts, deliveries, services};
use super::{Conn, on_backend};
use diesel::prelude::*;

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = services, treat_none_as_null = true)]
pub struct ServiceRow {
    pub name: String,
    pub tenant: String,
    pub cert_ttl_seconds: i64,
    pub renew_before_seconds: i64,
    pub key_type: String,
    pub key_mode: String,
    pub stale_after_seconds: i64,
    pub grace_seconds: i64,
    pub alert_before_seconds: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub san_template: String,
    pub webhook_url: Option<String>,
    pub webhook_secret_sealed: Option<Vec<u8>>,
    pub webhook_key_id: Option<String>,
    /// JSON array of the DNS suffixes an admin allowed (None: the service's subtree).
    pub dns_suffixes: Option<String>,
    pub wildcard_names: bool,
    /// JSON array of the IP networks an admin allowed as IP SANs (None: no IP).
    pub ip_ranges: Option<String>,
}

impl ServiceRow {
    /// The admin's DNS suffixes, if any were set.
    pub fn dns_suffix_list(&self) -> Option<Vec<String>> {
        self.dns_suffixes
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok())
    }

    /// The admin's IP networks (none when unset; a stored entry that does not parse
    /// allows nothing).
    pub fn ip_range_list(&self) -> Vec<ipnet::IpNet> {
        self.ip_ranges
            .as_deref()
            .and_then(|s| serde_json::from_str::<Vec<String>>(s).ok())
            .unwrap_or_default()
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect()
    }
}

pub fn insert(c: &mut Conn<'_>, row: &ServiceRow) -> QueryResult<()> {
    on_backend!(c, c => diesel::insert_into(services::table).values(row).execute(c)).map(drop)
}

/// The service, if it exists and `tenant` (None: admin) may see it.
pub fn get(c: &mut Conn<'_>, name: &str, tenant: Option<&str>) -> QueryResult<Option<ServiceRow>> {
    let row: Option<ServiceRow> = on_backend!(c, c => services::table.find(name).select(ServiceRow::as_select()).first(c).optional())?;
    Ok(row.filter(|r| tenant.is_none_or(|t| r.tenant == t)))
}

/// Services visible to `tenant` (None: all), ordered by name, after `after`.
pub fn list(
    c: &mut Conn<'_>,
    tenant: Option<&str>,
    after: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<ServiceRow>> {
    let after = after.unwrap_or("").to_owned();
    match tenant {
        Some(t) => {
            let t = t.to_owned();
            on_backend!(c, c => services::table
                .filter(services::tenant.eq(&t))
                .filter(services::name.gt(&after))
                .order(services::name)
                .limit(limit)
                .select(ServiceRow::as_select())
                .load(c))
        }
        None => on_backend!(c, c => services::table
            .filter(services::name.gt(&after))
            .order(services::name)
            .limit(limit)
            .select(ServiceRow::as_select())
            .load(c)),
    }
}

pub fn update(c: &mut Conn<'_>, row: &ServiceRow) -> QueryResult<()> {
    on_backend!(c, c => diesel::update(services::table.find(&row.name)).set(row).execute(c))
        .map(drop)
}

/// Removes a service and everything recorded under its name. Nodes, bundles, tokens,
/// metadata, sources, rotations and imports go by `ON DELETE CASCADE`; alerts, their
/// queued webhook events and deliveries carry the name without a foreign key (they
/// outlive nodes on purpose), so they are removed here, in the caller's transaction,
/// before the name can be taken again.
pub fn delete(c: &mut Conn<'_>, name: &str) -> QueryResult<usize> {
    on_backend!(c, c => diesel::delete(alert_events::table.filter(alert_events::service.eq(name))).execute(c))?;
    on_backend!(c, c => diesel::delete(alerts::table.filter(alerts::service.eq(name))).execute(c))?;
    on_backend!(c, c => diesel::delete(deliveries::table.filter(deliveries::service.eq(name))).execute(c))?;
    on_backend!(c, c => diesel::delete(services::table.find(name)).execute(c))
}

/// A service's alert webhook as stored.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub service: String,
    pub url: String,
    pub secret_sealed: Vec<u8>,
    pub key_id: String,
}

type WebhookColumns = (String, Option<String>, Option<Vec<u8>>, Option<String>);

/// Services with a webhook.
pub fn with_webhooks(c: &mut Conn<'_>) -> QueryResult<Vec<Webhook>> {
    let rows: Vec<WebhookColumns> = on_backend!(c, c => services::table
        .filter(services::webhook_url.is_not_null())
        .select((services::name, services::webhook_url, services::webhook_secret_sealed, services::webhook_key_id))
        .load(c))?;
    Ok(rows
        .into_iter()
        .filter_map(|(service, u, s, k)| {
            Some(Webhook {
                service,
                url: u?,
                secret_sealed: s?,
                key_id: k?,
            })
        })
        .collect())
}

/// Whether a service's name starts with `prefix` (service names are DNS labels, so
/// they hold none of LIKE's wildcards).
pub fn any_named_with_prefix(c: &mut Conn<'_>, prefix: &str) -> QueryResult<bool> {
    let pattern = format!("{prefix}%");
    let n: i64 = on_backend!(c, c => services::table
        .filter(services::name.like(&pattern))
        .count()
        .get_result(c))?;
    Ok(n > 0)
}
