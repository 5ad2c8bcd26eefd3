//! Dynamic metadata sources of a service (`/v1/services/{svc}/sources/{name}`): a
//! customer URL fetched every `interval_seconds` whose JSON answer is delivered as one
//! metadata key (the fetching is `jobs::sources`). Request headers are secrets: sealed
//! with the master key before they are stored, and only their names are shown again.
//! Every change is one transaction with its audit record; a deleted source takes the
//! values it wrote with it (one version bump for the service).

mod check;

use super::extract::{ApiJson, ApiPath, Caller};
use super::openapi as doc;
use super::services::visible;
use super::{ApiError, AppState};
use crate::delivery::Changes;
use crate::store::{self, Conn, source_fetches, sources::SourceRow};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use check::{checked_headers, checked_interval, checked_name, checked_url};
use ferry_shared::metadata::check_metadata_key;
use ferry_shared::sources::{FailingNode, PutSourceRequest, Source, SourceScope, SourceStatus};
use serde_json::json;

/// Failing nodes shown by `GET` of one node-scope source.
const FAILING_SHOWN: i64 = 100;

fn to_view(
    src: &SourceRow,
    sum: source_fetches::Summary,
    failing: Vec<source_fetches::FetchRow>,
) -> Source {
    Source {
        name: src.name.clone(),
        url: src.url.clone(),
        interval_seconds: src.interval_seconds.max(0) as u64,
        scope: SourceScope::parse(&src.scope).unwrap_or_default(),
        key: src.key.clone(),
        header_names: src.header_names(),
        created_at: store::from_ms(src.created_at),
        updated_at: store::from_ms(src.updated_at),
        status: SourceStatus {
            last_success_at: sum.last_success_at.map(store::from_ms),
            last_attempt_at: sum.last_attempt_at.map(store::from_ms),
            last_error: sum.last_error,
            consecutive_failures: sum.max_failures.max(0) as u32,
            circuit: sum.circuit.to_owned(),
            // Rows due now (a new source or node waits at 0) show as now, not 1970.
            next_fetch_at: sum
                .next_fetch_at
                .map(|t| store::from_ms(t.max(store::now_ms()))),
            targets: sum.targets.max(0) as u64,
            failing_targets: sum.failing.max(0) as u64,
            failing_nodes: failing
                .into_iter()
                .map(|r| FailingNode {
                    node_id: r.node_id,
                    consecutive_failures: r.failures.max(0) as u32,
                    circuit: r.circuit,
                    last_error: r.last_error,
                })
                .collect(),
        },
    }
}

/// A source with its status (and, `detailed`, its failing nodes).
fn load_view(c: &mut Conn<'_>, src: &SourceRow, detailed: bool) -> diesel::QueryResult<Source> {
    let sum = source_fetches::summary(c, &src.service, &src.name)?;
    let failing = if detailed && src.is_node_scope() {
        source_fetches::failing(c, &src.service, &src.name, FAILING_SHOWN)?
    } else {
        Vec::new()
    };
    Ok(to_view(src, sum, failing))
}

/// Resolves the `source-failing` alerts of `nodes` no fetch counts in any more.
fn resolve_cleared(
    c: &mut Conn<'_>,
    service: &str,
    nodes: &[String],
    now: i64,
) -> Result<bool, ApiError> {
    let mut events = false;
    for node in nodes {
        events |= crate::jobs::sources::resolve_if_clear(c, service, node, now)?;
    }
    Ok(events)
}

