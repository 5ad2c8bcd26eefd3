//! What a service reads from customer storage, and certificates imported by hand:
//! `/v1/services/{svc}/inventory`, `/v1/services/{svc}/certificate-source` and
//! `PUT /v1/services/{svc}/nodes/{node}/certificate`. Settings are validated before
//! anything is written; the sync itself is `jobs::objects`.

use super::extract::{ApiJson, ApiPath, Caller};
use super::nodes::visible_node;
use super::openapi as doc;
use super::services::visible;
use super::{ApiError, AppState};
use crate::delivery::Changes;
use crate::objects::ObjectUrl;
use crate::store::{self, objects::CERTIFICATES, objects::INVENTORY, objects::SourceRow};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use ferry_shared::KeyMode;
use ferry_shared::objects::{
    ImportCertificateRequest, Imported, InventoryStatus, ObjectSource, PutCertificateSourceRequest,
    PutInventoryRequest,
};
use serde_json::json;

/// Ids listed in an inventory status, at most.
const SHOWN: usize = 1000;

fn bad(slug: &'static str, detail: impl Into<String>) -> ApiError {
    ApiError::unprocessable(slug, detail)
}

/// An inventory or certificate-source URL, parsed; control characters refused first
/// (the parser would accept some, and PostgreSQL text cannot hold NUL).
fn object_url(url: &str) -> Result<ObjectUrl, ApiError> {
    if url.chars().any(char::is_control) {
        return Err(bad(
            "invalid-object-source",
            "url contains control characters",
        ));
    }
    ObjectUrl::parse(url).map_err(|e| bad("invalid-object-source", e.to_string()))
}

fn bounded(
    v: Option<u64>,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
    name: &str,
) -> Result<i64, ApiError> {
    let v = v.unwrap_or(default);
    if !range.contains(&v) {
        return Err(bad(
            "invalid-object-source",
            format!("{name} must be {}..={}", range.start(), range.end()),
        ));
    }
    Ok(v as i64)
}

fn view(r: &SourceRow) -> ObjectSource {
    ObjectSource {
        url: r.url.clone(),
        policy: r.policy.clone(),
        interval_seconds: r.interval_seconds as u64,
        grace_seconds: r.grace_seconds as u64,
        synced_at: r.synced_at.map(store::from_ms),
        next_sync_at: store::from_ms(r.next_sync_at),
        last_error: r.last_error.clone(),
    }
}

async fn save(
    state: &AppState,
    caller: &Caller,
    tenant: &str,
    row: SourceRow,
) -> Result<Json<ObjectSource>, ApiError> {
    let entry = caller.audit(
        Some(tenant),
        &format!("{}.put", row.kind),
        &row.service,
        json!({ "url": row.url, "policy": row.policy }),
    );
    let shown = view(&row);
    state
        .store
        .write(move |c| {
            store::objects::put(c, &row)?;
            store::audit::record(c, &entry).map_err(ApiError::from)
        })
        .await?;
    Ok(Json(shown))
}

async fn remove(
    state: &AppState,
    caller: &Caller,
    svc: &str,
    kind: &'static str,
) -> Result<StatusCode, ApiError> {
    let s = visible(state, caller, svc).await?;
    let entry = caller.audit(
        Some(&s.tenant),
        &format!("{kind}.delete"),
        &s.name,
        json!({}),
    );
    state
        .store
        .write(move |c| {
            if !store::objects::delete(c, &s.name, kind)? {
                return Err(ApiError::not_found(format!("{kind} of service {}", s.name)));
            }
            store::audit::record(c, &entry).map_err(ApiError::from)
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    put,
    path = "/v1/services/{svc}/inventory",
    tag = "objects",
    operation_id = "putInventory",
    summary = "Set the service's inventory source.",
    params(doc::SvcPath),
    request_body = PutInventoryRequest,
    responses(
        (status = 200, description = "The source.", body = ObjectSource),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 404, response = doc::NotFound),
        (status = 422, response = doc::Unprocessable),
    ),
    security(("bearer" = [])),
)]
pub async fn put_inventory(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(svc): ApiPath<String>,
    ApiJson(req): ApiJson<PutInventoryRequest>,
) -> Result<Json<ObjectSource>, ApiError> {
    let s = visible(&state, &caller, &svc).await?;
    if let ObjectUrl::Https(u) = object_url(&req.url)? {
        crate::outbound::checked_destination(&state.outbound, &u).await?;
    }
    let policy = req.policy.unwrap_or_else(|| "flag".into());
    if policy != "flag" && policy != "revoke" {
        return Err(bad(
            "invalid-object-source",
            "policy must be flag or revoke",
        ));
    }
    let row = SourceRow {
        service: s.name.clone(),
        kind: INVENTORY.into(),
        url: req.url,
        policy,
        interval_seconds: bounded(req.interval_seconds, 300, 1..=86_400, "interval_seconds")?,
        grace_seconds: bounded(req.grace_seconds, 600, 0..=30 * 86_400, "grace_seconds")?,
        next_sync_at: store::now_ms(),
        synced_at: None,
        last_error: None,
    };
    save(&state, &caller, &s.tenant, row).await
}

