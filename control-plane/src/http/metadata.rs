//! Custom metadata of a service and of single nodes (`/v1/services/{svc}/metadata/{key}`,
//! `/v1/services/{svc}/nodes/{node}/metadata/{key}`), and the node bundle view. A change
//! is one transaction: the value, one version bump for every node it reaches (one
//! statement for a whole service), one coalesced wake-up, the audit record.

use super::extract::{ApiJson, ApiPath, Caller};
use super::nodes::visible_node;
use super::openapi as doc;
use super::services::visible;
use super::{ApiError, AppState};
use crate::delivery::Changes;
use crate::store::{self, metadata::MetadataRow, metadata::SERVICE_WIDE};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use ferry_shared::metadata::{
    MAX_BUNDLE_METADATA_BYTES, MAX_METADATA_VALUE_BYTES, MetadataEntry, PutMetadataRequest,
    check_metadata_key,
};
use serde_json::json;

/// Longest `ttl_seconds` / furthest `expires_at`: ten years.
const MAX_TTL_SECONDS: u64 = 10 * 366 * 86_400;

/// Which values: a service's own (`node` None) or one node's.
struct Level {
    tenant: String,
    service: String,
    node: Option<String>,
}

impl Level {
    fn node_id(&self) -> &str {
        self.node.as_deref().unwrap_or(SERVICE_WIDE)
    }

    fn target(&self, key: &str) -> String {
        match &self.node {
            Some(n) => format!("{}/{n}/{key}", self.service),
            None => format!("{}/{key}", self.service),
        }
    }
}

async fn level(
    state: &AppState,
    caller: &Caller,
    svc: &str,
    node: Option<&str>,
) -> Result<Level, ApiError> {
    match node {
        None => {
            let s = visible(state, caller, svc).await?;
            Ok(Level {
                tenant: s.tenant,
                service: s.name,
                node: None,
            })
        }
        Some(n) => {
            let (tenant, row) = visible_node(state, caller, svc, n).await?;
            Ok(Level {
                tenant,
                service: row.service,
                node: Some(row.node_id),
            })
        }
    }
}

fn checked_key(key: &str) -> Result<(), ApiError> {
    check_metadata_key(key).map_err(|why| {
        ApiError::unprocessable(
            "invalid-metadata-key",
            format!(
                "metadata key {:?} is refused: {why}",
                key.escape_debug().to_string()
            ),
        )
    })
}

fn to_entry(r: MetadataRow) -> Result<MetadataEntry, ApiError> {
    Ok(MetadataEntry {
        value: serde_json::from_str(&r.value).map_err(|e| ApiError::Internal(e.into()))?,
        key: r.key,
        expires_at: r.expires_at.map(store::from_ms),
        updated_at: store::from_ms(r.updated_at),
        source: r.source,
    })
}

/// The expiry of a PUT, in unix ms, from `expires_at` or `ttl_seconds`.
fn expiry(req: &PutMetadataRequest, now: i64) -> Result<Option<i64>, ApiError> {
    let bad = |d: &str| ApiError::unprocessable("invalid-expiry", d.to_owned());
    match (req.expires_at, req.ttl_seconds) {
        (Some(_), Some(_)) => Err(bad("give expires_at or ttl_seconds, not both")),
        (None, None) => Ok(None),
        (None, Some(0)) => Err(bad("ttl_seconds must be at least 1")),
        (None, Some(t)) if t > MAX_TTL_SECONDS => Err(bad("ttl_seconds is above ten years")),
        (None, Some(t)) => Ok(Some(now + t as i64 * 1000)),
        (Some(at), None) => {
            let at = store::ms(at);
            if at <= now {
                Err(bad("expires_at is not in the future"))
            } else if at - now > MAX_TTL_SECONDS as i64 * 1000 {
                Err(bad("expires_at is more than ten years away"))
            } else {
                Ok(Some(at))
            }
        }
    }
}

/// Refuses `row` when a bundle it reaches would carry more than
/// [`MAX_BUNDLE_METADATA_BYTES`] of metadata, which the agent could not download (see
/// [`store::metadata::bundle_bytes_with`]). Runs in the PUT's transaction.
fn check_bundle_budget(
    c: &mut store::Conn<'_>,
    level: &Level,
    row: &MetadataRow,
) -> Result<(), ApiError> {
    let total = store::metadata::bundle_bytes_with(c, row)?;
    if total > MAX_BUNDLE_METADATA_BYTES as i64 {
        let whose = match &level.node {
            None => "the service's bundles".to_owned(),
            Some(n) => format!("node {n}'s bundle"),
        };
        return Err(ApiError::unprocessable(
            "bundle-metadata-too-large",
            format!(
                "with this value {whose} would carry {total} bytes of metadata (keys and JSON values); \
                 at most {MAX_BUNDLE_METADATA_BYTES} fit in a bundle the agent accepts"
            ),
        ));
    }
    Ok(())
}