#[utoipa::path(
    put,
    path = "/v1/services/{svc}/sources/{name}",
    tag = "metadata",
    operation_id = "putSource",
    summary = "Create or replace a dynamic source: a URL fetched periodically, delivered as one metadata key.",
    params(doc::SourcePath),
    request_body = PutSourceRequest,
    responses(
        (status = 200, description = "Replaced.", body = Source),
        (status = 201, description = "Created.", body = Source),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 404, response = doc::NotFound),
        (status = 409, response = doc::Conflict),
        (status = 422, response = doc::Unprocessable),
    ),
    security(("bearer" = [])),
)]
pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((svc, name)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<PutSourceRequest>,
) -> Result<(StatusCode, Json<Source>), ApiError> {
    let service = visible(&state, &caller, &svc).await?;
    checked_name("source name", "invalid-source-name", &name)?;
    let key = req.key.clone().unwrap_or_else(|| name.clone());
    checked_name("metadata key", "invalid-metadata-key", &key)?;
    checked_interval(req.interval_seconds)?;
    checked_url(&req.url, req.scope)?;
    let probe = req
        .url
        .replace(ferry_shared::sources::NODE_PLACEHOLDER, "node");
    crate::outbound::checked_destination(&state.outbound, &probe).await?;
    let headers = checked_headers(&req.headers)?;
    let header_names: Vec<&String> = headers.keys().collect();
    let sealed_json = serde_json::to_vec(&headers).map_err(|e| ApiError::Internal(e.into()))?;
    let headers_sealed = state
        .master
        .seal(
            &sealed_json,
            store::sources::aad(&service.name, &name).as_bytes(),
        )
        .map_err(|e| ApiError::Internal(e.into()))?;
    let now = store::now_ms();
    let mut row = SourceRow {
        service: service.name.clone(),
        name: name.clone(),
        key,
        scope: req.scope.as_str().to_owned(),
        url: req.url.clone(),
        interval_seconds: req.interval_seconds as i64,
        header_names: json!(header_names).to_string(),
        headers_sealed,
        key_id: state.master.id().to_owned(),
        created_at: now,
        updated_at: now,
    };
    let entry = caller.audit(
        Some(&service.tenant),
        "source.put",
        &format!("{}/{name}", service.name),
        json!({
            "url": row.url, "scope": row.scope, "key": row.key,
            "interval_seconds": row.interval_seconds, "header_names": header_names,
        }),
    );
    let (created, view, changes, events) = state
        .store
        .write(move |c| {
            if let Some(other) = store::sources::by_key(c, &row.service, &row.key)?
                && other.name != row.name
            {
                return Err(ApiError::conflict(format!(
                    "metadata key {} is already written by source {}",
                    row.key, other.name
                )));
            }
            let mut changes = Changes::default();
            let mut events = false;
            let existing = store::sources::get(c, &row.service, &row.name)?;
            match &existing {
                None => {
                    store::sources::insert(c, &row).map_err(|e| {
                        super::error::conflict_if_taken(e, || {
                            format!("source {} was created concurrently", row.name)
                        })
                    })?;
                    source_fetches::create_for(c, &row)?;
                }
                Some(old) => {
                    row.created_at = old.created_at;
                    // updated_at also tells fetches in flight that their answer is stale.
                    row.updated_at = now.max(old.updated_at + 1);
                    let alerting = source_fetches::alerting_nodes(c, &row.service, &row.name)?;
                    store::sources::update(c, &row)?;
                    if old.key != row.key || old.scope != row.scope {
                        if store::metadata::delete_from_source(c, &row.service, &row.name)? > 0 {
                            store::metadata::bump_service(c, &row.service, now)?;
                            changes.service(&row.service);
                        }
                        source_fetches::delete_source(c, &row.service, &row.name)?;
                        source_fetches::create_for(c, &row)?;
                    } else {
                        source_fetches::restart(c, &row.service, &row.name)?;
                    }
                    events = resolve_cleared(c, &row.service, &alerting, now)?;
                }
            }
            changes.notify_in_tx(c)?;
            store::audit::record(c, &entry)?;
            let view = load_view(c, &row, true)?;
            Ok::<_, ApiError>((existing.is_none(), view, changes, events))
        })
        .await?;
    changes.wake_local(&state.waiters);
    state.jobs.sources.notify_one();
    if events {
        state.jobs.webhooks.notify_one();
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)))
}

#[utoipa::path(
    get,
    path = "/v1/services/{svc}/sources/{name}",
    tag = "metadata",
    operation_id = "getSource",
    summary = "Show a dynamic source and how fetching goes.",
    params(doc::SourcePath),
    responses(
        (status = 200, description = "The source.", body = Source),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 404, response = doc::NotFound),
    ),
    security(("bearer" = [])),
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((svc, name)): ApiPath<(String, String)>,
) -> Result<Json<Source>, ApiError> {
    let service = visible(&state, &caller, &svc).await?;
    let what = format!("source {}/{name}", service.name);
    if check_metadata_key(&name).is_err() {
        return Err(ApiError::not_found(what)); // no source can have this name
    }
    let view = state
        .store
        .read(
            move |c| match store::sources::get(c, &service.name, &name)? {
                Some(src) => load_view(c, &src, true).map(Some),
                None => Ok(None),
            },
        )
        .await?
        .ok_or_else(|| ApiError::not_found(what))?;
    Ok(Json(view))
}

#[utoipa::path(
    get,
    path = "/v1/services/{svc}/sources",
    tag = "metadata",
    operation_id = "listSources",
    summary = "List the service's dynamic metadata sources.",
    params(doc::SvcPath),
    responses(
        (status = 200, description = "The sources (header names only).", body = doc::SourceList),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 404, response = doc::NotFound),
    ),
    security(("bearer" = [])),
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(svc): ApiPath<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let service = visible(&state, &caller, &svc).await?;
    let items = state
        .store
        .read(move |c| {
            store::sources::list(c, &service.name)?
                .iter()
                .map(|src| load_view(c, src, false))
                .collect::<diesel::QueryResult<Vec<_>>>()
        })
        .await?;
    Ok(Json(json!({ "items": items })))
}

#[utoipa::path(
    delete,
    path = "/v1/services/{svc}/sources/{name}",
    tag = "metadata",
    operation_id = "deleteSource",
    summary = "Remove a dynamic source and the values it wrote.",
    params(doc::SourcePath),
    responses(
        (status = 204, description = "Removed."),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 404, response = doc::NotFound),
    ),
    security(("bearer" = [])),
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((svc, name)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let service = visible(&state, &caller, &svc).await?;
    let target = format!("{}/{name}", service.name);
    if check_metadata_key(&name).is_err() {
        return Err(ApiError::not_found(format!("source {target}"))); // none can exist
    }
    let entry = caller.audit(Some(&service.tenant), "source.delete", &target, json!({}));
    let now = store::now_ms();
    let (changes, events) = state
        .store
        .write(move |c| {
            let alerting = source_fetches::alerting_nodes(c, &service.name, &name)?;
            if !store::sources::delete(c, &service.name, &name)? {
                return Err(ApiError::not_found(format!("source {target}")));
            }
            let mut changes = Changes::default();
            if store::metadata::delete_from_source(c, &service.name, &name)? > 0 {
                store::metadata::bump_service(c, &service.name, now)?;
                changes.service(&service.name);
            }
            let events = resolve_cleared(c, &service.name, &alerting, now)?;
            changes.notify_in_tx(c)?;
            store::audit::record(c, &entry)?;
            Ok::<_, ApiError>((changes, events))
        })
        .await?;
    changes.wake_local(&state.waiters);
    if events {
        state.jobs.webhooks.notify_one();
    }
    Ok(StatusCode::NO_CONTENT)
}
