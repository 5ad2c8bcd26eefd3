//! Services (create, list, get, update, delete) and their join tokens.
//! A tenant sees only its own services: another tenant's service is a 404, and it
//! creates names only in its own namespace (`namespace.rs`), so a create never tells
//! it whether another tenant holds a name.

use super::error::conflict_if_taken;
use super::extract::{ApiJson, ApiPath, ApiQuery, Caller, PageQuery, page};
use super::openapi as doc;
use super::{ApiError, AppState, new_id, new_secret};
use crate::ca::names;
use crate::service_rules;
use crate::store::{self, audit, join_tokens::JoinTokenRow, services::ServiceRow};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use ferry_shared::api::{
    CreateJoinTokenRequest, CreateServiceRequest, JoinTokenCreated, Page, Service, ServiceSettings,
};
use ferry_shared::hash::sha256_hex;
use ferry_shared::{KeyMode, KeyType, ServiceName, TenantName};

const MAX_JOIN_TOKEN_TTL: u64 = 30 * 86400;

pub fn to_api(r: ServiceRow) -> Result<Service, ApiError> {
    let bad = |e: ferry_shared::NameError| {
        ApiError::Internal(anyhow::anyhow!("stored service {}: {e}", r.name))
    };
    Ok(Service {
        name: ServiceName::parse(&r.name).map_err(bad)?,
        tenant: TenantName::parse(&r.tenant).map_err(bad)?,
        cert_ttl_seconds: r.cert_ttl_seconds as u64,
        renew_before_seconds: r.renew_before_seconds as u64,
        key_type: r.key_type.parse::<KeyType>().map_err(bad)?,
        key_mode: r.key_mode.parse::<KeyMode>().map_err(bad)?,
        stale_after_seconds: r.stale_after_seconds as u64,
        grace_seconds: r.grace_seconds as u64,
        alert_before_seconds: r.alert_before_seconds as u64,
        san_template: r.san_template.clone(),
        dns_suffixes: r.dns_suffix_list().unwrap_or_default(),
        wildcard_names: r.wildcard_names,
        ip_ranges: r.ip_range_list().iter().map(ToString::to_string).collect(),
        created_at: store::from_ms(r.created_at),
        updated_at: store::from_ms(r.updated_at),
    })
}

/// Applies `s` over `row` (defaults derive from the TTL when not set) and validates,
/// including that the SAN template renders only to names the service may use.
fn apply_settings(
    state: &AppState,
    caller: &Caller,
    row: &mut ServiceRow,
    s: &ServiceSettings,
    creating: bool,
) -> Result<(), ApiError> {
    let invalid = |d: String| ApiError::unprocessable("invalid-settings", d);
    apply_name_policy(caller, row, s)?;
    if let Some(ttl) = s.cert_ttl_seconds {
        row.cert_ttl_seconds = ttl.min(i64::MAX as u64) as i64;
    }
    let ttl = row.cert_ttl_seconds;
    let derived = |v: Option<u64>, default: i64| v.map(|x| x as i64).unwrap_or(default);
    row.renew_before_seconds = derived(
        s.renew_before_seconds,
        if creating {
            ttl / 3
        } else {
            row.renew_before_seconds
        },
    );
    row.alert_before_seconds = derived(
        s.alert_before_seconds,
        if creating {
            row.renew_before_seconds / 2
        } else {
            row.alert_before_seconds
        },
    );
    row.stale_after_seconds = derived(s.stale_after_seconds, row.stale_after_seconds);
    row.grace_seconds = derived(s.grace_seconds, row.grace_seconds);
    if let Some(k) = s.key_type {
        row.key_type = k.to_string();
    }
    if let Some(m) = s.key_mode {
        row.key_mode = m.to_string();
    }
    if let Some(t) = &s.san_template {
        if !crate::ca::leaf::template_is_valid(t) {
            return Err(invalid(format!(
                "san_template {t:?} does not render to DNS names or IP addresses (placeholders: {{node}}, {{service}}, {{trust_domain}})"
            )));
        }
        row.san_template = t.clone();
    }
    let wait = state.max_poll_wait.as_secs() as i64;
    service_rules::check(row, wait).map_err(|v| {
        ApiError::unprocessable("invalid-settings", format!("{} ({})", v.detail, v.rule))
    })?;
    check_names(state, row)?;
    Ok(())
}

