//! Forced delivery to one node, tracked to its ack, and paced service-wide rotations.

use super::extract::{ApiJson, ApiPath, Caller};
use super::openapi as doc;
use super::services::visible;
use super::{ApiError, AppState, new_id};
use crate::delivery::Changes;
use crate::store::{self, deliveries::DeliveryRow, is_unique_violation, rotations::RotationRow};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use ferry_shared::api::{Delivery, DeliveryState, RefreshAccepted, RotateRequest, Rotation};
use ferry_shared::{NodeId, ServiceName};
use time::OffsetDateTime;

const MAX_IDEMPOTENCY_KEY: usize = 200;

fn to_api(r: DeliveryRow) -> Result<Delivery, ApiError> {
    let bad = |e: ferry_shared::NameError| {
        ApiError::Internal(anyhow::anyhow!("stored delivery {}: {e}", r.id))
    };
    let state = match r.state.as_str() {
        "queued" | "pending" => DeliveryState::Pending,
        "delivered" => DeliveryState::Delivered,
        "failed" => DeliveryState::Failed,
        _ => DeliveryState::Superseded,
    };
    Ok(Delivery {
        delivery_id: r.id.clone(),
        service: ServiceName::parse(&r.service).map_err(bad)?,
        node_id: NodeId::parse(&r.node_id).map_err(bad)?,
        state,
        version: r.version,
        rotation_id: r.rotation_id,
        error: r.error,
        created_at: store::from_ms(r.created_at),
        issued_at: r.issued_at.map(store::from_ms),
        finished_at: r.finished_at.map(store::from_ms),
    })
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = v.to_str().map_err(|_| {
        ApiError::bad_request("invalid-idempotency-key", "Idempotency-Key must be ASCII")
    })?;
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY {
        return Err(ApiError::bad_request(
            "invalid-idempotency-key",
            "Idempotency-Key must be 1-200 characters",
        ));
    }
    Ok(Some(key.to_owned()))
}

