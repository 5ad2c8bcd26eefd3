//! `ferryctl token create|list|revoke`: a tenant's API tokens by name. A tenant's
//! `admin` token may manage its own tenant's tokens; the deployment's admin token any.

use crate::args::TokenCmd;
use crate::client::Api;
use crate::commands::{Output, bad_body, done, list, shown, unencodable};
use crate::error::CliError;
use crate::views;
use ferry_shared::api::{ApiToken, ApiTokenCreated, CreateApiTokenRequest, routes};

pub async fn run(api: &Api, cmd: &TokenCmd, json: bool) -> Result<Output, CliError> {
    match cmd {
        TokenCmd::Create {
            tenant,
            name,
            role,
            expires_in,
            description,
        } => {
            let req = CreateApiTokenRequest {
                description: description.clone(),
                name: name.clone(),
                role: *role,
                expires_in_seconds: *expires_in,
            };
            let path = routes::tenant_tokens(tenant.as_str());
            let body = api
                .post(&path, serde_json::to_value(&req).map_err(unencodable)?)
                .await?;
            shown(json, body, |b| {
                let created: ApiTokenCreated = serde_json::from_value(b).map_err(bad_body)?;
                Ok(views::api_token(&created))
            })
        }
        TokenCmd::List { tenant, page } => {
            let listing = api
                .list(&routes::tenant_tokens(tenant.as_str()), page)
                .await?;
            list(json, listing, |v| {
                serde_json::from_value::<Vec<ApiToken>>(v)
                    .map_err(bad_body)
                    .map(|t| views::api_tokens(&t))
            })
        }
        TokenCmd::Revoke { tenant, name } => {
            api.delete(&routes::tenant_token(tenant.as_str(), name.as_str()))
                .await?;
            Ok(done(
                json,
                format!("revoked token {name} of tenant {tenant}\n"),
            ))
        }
    }
}