/// `dns_suffixes`, `wildcard_names` and `ip_ranges` decide which names a tenant's
/// certificates carry, so only the deployment admin sets them.
fn apply_name_policy(
    caller: &Caller,
    row: &mut ServiceRow,
    s: &ServiceSettings,
) -> Result<(), ApiError> {
    if s.dns_suffixes.is_none() && s.wildcard_names.is_none() && s.ip_ranges.is_none() {
        return Ok(());
    }
    if caller.tenant.is_some() {
        return Err(ApiError::forbidden(
            "dns_suffixes, wildcard_names and ip_ranges are set by the deployment admin only",
        ));
    }
    if let Some(list) = &s.ip_ranges {
        let mut nets = Vec::new();
        for n in list {
            let net = names::parse_ip_range(n).map_err(|e| {
                ApiError::unprocessable("invalid-settings", format!("ip_ranges: {e}"))
            })?;
            nets.push(net.to_string());
        }
        row.ip_ranges = (!nets.is_empty())
            .then(|| serde_json::to_string(&nets).unwrap_or_else(|_| "[]".into()));
    }
    if let Some(list) = &s.dns_suffixes {
        if let Some(bad) = list.iter().find(|x| !names::suffix_is_valid(x)) {
            return Err(ApiError::unprocessable(
                "invalid-settings",
                format!("dns_suffixes: {bad:?} is not a DNS name of two labels or more"),
            ));
        }
        let list: Vec<String> = list.iter().map(|x| names::normalize_suffix(x)).collect();
        row.dns_suffixes = (!list.is_empty())
            .then(|| serde_json::to_string(&list).unwrap_or_else(|_| "[]".into()));
    }
    if let Some(w) = s.wildcard_names {
        row.wildcard_names = w;
    }
    Ok(())
}

/// The template, rendered for a sample node, names only what the policy allows (each
/// real node's names are checked again when its certificate is issued).
fn check_names(state: &AppState, row: &ServiceRow) -> Result<(), ApiError> {
    let sample = ferry_shared::SpiffeId {
        trust_domain: state.trust_domain.clone(),
        service: ServiceName::parse(&row.name)?,
        node: ferry_shared::NodeId::parse("node-1")?,
    };
    let policy = crate::delivery::issue::name_policy(row, &state.trust_domain, &state.server_names);
    names::render_checked(&row.san_template, &sample, &policy)
        .map(drop)
        .map_err(|e| ApiError::unprocessable("name-not-allowed", format!("san_template: {e}")))
}

/// The service if the caller may see it, else 404 (never 403: existence is not leaked).
pub async fn visible(
    state: &AppState,
    caller: &Caller,
    name: &str,
) -> Result<ServiceRow, ApiError> {
    let svc = ServiceName::parse(name)?.to_string();
    let scope = caller.tenant.clone();
    state
        .store
        .read(move |c| store::services::get(c, &svc, scope.as_deref()))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("service {name}")))
}

