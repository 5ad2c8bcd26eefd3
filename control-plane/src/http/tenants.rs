//! Tenants and their API tokens (admin only).

use super::error::conflict_if_taken;
use super::extract::{ApiJson, ApiPath, ApiQuery, Caller, PageQuery, page, refuse_nul};
use super::openapi as doc;
use super::{ApiError, AppState, new_id, new_secret};
use crate::store::{self, audit, tenants::TenantRow, tokens::ApiTokenRow};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use ferry_shared::TenantName;
use ferry_shared::api::{
    ApiTokenCreated, CreateApiTokenRequest, CreateTenantRequest, Page, Tenant,
};
use ferry_shared::hash::sha256_hex;

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

#[utoipa::path(
    post,
    path = "/v1/tenants/{tenant}/tokens",
    tag = "tenants",
    operation_id = "createTenantToken",
    summary = "Create an API token for a tenant (admin); the secret is shown once.",
    params(doc::TenantPath),
    request_body = CreateApiTokenRequest,
    responses(
        (status = 201, description = "Created; `token` is shown only now.", body = ApiTokenCreated),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
        (status = 404, response = doc::NotFound),
        (status = 422, response = doc::Unprocessable),
    ),
    security(("bearer" = [])),
)]
pub async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(req): ApiJson<CreateApiTokenRequest>,
) -> Result<(StatusCode, Json<ApiTokenCreated>), ApiError> {
    caller.require_admin()?;
    let tenant = TenantName::parse(&tenant)?;
    let description = req.description.unwrap_or_default();
    refuse_nul("invalid-description", "description", &description)?;
    let token = new_secret("fyt_")?;
    let row = ApiTokenRow {
        id: new_id()?,
        tenant: Some(tenant.to_string()),
        token_hash: sha256_hex(token.as_bytes()),
        description,
        created_at: store::now_ms(),
    };
    let entry = caller.audit(
        Some(tenant.as_str()),
        "token.create",
        &format!("token:{}", row.id),
        serde_json::json!({ "description": row.description }),
    );
    let id = row.id.clone();
    let t = tenant.to_string();
    state
        .store
        .write(move |c| {
            if store::tenants::get(c, &t)?.is_none() {
                return Err(ApiError::not_found(format!("tenant {t}")));
            }
            store::tokens::insert(c, &row)?;
            audit::record(c, &entry).map_err(ApiError::from)
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(ApiTokenCreated {
            id,
            tenant: Some(tenant),
            token,
        }),
    ))
}