/// Bumps the versions a change at `level` reaches and queues the wake-up.
fn bump(c: &mut store::Conn<'_>, level: &Level, now: i64) -> Result<Changes, ApiError> {
    let mut changes = Changes::default();
    match &level.node {
        None => {
            store::metadata::bump_service(c, &level.service, now)?;
            changes.service(&level.service);
        }
        Some(n) => {
            store::metadata::bump_node(c, &level.service, n, now)?;
            changes.node(&level.service, n);
        }
    }
    changes.notify_in_tx(c)?;
    Ok(changes)
}

async fn put(
    state: AppState,
    caller: Caller,
    level: Level,
    key: String,
    req: PutMetadataRequest,
) -> Result<Json<MetadataEntry>, ApiError> {
    checked_key(&key)?;
    let value = serde_json::to_string(&req.value).map_err(|e| ApiError::Internal(e.into()))?;
    if value.len() > MAX_METADATA_VALUE_BYTES {
        return Err(ApiError::unprocessable(
            "metadata-value-too-large",
            format!(
                "the value is {} bytes of JSON; at most {MAX_METADATA_VALUE_BYTES} are accepted",
                value.len()
            ),
        ));
    }
    let now = store::now_ms();
    let row = MetadataRow {
        service: level.service.clone(),
        node_id: level.node_id().to_owned(),
        key: key.clone(),
        value,
        source: None,
        expires_at: expiry(&req, now)?,
        updated_at: now,
    };
    let entry = caller.audit(
        Some(&level.tenant),
        "metadata.put",
        &level.target(&key),
        json!({ "expires_at": row.expires_at.map(store::from_ms).map(|t| t.to_string()) }),
    );
    let stored = row.clone();
    let changes = state
        .store
        .write(move |c| {
            check_bundle_budget(c, &level, &row)?;
            store::metadata::put(c, &row)?;
            let changes = bump(c, &level, now)?;
            store::audit::record(c, &entry)?;
            Ok::<_, ApiError>(changes)
        })
        .await?;
    changes.wake_local(&state.waiters);
    Ok(Json(to_entry(stored)?))
}

async fn get(state: AppState, level: Level, key: String) -> Result<Json<MetadataEntry>, ApiError> {
    checked_key(&key)?;
    let (s, n, k) = (
        level.service.clone(),
        level.node_id().to_owned(),
        key.clone(),
    );
    let row = state
        .store
        .read(move |c| store::metadata::get(c, &s, &n, &k, store::now_ms()))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("metadata key {key}")))?;
    Ok(Json(to_entry(row)?))
}

async fn delete(
    state: AppState,
    caller: Caller,
    level: Level,
    key: String,
) -> Result<StatusCode, ApiError> {
    checked_key(&key)?;
    let entry = caller.audit(
        Some(&level.tenant),
        "metadata.delete",
        &level.target(&key),
        json!({}),
    );
    let now = store::now_ms();
    let changes = state
        .store
        .write(move |c| {
            if !store::metadata::delete(c, &level.service, level.node_id(), &key)? {
                return Err(ApiError::not_found(format!("metadata key {key}")));
            }
            let changes = bump(c, &level, now)?;
            store::audit::record(c, &entry)?;
            Ok(changes)
        })
        .await?;
    changes.wake_local(&state.waiters);
    Ok(StatusCode::NO_CONTENT)
}

async fn list(state: AppState, level: Level) -> Result<Json<serde_json::Value>, ApiError> {
    let (s, n) = (level.service.clone(), level.node_id().to_owned());
    let rows = state
        .store
        .read(move |c| store::metadata::list(c, &s, &n, store::now_ms()))
        .await?;
    let items = rows
        .into_iter()
        .map(to_entry)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(json!({ "items": items })))
}

#[utoipa::path(
    put,
    path = "/v1/services/{svc}/metadata/{key}",
    tag = "metadata",
    operation_id = "putServiceMetadata",
    summary = "Set one metadata value of a service (every node); delivered with the next bundle version.",
    params(doc::SvcPath, doc::KeyPath),
    request_body = PutMetadataRequest,
    responses(
        (status = 200, description = "The stored value.", body = MetadataEntry),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 404, response = doc::NotFound),
        (status = 422, response = doc::Unprocessable),
    ),
    security(("bearer" = [])),
)]
pub async fn service_put(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((svc, key)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<PutMetadataRequest>,
) -> Result<Json<MetadataEntry>, ApiError> {
    let level = level(&state, &caller, &svc, None).await?;
    put(state, caller, level, key, req).await
}

#[utoipa::path(
    get,
    path = "/v1/services/{svc}/metadata/{key}",
    tag = "metadata",
    operation_id = "getServiceMetadata",
    summary = "Show one metadata value of a service (every node).",
    params(doc::SvcPath, doc::KeyPath),
    responses(
        (status = 200, description = "The value.", body = MetadataEntry),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 404, response = doc::NotFound),
        (status = 422, response = doc::Unprocessable),
    ),
    security(("bearer" = [])),
)]
pub async fn service_get(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((svc, key)): ApiPath<(String, String)>,
) -> Result<Json<MetadataEntry>, ApiError> {
    let level = level(&state, &caller, &svc, None).await?;
    get(state, level, key).await
}

