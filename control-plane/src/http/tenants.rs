//! Tenants (the deployment's admin token only); their API tokens are `tokens`.

use super::error::conflict_if_taken;
use super::extract::{ApiJson, ApiQuery, Caller, PageQuery, page};
use super::openapi as doc;
use super::{ApiError, AppState};
use crate::store::{self, audit, tenants::TenantRow};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use ferry_shared::TenantName;
use ferry_shared::api::{CreateTenantRequest, Page, Tenant};

fn to_api(row: TenantRow) -> Result<Tenant, ApiError> {
    Ok(Tenant {
        name: TenantName::parse(&row.name)?,
        created_at: store::from_ms(row.created_at),
    })
}

#[utoipa::path(
    post,
    path = "/v1/tenants",
    tag = "tenants",
    operation_id = "createTenant",
    summary = "Create a tenant (admin).",
    request_body = CreateTenantRequest,
    responses(
        (status = 201, description = "Created.", body = Tenant),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
        (status = 409, response = doc::Conflict),
        (status = 422, response = doc::Unprocessable),
    ),
    security(("bearer" = [])),
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateTenantRequest>,
) -> Result<(StatusCode, Json<Tenant>), ApiError> {
    caller.require_admin()?;
    let row = TenantRow {
        name: req.name.to_string(),
        created_at: store::now_ms(),
    };
    let entry = caller.audit(
        Some(&row.name),
        "tenant.create",
        &row.name,
        serde_json::json!({}),
    );
    let inserted = row.clone();
    state
        .store
        .write(move |c| {
            super::namespace::check_new_tenant(c, &inserted.name)?;
            store::tenants::insert(c, &inserted).map_err(|e| {
                conflict_if_taken(e, || format!("tenant {} already exists", inserted.name))
            })?;
            audit::record(c, &entry).map_err(ApiError::from)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(to_api(row)?)))
}

#[utoipa::path(
    get,
    path = "/v1/tenants",
    tag = "tenants",
    operation_id = "listTenants",
    summary = "List tenants (admin).",
    params(PageQuery),
    responses(
        (status = 200, description = "One page of tenants.", body = Page<Tenant>),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
    ),
    security(("bearer" = [])),
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<Page<Tenant>>, ApiError> {
    caller.require_admin()?;
    let (limit, after) = (q.limit()?, q.after()?);
    let rows = state
        .store
        .read(move |c| store::tenants::list(c, after.as_deref(), limit + 1))
        .await?;
    let p = page(rows, limit, |r| r.name.clone(), to_api);
    Ok(Json(Page {
        items: p.items.into_iter().collect::<Result<_, _>>()?,
        next_cursor: p.next_cursor,
    }))
}