/// `POST /v1/services/{svc}/nodes/{node}/refresh`: re-issues the node's bundle now and
/// returns a delivery to follow. A retry with the same Idempotency-Key returns the same
/// delivery and issues nothing.
#[utoipa::path(
    post,
    path = "/v1/services/{svc}/nodes/{node}/refresh",
    tag = "nodes",
    operation_id = "refreshNode",
    summary = "Re-issue a node's bundle now; returns a delivery to follow.",
    params(doc::NodePath, ("Idempotency-Key" = Option<String>, Header, description = "1-200 ASCII characters; a retry with the same key returns the same delivery and issues nothing.")),
    responses(
        (status = 202, description = "Issued; follow `GET /v1/deliveries/{id}`.", body = RefreshAccepted),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 404, response = doc::NotFound),
        (status = 409, response = doc::Conflict),
        (status = 422, response = doc::Unprocessable),
    ),
    security(("bearer" = [])),
)]
pub async fn refresh(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath((svc, node)): ApiPath<(String, String)>,
) -> Result<(StatusCode, Json<RefreshAccepted>), ApiError> {
    let service = visible(&state, &caller, &svc).await?;
    let node_id = NodeId::parse(&node)?.to_string();
    let key = idempotency_key(&headers)?;
    let existing = |key: Option<String>, service: String, node_id: String| {
        let state = state.clone();
        async move {
            let Some(key) = key else { return Ok(None) };
            let row = state
                .store
                .read(move |c| store::deliveries::by_idempotency_key(c, &service, &key))
                .await?;
            match row {
                Some(r) if r.node_id != node_id => Err(ApiError::unprocessable(
                    "idempotency-key-reused",
                    "this Idempotency-Key was used for another node",
                )),
                other => Ok(other.map(|r| r.id)),
            }
        }
    };
    if let Some(id) = existing(key.clone(), service.name.clone(), node_id.clone()).await? {
        return Ok((
            StatusCode::ACCEPTED,
            Json(RefreshAccepted { delivery_id: id }),
        ));
    }
    let id = new_id()?;
    let entry = caller.audit(
        Some(&service.tenant),
        "node.refresh",
        &format!("{}/{node_id}", service.name),
        serde_json::json!({ "delivery_id": id }),
    );
    let (st, svc_row, n, k, delivery_id) = (
        state.clone(),
        service.clone(),
        node_id.clone(),
        key.clone(),
        id.clone(),
    );
    let result = state
        .store
        .write(move |c| {
            if store::nodes::get(c, &svc_row.name, &n)?.is_none() {
                return Err(ApiError::not_found(format!(
                    "node {n} of service {}",
                    svc_row.name
                )));
            }
            let now = OffsetDateTime::now_utc();
            let mut row = DeliveryRow {
                id: delivery_id,
                service: svc_row.name.clone(),
                node_id: n.clone(),
                rotation_id: None,
                idempotency_key: k,
                state: "pending".into(),
                version: None,
                error: None,
                created_at: store::ms(now),
                issued_at: None,
                finished_at: None,
            };
            let version = st.issuer().renew(c, &svc_row, &n, now)?;
            row.version = Some(version);
            row.issued_at = Some(store::ms(now));
            store::deliveries::insert(c, &row)?;
            store::audit::record(c, &entry)?;
            let mut changes = Changes::default();
            changes.node(&svc_row.name, &n);
            changes.notify_in_tx(c)?;
            Ok(changes)
        })
        .await;
    match result {
        Ok(changes) => {
            changes.wake_local(&state.waiters);
            Ok((
                StatusCode::ACCEPTED,
                Json(RefreshAccepted { delivery_id: id }),
            ))
        }
        // A concurrent request with the same key won the race: answer with its delivery.
        Err(ApiError::Internal(e))
            if e.downcast_ref::<diesel::result::Error>()
                .is_some_and(is_unique_violation) =>
        {
            let id = existing(key, service.name, node_id)
                .await?
                .ok_or(ApiError::Internal(e))?;
            Ok((
                StatusCode::ACCEPTED,
                Json(RefreshAccepted { delivery_id: id }),
            ))
        }
        Err(e) => Err(e),
    }
}

/// False for an id no row can have: one holding NUL, which PostgreSQL text cannot
/// store (the lookup would fail as a 500 instead of finding nothing).
fn possible_id(id: &str) -> bool {
    !id.contains('\0')
}

/// `GET /v1/deliveries/{id}`.
#[utoipa::path(
    get,
    path = "/v1/deliveries/{id}",
    tag = "nodes",
    operation_id = "getDelivery",
    summary = "Follow a delivery to its ack.",
    params(doc::IdPath),
    responses(
        (status = 200, description = "The delivery.", body = Delivery),
        (status = 401, response = doc::Unauthorized),
        (status = 404, response = doc::NotFound),
    ),
    security(("bearer" = [])),
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Delivery>, ApiError> {
    if !possible_id(&id) {
        return Err(ApiError::not_found(format!("delivery {id:?}")));
    }
    let lookup = id.clone();
    let row = state
        .store
        .read(move |c| store::deliveries::get(c, &lookup))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("delivery {id}")))?;
    visible(&state, &caller, &row.service)
        .await
        .map_err(|_| ApiError::not_found(format!("delivery {id}")))?;
    Ok(Json(to_api(row)?))
}

async fn rotation_view(state: &AppState, row: RotationRow) -> Result<Rotation, ApiError> {
    let id = row.id.clone();
    let counts = state
        .store
        .read(move |c| store::deliveries::rotation_counts(c, &id))
        .await?;
    let count = |s: &str| {
        counts
            .iter()
            .filter(|(k, _)| k == s)
            .map(|(_, n)| *n as u64)
            .sum::<u64>()
    };
    Ok(Rotation {
        rotation_id: row.id.clone(),
        service: ServiceName::parse(&row.service)?,
        state: row.state,
        max_in_flight: row.max_in_flight as u32,
        total: row.total as u64,
        delivered: count("delivered"),
        failed: count("failed") + count("superseded"),
        in_flight: count("pending"),
        queued: count("queued"),
        created_at: store::from_ms(row.created_at),
        finished_at: row.finished_at.map(store::from_ms),
    })
}