#[utoipa::path(
    get,
    path = "/v1/services/{svc}/inventory",
    tag = "objects",
    operation_id = "getInventory",
    summary = "The service's inventory source and what its last sync found.",
    params(doc::SvcPath),
    responses(
        (status = 200, description = "The inventory status.", body = InventoryStatus),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 404, response = doc::NotFound),
    ),
    security(("bearer" = [])),
)]
pub async fn get_inventory(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(svc): ApiPath<String>,
) -> Result<Json<InventoryStatus>, ApiError> {
    let s = visible(&state, &caller, &svc).await?;
    let name = s.name.clone();
    let (source, listed, never, unknown) = state
        .store
        .snapshot(move |c| {
            let Some(source) = store::objects::get(c, &name, INVENTORY)? else {
                return Err(ApiError::not_found(format!("inventory of service {name}")));
            };
            let listed = store::objects::listed_count(c, &name)?;
            let never = store::objects::never_enrolled(c, &name)?;
            let unknown = store::objects::not_in_inventory(c, &name)?;
            Ok((source, listed, never, unknown))
        })
        .await?;
    Ok(Json(InventoryStatus {
        source: view(&source),
        listed: listed as u64,
        never_enrolled_count: never.len() as u64,
        never_enrolled: never.into_iter().take(SHOWN).map(|(n, _)| n).collect(),
        not_in_inventory_count: unknown.len() as u64,
        not_in_inventory: unknown.into_iter().take(SHOWN).collect(),
    }))
}

#[utoipa::path(
    delete,
    path = "/v1/services/{svc}/inventory",
    tag = "objects",
    operation_id = "deleteInventory",
    summary = "Remove the service's inventory source.",
    params(doc::SvcPath),
    responses(
        (status = 204, description = "Removed."),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 404, response = doc::NotFound),
    ),
    security(("bearer" = [])),
)]
pub async fn delete_inventory(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(svc): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    remove(&state, &caller, &svc, INVENTORY).await
}

#[utoipa::path(
    put,
    path = "/v1/services/{svc}/certificate-source",
    tag = "objects",
    operation_id = "putCertificateSource",
    summary = "Set the bucket the service's certificates are imported from (`imported` key mode).",
    params(doc::SvcPath),
    request_body = PutCertificateSourceRequest,
    responses(
        (status = 200, description = "The source.", body = ObjectSource),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 404, response = doc::NotFound),
        (status = 409, response = doc::Conflict),
        (status = 422, response = doc::Unprocessable),
    ),
    security(("bearer" = [])),
)]
pub async fn put_certificate_source(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(svc): ApiPath<String>,
    ApiJson(req): ApiJson<PutCertificateSourceRequest>,
) -> Result<Json<ObjectSource>, ApiError> {
    let s = visible(&state, &caller, &svc).await?;
    if s.key_mode != KeyMode::Imported.to_string() {
        return Err(ApiError::conflict(format!(
            "service {} issues its own certificates (key_mode {}); only imported services read them from a bucket",
            s.name, s.key_mode
        )));
    }
    match object_url(&req.url) {
        Ok(ObjectUrl::S3 { .. }) => {}
        _ => {
            return Err(bad(
                "invalid-object-source",
                "url must be s3://bucket/prefix/",
            ));
        }
    }
    let row = SourceRow {
        service: s.name.clone(),
        kind: CERTIFICATES.into(),
        url: req.url,
        policy: "import".into(),
        interval_seconds: bounded(req.interval_seconds, 60, 1..=86_400, "interval_seconds")?,
        grace_seconds: 0,
        next_sync_at: store::now_ms(),
        synced_at: None,
        last_error: None,
    };
    save(&state, &caller, &s.tenant, row).await
}