#[utoipa::path(
    delete,
    path = "/v1/services/{svc}/metadata/{key}",
    tag = "metadata",
    operation_id = "deleteServiceMetadata",
    summary = "Remove one metadata value of a service (every node).",
    params(doc::SvcPath, doc::KeyPath),
    responses(
        (status = 204, description = "Removed."),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 404, response = doc::NotFound),
        (status = 422, response = doc::Unprocessable),
    ),
    security(("bearer" = [])),
)]
pub async fn service_delete(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((svc, key)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let level = level(&state, &caller, &svc, None).await?;
    delete(state, caller, level, key).await
}

#[utoipa::path(
    get,
    path = "/v1/services/{svc}/metadata",
    tag = "metadata",
    operation_id = "listServiceMetadata",
    summary = "List the metadata of a service (every node).",
    params(doc::SvcPath),
    responses(
        (status = 200, description = "The values, expired ones left out.", body = doc::MetadataList),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 404, response = doc::NotFound),
    ),
    security(("bearer" = [])),
)]
pub async fn service_list(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(svc): ApiPath<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let level = level(&state, &caller, &svc, None).await?;
    list(state, level).await
}

#[utoipa::path(
    put,
    path = "/v1/services/{svc}/nodes/{node}/metadata/{key}",
    tag = "metadata",
    operation_id = "putNodeMetadata",
    summary = "Set one metadata value of one node; delivered with the next bundle version.",
    params(doc::NodePath, doc::KeyPath),
    request_body = PutMetadataRequest,
    responses(
        (status = 200, description = "The stored value.", body = MetadataEntry),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 404, response = doc::NotFound),
        (status = 422, response = doc::Unprocessable),
    ),
    security(("bearer" = [])),
)]
pub async fn node_put(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((svc, node, key)): ApiPath<(String, String, String)>,
    ApiJson(req): ApiJson<PutMetadataRequest>,
) -> Result<Json<MetadataEntry>, ApiError> {
    let level = level(&state, &caller, &svc, Some(&node)).await?;
    put(state, caller, level, key, req).await
}

#[utoipa::path(
    get,
    path = "/v1/services/{svc}/nodes/{node}/metadata/{key}",
    tag = "metadata",
    operation_id = "getNodeMetadata",
    summary = "Show one metadata value of one node.",
    params(doc::NodePath, doc::KeyPath),
    responses(
        (status = 200, description = "The value.", body = MetadataEntry),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 404, response = doc::NotFound),
        (status = 422, response = doc::Unprocessable),
    ),
    security(("bearer" = [])),
)]
pub async fn node_get(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((svc, node, key)): ApiPath<(String, String, String)>,
) -> Result<Json<MetadataEntry>, ApiError> {
    let level = level(&state, &caller, &svc, Some(&node)).await?;
    get(state, level, key).await
}

#[utoipa::path(
    delete,
    path = "/v1/services/{svc}/nodes/{node}/metadata/{key}",
    tag = "metadata",
    operation_id = "deleteNodeMetadata",
    summary = "Remove one metadata value of one node.",
    params(doc::NodePath, doc::KeyPath),
    responses(
        (status = 204, description = "Removed."),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 404, response = doc::NotFound),
        (status = 422, response = doc::Unprocessable),
    ),
    security(("bearer" = [])),
)]
pub async fn node_delete(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((svc, node, key)): ApiPath<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let level = level(&state, &caller, &svc, Some(&node)).await?;
    delete(state, caller, level, key).await
}

#[utoipa::path(
    get,
    path = "/v1/services/{svc}/nodes/{node}/metadata",
    tag = "metadata",
    operation_id = "listNodeMetadata",
    summary = "List the metadata of one node.",
    params(doc::NodePath),
    responses(
        (status = 200, description = "The values, expired ones left out.", body = doc::MetadataList),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 404, response = doc::NotFound),
    ),
    security(("bearer" = [])),
)]
pub async fn node_list(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((svc, node)): ApiPath<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let level = level(&state, &caller, &svc, Some(&node)).await?;
    list(state, level).await
}