/// `POST /v1/services/{svc}/rotate`: queues a re-issue of every node, released in waves
/// of at most `max_in_flight` unacknowledged deliveries by the rotation job.
#[utoipa::path(
    post,
    path = "/v1/services/{svc}/rotate",
    tag = "services",
    operation_id = "rotateService",
    summary = "Re-issue every node of a service, in waves of at most `max_in_flight`.",
    params(doc::SvcPath),
    request_body = RotateRequest,
    responses(
        (status = 202, description = "Queued.", body = Rotation),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 404, response = doc::NotFound),
        (status = 422, response = doc::Unprocessable),
    ),
    security(("bearer" = [])),
)]
pub async fn rotate(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(svc): ApiPath<String>,
    ApiJson(req): ApiJson<RotateRequest>,
) -> Result<(StatusCode, Json<Rotation>), ApiError> {
    let service = visible(&state, &caller, &svc).await?;
    let max_in_flight = req.max_in_flight.unwrap_or(100);
    if !(1..=100_000).contains(&max_in_flight) {
        return Err(ApiError::unprocessable(
            "invalid-settings",
            "max_in_flight must be 1..=100000",
        ));
    }
    let id = new_id()?;
    let entry = caller.audit(
        Some(&service.tenant),
        "service.rotate",
        &service.name,
        serde_json::json!({ "rotation_id": id, "max_in_flight": max_in_flight }),
    );
    let (name, rid) = (service.name.clone(), id.clone());
    let row = state
        .store
        .write(move |c| {
            let now = store::now_ms();
            let nodes = store::nodes::ids_for_service(c, &name)?;
            let row = RotationRow {
                id: rid.clone(),
                service: name.clone(),
                max_in_flight: max_in_flight as i32,
                state: if nodes.is_empty() {
                    "done".into()
                } else {
                    "running".into()
                },
                total: nodes.len() as i64,
                created_at: now,
                finished_at: nodes.is_empty().then_some(now),
            };
            store::rotations::insert(c, &row)?;
            let entries: Vec<DeliveryRow> = nodes
                .into_iter()
                .map(|n| DeliveryRow {
                    id: format!("{rid}-{n}"),
                    service: name.clone(),
                    node_id: n,
                    rotation_id: Some(rid.clone()),
                    idempotency_key: None,
                    state: "queued".into(),
                    version: None,
                    error: None,
                    created_at: now,
                    issued_at: None,
                    finished_at: None,
                })
                .collect();
            store::deliveries::insert_many(c, &entries)?;
            store::audit::record(c, &entry)?;
            Ok::<_, ApiError>(row)
        })
        .await?;
    state.jobs.rotation.notify_one();
    Ok((
        StatusCode::ACCEPTED,
        Json(rotation_view(&state, row).await?),
    ))
}

/// `GET /v1/services/{svc}/rotations/{id}`.
#[utoipa::path(
    get,
    path = "/v1/services/{svc}/rotations/{id}",
    tag = "services",
    operation_id = "getRotation",
    summary = "Follow a rotation.",
    params(doc::SvcPath, doc::IdPath),
    responses(
        (status = 200, description = "The rotation and its progress.", body = Rotation),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 404, response = doc::NotFound),
    ),
    security(("bearer" = [])),
)]
pub async fn get_rotation(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((svc, id)): ApiPath<(String, String)>,
) -> Result<Json<Rotation>, ApiError> {
    let service = visible(&state, &caller, &svc).await?;
    if !possible_id(&id) {
        return Err(ApiError::not_found(format!("rotation {id:?}")));
    }
    let lookup = id.clone();
    let row = state
        .store
        .read(move |c| store::rotations::get(c, &lookup))
        .await?
        .filter(|r| r.service == service.name)
        .ok_or_else(|| ApiError::not_found(format!("rotation {id}")))?;
    Ok(Json(rotation_view(&state, row).await?))
}