#[utoipa::path(
    get,
    path = "/v1/services/{svc}/certificate-source",
    tag = "objects",
    operation_id = "getCertificateSource",
    summary = "The bucket the service's certificates are imported from.",
    params(doc::SvcPath),
    responses(
        (status = 200, description = "The source.", body = ObjectSource),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 404, response = doc::NotFound),
    ),
    security(("bearer" = [])),
)]
pub async fn get_certificate_source(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(svc): ApiPath<String>,
) -> Result<Json<ObjectSource>, ApiError> {
    let s = visible(&state, &caller, &svc).await?;
    let row = state
        .store
        .read(move |c| store::objects::get(c, &s.name, CERTIFICATES))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("certificate source of service {svc}")))?;
    Ok(Json(view(&row)))
}

#[utoipa::path(
    delete,
    path = "/v1/services/{svc}/certificate-source",
    tag = "objects",
    operation_id = "deleteCertificateSource",
    summary = "Remove the service's certificate source.",
    params(doc::SvcPath),
    responses(
        (status = 204, description = "Removed."),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 404, response = doc::NotFound),
    ),
    security(("bearer" = [])),
)]
pub async fn delete_certificate_source(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(svc): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    remove(&state, &caller, &svc, CERTIFICATES).await
}

/// `PUT /v1/services/{svc}/nodes/{node}/certificate`: a customer's certificate, chain
/// and key become the node's next bundle (key sealed at rest like central keys).
#[utoipa::path(
    put,
    path = "/v1/services/{svc}/nodes/{node}/certificate",
    tag = "objects",
    operation_id = "importCertificate",
    summary = "Import a node's certificate, chain and key (services in `imported` key mode).",
    params(doc::NodePath),
    request_body = ImportCertificateRequest,
    responses(
        (status = 200, description = "Imported into the node's next bundle.", body = Imported),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 404, response = doc::NotFound),
        (status = 409, response = doc::Conflict),
        (status = 422, response = doc::Unprocessable),
    ),
    security(("bearer" = [])),
)]
pub async fn import_certificate(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((svc, node)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<ImportCertificateRequest>,
) -> Result<Json<Imported>, ApiError> {
    let (tenant, row) = visible_node(&state, &caller, &svc, &node).await?;
    let service = visible(&state, &caller, &svc).await?;
    if service.key_mode != KeyMode::Imported.to_string() {
        return Err(ApiError::conflict(format!(
            "service {} issues its own certificates (key_mode {})",
            service.name, service.key_mode
        )));
    }
    let now = time::OffsetDateTime::now_utc();
    let checked = crate::ca::import::check(&req.certificate, &req.private_key, now)
        .map_err(|e| bad("invalid-certificate", e.to_string()))?;
    let not_after = checked.not_after;
    let entry = caller.audit(
        Some(&tenant),
        "certificate.import",
        &format!("{}/{}", row.service, row.node_id),
        json!({ "not_after": not_after.to_string() }),
    );
    let st = state.clone();
    let (version, changes) = state
        .store
        .write(move |c| {
            let version = st.issuer().import(
                c,
                &service,
                &row.node_id,
                checked.leaf_pem,
                &checked.chain_pem,
                checked.key_pem,
                checked.not_after,
                now,
            )?;
            store::audit::record(c, &entry)?;
            let mut changes = Changes::default();
            changes.node(&row.service, &row.node_id);
            changes.notify_in_tx(c)?;
            Ok::<_, ApiError>((version, changes))
        })
        .await?;
    changes.wake_local(&state.waiters);
    Ok(Json(Imported { version, not_after }))
}
