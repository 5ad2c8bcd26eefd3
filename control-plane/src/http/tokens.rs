//! A tenant's API tokens: create (the secret shown once), list and revoke by name.
//! The deployment's admin token manages any tenant's tokens, a tenant's `admin` token
//! its own tenant's (another tenant is a 404, like any resource it cannot see). Which
//! role a route needs is `roles.rs`; these handlers only scope the tenant.

use super::error::conflict_if_taken;
use super::extract::{ApiJson, ApiPath, ApiQuery, Caller, PageQuery, page, refuse_nul};
use super::openapi as doc;
use super::{ApiError, AppState, new_id, new_secret};
use crate::store::{self, audit, tokens::ApiTokenRow};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use ferry_shared::api::{ApiToken, ApiTokenCreated, CreateApiTokenRequest, Page};
use ferry_shared::hash::sha256_hex;
use ferry_shared::{TenantName, TokenName, TokenRole};

/// Longest lifetime a token may be given: ten years.
pub const MAX_EXPIRES_IN_SECONDS: u64 = 10 * 365 * 86_400;

/// The tenant of the path, if the caller may manage its tokens.
fn tenant_for(caller: &Caller, tenant: &str) -> Result<TenantName, ApiError> {
    let tenant = TenantName::parse(tenant)?;
    match caller.scope() {
        Some(own) if own != tenant.as_str() => Err(ApiError::not_found(format!("tenant {tenant}"))),
        _ => Ok(tenant),
    }
}

fn to_api(row: ApiTokenRow, now: i64) -> Result<ApiToken, ApiError> {
    let expired = row.expired(now);
    Ok(ApiToken {
        name: TokenName::parse(&row.name)?,
        tenant: row.tenant.as_deref().map(TenantName::parse).transpose()?,
        role: row
            .role
            .parse()
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("stored token role: {e}")))?,
        description: row.description,
        created_at: store::from_ms(row.created_at),
        expires_at: row.expires_at.map(store::from_ms),
        expired,
    })
}

#[utoipa::path(
    post,
    path = "/v1/tenants/{tenant}/tokens",
    tag = "tenants",
    operation_id = "createTenantToken",
    summary = "Create an API token for a tenant with a role, a name and an optional expiry; the secret is shown once.",
    params(doc::TenantPath),
    request_body = CreateApiTokenRequest,
    responses(
        (status = 201, description = "Created; `token` is shown only now.", body = ApiTokenCreated),
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
    ApiPath(tenant): ApiPath<String>,
    ApiJson(req): ApiJson<CreateApiTokenRequest>,
) -> Result<(StatusCode, Json<ApiTokenCreated>), ApiError> {
    let tenant = tenant_for(&caller, &tenant)?;
    let description = req.description.unwrap_or_default();
    refuse_nul("invalid-description", "description", &description)?;
    let now = store::now_ms();
    let expires_at = match req.expires_in_seconds {
        None => None,
        Some(s) if (1..=MAX_EXPIRES_IN_SECONDS).contains(&s) => Some(now + (s as i64) * 1000),
        Some(s) => {
            return Err(ApiError::unprocessable(
                "invalid-expiry",
                format!("expires_in_seconds {s} is outside 1..={MAX_EXPIRES_IN_SECONDS}"),
            ));
        }
    };
    let role = req.role.unwrap_or(TokenRole::Admin);
    let token = new_secret("fyt_")?;
    let id = new_id()?;
    let name = match req.name {
        Some(n) => n,
        None => TokenName::parse(&id)?,
    };
    let row = ApiTokenRow {
        id: id.clone(),
        tenant: Some(tenant.to_string()),
        token_hash: sha256_hex(token.as_bytes()),
        description,
        created_at: now,
        name: name.to_string(),
        role: role.as_str().to_owned(),
        expires_at,
    };
    let entry = caller.audit(
        Some(tenant.as_str()),
        "token.create",
        &format!("token:{}", row.id),
        serde_json::json!({
            "name": row.name,
            "role": row.role,
            "expires_at": row.expires_at,
            "description": row.description,
        }),
    );
    let t = tenant.to_string();
    state
        .store
        .write(move |c| {
            if store::tenants::get(c, &t)?.is_none() {
                return Err(ApiError::not_found(format!("tenant {t}")));
            }
            store::tokens::insert(c, &row).map_err(|e| {
                conflict_if_taken(e, || {
                    format!("tenant {t} already has a token named {}", row.name)
                })
            })?;
            audit::record(c, &entry).map_err(ApiError::from)
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(ApiTokenCreated {
            id,
            tenant: Some(tenant),
            token,
            name,
            role,
            expires_at: expires_at.map(store::from_ms),
        }),
    ))
}

#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/tokens",
    tag = "tenants",
    operation_id = "listTenantTokens",
    summary = "List a tenant's API tokens by name (never their secrets).",
    params(doc::TenantPath, PageQuery),
    responses(
        (status = 200, description = "One page of tokens in name order.", body = Page<ApiToken>),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
        (status = 404, response = doc::NotFound),
    ),
    security(("bearer" = [])),
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<Page<ApiToken>>, ApiError> {
    let tenant = tenant_for(&caller, &tenant)?;
    let (limit, after) = (q.limit()?, q.after()?);
    let t = tenant.to_string();
    let rows = state
        .store
        .read(move |c| {
            if store::tenants::get(c, &t)?.is_none() {
                return Ok(None);
            }
            store::tokens::list(c, &t, after.as_deref(), limit + 1).map(Some)
        })
        .await?
        .ok_or_else(|| ApiError::not_found(format!("tenant {tenant}")))?;
    let now = store::now_ms();
    let p = page(rows, limit, |r| r.name.clone(), |r| to_api(r, now));
    Ok(Json(Page {
        items: p.items.into_iter().collect::<Result<_, _>>()?,
        next_cursor: p.next_cursor,
    }))
}

/// `{tenant}` and `{name}` of a token.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // documentation only
pub struct TokenPath {
    /// Tenant name.
    #[param(inline)]
    tenant: TenantName,
    /// Token name.
    #[param(inline)]
    name: TokenName,
}

#[utoipa::path(
    delete,
    path = "/v1/tenants/{tenant}/tokens/{name}",
    tag = "tenants",
    operation_id = "revokeTenantToken",
    summary = "Revoke a tenant's API token by name: refused from the next request on.",
    params(TokenPath),
    responses(
        (status = 204, description = "Revoked."),
        (status = 400, response = doc::BadRequest),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::Forbidden),
        (status = 404, response = doc::NotFound),
    ),
    security(("bearer" = [])),
)]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((tenant, name)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let tenant = tenant_for(&caller, &tenant)?;
    let name = TokenName::parse(&name)?;
    let (t, n) = (tenant.to_string(), name.to_string());
    let mut entry = caller.audit(
        Some(tenant.as_str()),
        "token.revoke",
        "",
        serde_json::json!({ "name": n }),
    );
    state
        .store
        .write(move |c| {
            let Some(row) = store::tokens::delete_by_name(c, &t, &n)? else {
                return Err(ApiError::not_found(format!("token {n} of tenant {t}")));
            };
            entry.target = format!("token:{}", row.id);
            audit::record(c, &entry).map_err(ApiError::from)
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