#[utoipa::path(
    post,
    path = "/v1/services",
    tag = "services",
    operation_id = "createService",
    summary = "Create a service.",
    request_body = CreateServiceRequest,
    responses(
        (status = 201, description = "Created.", body = Service),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
        (status = 404, response = doc::NotFound),
        (status = 409, response = doc::Conflict),
        (status = 422, response = doc::Unprocessable),
    ),
    security(("bearer" = [])),
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateServiceRequest>,
) -> Result<(StatusCode, Json<Service>), ApiError> {
    let tenant = match (&caller.tenant, req.tenant) {
        (Some(own), None) => own.clone(),
        (Some(own), Some(t)) if t.as_str() == own => own.clone(),
        (Some(_), Some(_)) => {
            return Err(ApiError::forbidden(
                "a tenant token creates services in its own tenant only",
            ));
        }
        (None, t) => t
            .map(|t| t.to_string())
            .unwrap_or_else(|| store::tenants::DEFAULT_TENANT.to_owned()),
    };
    if let Some(own) = &caller.tenant {
        super::namespace::check_tenant_caller(own, req.name.as_str())?;
    }
    let now = store::now_ms();
    let mut row = ServiceRow {
        name: req.name.to_string(),
        tenant,
        cert_ttl_seconds: 3600,
        renew_before_seconds: 0,
        key_type: KeyType::EcdsaP256.to_string(),
        key_mode: KeyMode::Central.to_string(),
        stale_after_seconds: 165,
        grace_seconds: 120,
        alert_before_seconds: 0,
        created_at: now,
        updated_at: now,
        san_template: "{node}.{service}.{trust_domain}".into(),
        webhook_url: None,
        webhook_secret_sealed: None,
        webhook_key_id: None,
        dns_suffixes: None,
        wildcard_names: false,
        ip_ranges: None,
    };
    apply_settings(&state, &caller, &mut row, &req.settings, true)?;
    let entry = caller.audit(
        Some(&row.tenant),
        "service.create",
        &row.name,
        serde_json::to_value(&req.settings).unwrap_or_default(),
    );
    let inserted = row.clone();
    state
        .store
        .write(move |c| {
            if store::tenants::get(c, &inserted.tenant)?.is_none() {
                return Err(ApiError::not_found(format!("tenant {}", inserted.tenant)));
            }
            super::namespace::check_owner(c, &inserted.name, &inserted.tenant)?;
            store::services::insert(c, &inserted).map_err(|e| {
                conflict_if_taken(e, || format!("service name {} is taken", inserted.name))
            })?;
            audit::record(c, &entry).map_err(ApiError::from)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(to_api(row)?)))
}

#[utoipa::path(
    get,
    path = "/v1/services",
    tag = "services",
    operation_id = "listServices",
    summary = "List the services the caller can see.",
    params(PageQuery),
    responses(
        (status = 200, description = "One page of services.", body = Page<Service>),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
    ),
    security(("bearer" = [])),
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<Page<Service>>, ApiError> {
    let (limit, after) = (q.limit()?, q.after()?);
    let scope = caller.tenant.clone();
    let rows = state
        .store
        .read(move |c| store::services::list(c, scope.as_deref(), after.as_deref(), limit + 1))
        .await?;
    let p = page(rows, limit, |r| r.name.clone(), to_api);
    Ok(Json(Page {
        items: p.items.into_iter().collect::<Result<_, _>>()?,
        next_cursor: p.next_cursor,
    }))
}

#[utoipa::path(
    get,
    path = "/v1/services/{svc}",
    tag = "services",
    operation_id = "getService",
    summary = "Show a service.",
    params(doc::SvcPath),
    responses(
        (status = 200, description = "The service.", body = Service),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 404, response = doc::NotFound),
    ),
    security(("bearer" = [])),
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Service>, ApiError> {
    Ok(Json(to_api(visible(&state, &caller, &name).await?)?))
}

#[utoipa::path(
    patch,
    path = "/v1/services/{svc}",
    tag = "services",
    operation_id = "updateService",
    summary = "Change a service's settings (fields left out keep their value).",
    params(doc::SvcPath),
    request_body = ServiceSettings,
    responses(
        (status = 200, description = "The updated service.", body = Service),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 404, response = doc::NotFound),
        (status = 422, response = doc::Unprocessable),
    ),
    security(("bearer" = [])),
)]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
    ApiJson(settings): ApiJson<ServiceSettings>,
) -> Result<Json<Service>, ApiError> {
    let mut row = visible(&state, &caller, &name).await?;
    apply_settings(&state, &caller, &mut row, &settings, false)?;
    row.updated_at = store::now_ms();
    let entry = caller.audit(
        Some(&row.tenant),
        "service.update",
        &row.name,
        serde_json::to_value(&settings).unwrap_or_default(),
    );
    let updated = row.clone();
    state
        .store
        .write(move |c| {
            store::services::update(c, &updated)?;
            // Bundles carry policy fields, kept per service in every replica's memory:
            // a service-wide wake drops them there.
            let mut changes = crate::delivery::Changes::default();
            changes.service(&updated.name);
            changes.notify_in_tx(c)?;
            audit::record(c, &entry).map_err(ApiError::from)?;
            Ok::<_, ApiError>(changes)
        })
        .await?
        .wake_local(&state.waiters);
    Ok(Json(to_api(row)?))
}

