//! Nodes of a service as customers see them: list, show, revoke (delete).

use super::extract::{ApiPath, ApiQuery, Caller, PageQuery, page};
use super::openapi as doc;
use super::services::visible;
use super::{ApiError, AppState};
use crate::store::{self, audit, nodes::NodeRow};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use ferry_shared::api::{Node, Page};
use ferry_shared::{NodeId, ServiceName, SpiffeId, TrustDomain};

pub fn to_api(td: &TrustDomain, r: NodeRow) -> Result<Node, ApiError> {
    let bad = |e: ferry_shared::NameError| {
        ApiError::Internal(anyhow::anyhow!("stored node {}: {e}", r.node_id))
    };
    let service = ServiceName::parse(&r.service).map_err(bad)?;
    let node_id = NodeId::parse(&r.node_id).map_err(bad)?;
    let spiffe_id = SpiffeId {
        trust_domain: td.clone(),
        service: service.clone(),
        node: node_id.clone(),
    }
    .to_string();
    Ok(Node {
        service,
        node_id,
        spiffe_id,
        state: r.state,
        desired_version: r.desired_version,
        acked_version: r.acked_version,
        // A node holding a poll right now is seen now (its row is written only when
        // it connects and when it goes away, not on every poll).
        last_seen: if r.held_by.is_some() {
            Some(time::OffsetDateTime::now_utc())
        } else {
            r.last_seen.map(store::from_ms)
        },
        cert_not_after: r.cert_not_after.map(store::from_ms),
        identity_not_after: store::from_ms(r.identity_not_after),
        enrolled_at: store::from_ms(r.enrolled_at),
        desired_hash: r.desired_hash,
        acked_hash: r.acked_hash,
        renew_at: r.renew_at.map(store::from_ms),
        clock_skew_ms: r.clock_skew_ms,
        last_error: r.last_error,
        hook_exit_code: r.hook_exit_code,
        agent_version: r.agent_version,
    })
}

#[utoipa::path(
    get,
    path = "/v1/services/{svc}/nodes",
    tag = "nodes",
    operation_id = "listNodes",
    summary = "List a service's nodes.",
    params(doc::SvcPath, PageQuery),
    responses(
        (status = 200, description = "One page of nodes.", body = Page<Node>),
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
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<Page<Node>>, ApiError> {
    let svc = visible(&state, &caller, &svc).await?;
    let (limit, after) = (q.limit()?, q.after()?);
    let rows = state
        .store
        .read(move |c| store::nodes::list(c, &svc.name, after.as_deref(), limit + 1))
        .await?;
    let p = page(
        rows,
        limit,
        |r| r.node_id.clone(),
        |r| to_api(&state.trust_domain, r),
    );
    Ok(Json(Page {
        items: p.items.into_iter().collect::<Result<_, _>>()?,
        next_cursor: p.next_cursor,
    }))
}

pub(super) async fn visible_node(
    state: &AppState,
    caller: &Caller,
    svc: &str,
    node: &str,
) -> Result<(String, NodeRow), ApiError> {
    let svc = visible(state, caller, svc).await?;
    let node_id = NodeId::parse(node)?.to_string();
    let name = svc.name.clone();
    let row = state
        .store
        .read(move |c| store::nodes::get(c, &name, &node_id))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("node {node} of service {}", svc.name)))?;
    Ok((svc.tenant, row))
}

#[utoipa::path(
    get,
    path = "/v1/services/{svc}/nodes/{node}",
    tag = "nodes",
    operation_id = "getNode",
    summary = "Show a node.",
    params(doc::NodePath),
    responses(
        (status = 200, description = "The node.", body = Node),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 404, response = doc::NotFound),
    ),
    security(("bearer" = [])),
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((svc, node)): ApiPath<(String, String)>,
) -> Result<Json<Node>, ApiError> {
    let (_, row) = visible_node(&state, &caller, &svc, &node).await?;
    Ok(Json(to_api(&state.trust_domain, row)?))
}

/// Revokes a node: its row goes, so its certificates stop working at once (every
/// agent request checks the store), and it can come back only with a join token.
#[utoipa::path(
    delete,
    path = "/v1/services/{svc}/nodes/{node}",
    tag = "nodes",
    operation_id = "revokeNode",
    summary = "Revoke a node: its certificates stop working at once.",
    params(doc::NodePath),
    responses(
        (status = 204, description = "Revoked."),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 404, response = doc::NotFound),
    ),
    security(("bearer" = [])),
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((svc, node)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (tenant, row) = visible_node(&state, &caller, &svc, &node).await?;
    let entry = caller.audit(
        Some(&tenant),
        "node.revoke",
        &format!("{}/{}", row.service, row.node_id),
        serde_json::json!({}),
    );
    state
        .store
        .write(move |c| {
            store::nodes::delete(c, &row.service, &row.node_id)?;
            store::metadata::delete_node(c, &row.service, &row.node_id)?;
            store::deliveries::supersede_node(c, &row.service, &row.node_id, store::now_ms())?;
            // Held polls and node caches on every replica refuse the node from now on.
            let mut changes = crate::delivery::Changes::default();
            changes.node(&row.service, &row.node_id);
            changes.notify_in_tx(c)?;
            audit::record(c, &entry).map_err(ApiError::from)?;
            Ok::<_, ApiError>(changes)
        })
        .await?
        .wake_local(&state.waiters);
    Ok(StatusCode::NO_CONTENT)
}