#[utoipa::path(
    delete,
    path = "/v1/services/{svc}",
    tag = "services",
    operation_id = "deleteService",
    summary = "Delete a service and everything under it.",
    params(doc::SvcPath),
    responses(
        (status = 204, description = "Deleted."),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 404, response = doc::NotFound),
    ),
    security(("bearer" = [])),
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let row = visible(&state, &caller, &name).await?;
    let entry = caller.audit(
        Some(&row.tenant),
        "service.delete",
        &row.name,
        serde_json::json!({}),
    );
    state
        .store
        .write(move |c| {
            store::services::delete(c, &row.name)?;
            // Its nodes are gone: held polls and node caches on every replica refuse them.
            let mut changes = crate::delivery::Changes::default();
            changes.service(&row.name);
            changes.notify_in_tx(c)?;
            audit::record(c, &entry).map_err(ApiError::from)?;
            Ok::<_, ApiError>(changes)
        })
        .await?
        .wake_local(&state.waiters);
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/v1/services/{svc}/join-tokens",
    tag = "services",
    operation_id = "createJoinToken",
    summary = "Create a join token for enrolling nodes; the secret is shown once.",
    params(doc::SvcPath),
    request_body = CreateJoinTokenRequest,
    responses(
        (status = 201, description = "Created; `token` is shown only now.", body = JoinTokenCreated),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 404, response = doc::NotFound),
        (status = 422, response = doc::Unprocessable),
    ),
    security(("bearer" = [])),
)]
pub async fn create_join_token(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<CreateJoinTokenRequest>,
) -> Result<(StatusCode, Json<JoinTokenCreated>), ApiError> {
    let svc = visible(&state, &caller, &name).await?;
    let ttl = req.ttl_seconds.unwrap_or(3600);
    let max_uses = req.max_uses.unwrap_or(1);
    if !(1..=MAX_JOIN_TOKEN_TTL).contains(&ttl) {
        return Err(ApiError::unprocessable(
            "invalid-settings",
            format!("ttl_seconds must be 1..={MAX_JOIN_TOKEN_TTL}"),
        ));
    }
    if !(1..=1_000_000).contains(&max_uses) {
        return Err(ApiError::unprocessable(
            "invalid-settings",
            "max_uses must be 1..=1000000",
        ));
    }
    let token = new_secret("fyj_")?;
    let now = store::now_ms();
    let row = JoinTokenRow {
        id: new_id()?,
        service: svc.name.clone(),
        token_hash: sha256_hex(token.as_bytes()),
        expires_at: now + (ttl as i64) * 1000,
        max_uses: max_uses as i32,
        uses: 0,
        created_at: now,
        replaces_nodes: req.replaces_nodes,
    };
    let expires_at = store::from_ms(row.expires_at);
    let entry = caller.audit(
        Some(&svc.tenant),
        "join-token.create",
        &format!("{}/join-token:{}", svc.name, row.id),
        serde_json::json!({ "ttl_seconds": ttl, "max_uses": max_uses, "replaces_nodes": req.replaces_nodes }),
    );
    state
        .store
        .write(move |c| {
            store::join_tokens::insert(c, &row)?;
            audit::record(c, &entry).map_err(ApiError::from)
        })
        .await?;
    let body = JoinTokenCreated {
        token,
        ca_fingerprint: state.control_plane_ca.fingerprint(),
        expires_at,
        max_uses,
    };
    Ok((StatusCode::CREATED, Json(body)))
}
