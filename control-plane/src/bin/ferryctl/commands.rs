//! One function per command: build the request, call the API, and choose between the
//! server's JSON (`--json`) and the human view. Output is returned, not printed.

use crate::args::{
    Cli, Command, DeliveryCmd, DeliveryCommand, JoinTokenCmd, NodeCmd, OpsCommand, RotationCmd,
    ServiceCmd, SettingsArgs, TenantCmd,
};
use crate::client::{Api, Listing};
use crate::error::CliError;
use crate::{data, delivery, ops, tokens, views};
use ferry_shared::api::{
    AuditEntry, CreateJoinTokenRequest, CreateServiceRequest, CreateTenantRequest,
    JoinTokenCreated, Node, Service, Tenant, routes,
};
use serde_json::Value;

/// What a command wants shown: `stdout` is the result, `notes` go to stderr so that
/// piping the result stays clean. A `failure` is printed after the result and sets the
/// exit code: `--wait` shows the last state even when the outcome is bad.
#[derive(Debug, Default)]
pub struct Output {
    pub stdout: String,
    pub notes: Vec<String>,
    pub failure: Option<CliError>,
}

impl Output {
    pub fn text(stdout: String) -> Self {
        Self {
            stdout,
            notes: Vec::new(),
            failure: None,
        }
    }

    /// The same output, ending with `outcome`'s error line and exit code if it failed.
    pub fn failing(self, outcome: Result<(), CliError>) -> Self {
        Self {
            failure: outcome.err(),
            ..self
        }
    }
}

pub async fn run(cli: &Cli, token: Option<&str>) -> Result<Output, CliError> {
    // Completions describe this binary, not a server: no CA or connection needed.
    if let Command::Ops(OpsCommand::Completions { shell }) = &cli.command {
        return Ok(ops::completions(*shell));
    }
    let api = Api::connect(&cli.global, token).await?;
    let json = cli.global.json;
    match &cli.command {
        Command::Service(cmd) => service(&api, cmd, json).await,
        Command::JoinToken(JoinTokenCmd::Create {
            service,
            ttl,
            max_uses,
            replace_nodes,
        }) => {
            let req = CreateJoinTokenRequest {
                ttl_seconds: *ttl,
                max_uses: *max_uses,
                replaces_nodes: *replace_nodes,
            };
            let body = api
                .post(
                    &routes::join_tokens(service.as_str()),
                    serde_json::to_value(&req).map_err(unencodable)?,
                )
                .await?;
            shown(json, body, |b| {
                let created: JoinTokenCreated = serde_json::from_value(b).map_err(bad_body)?;
                Ok(views::join_token(&created, service, &cli.global.server))
            })
        }
        Command::Node(cmd) => node(&api, cmd, json).await,
        Command::Deliveries(cmd) => deliveries(&api, cmd, json).await,
        Command::Tenant(TenantCmd::Create { name }) => {
            let req = CreateTenantRequest { name: name.clone() };
            let body = api
                .post(
                    routes::TENANTS,
                    serde_json::to_value(&req).map_err(unencodable)?,
                )
                .await?;
            shown(json, body, |b| {
                let tenant: Tenant = serde_json::from_value(b).map_err(bad_body)?;
                Ok(format!("created tenant {}\n", tenant.name))
            })
        }
        Command::Tenant(TenantCmd::List(page)) => {
            let listing = api.list(routes::TENANTS, page).await?;
            list(json, listing, |v| {
                serde_json::from_value::<Vec<Tenant>>(v)
                    .map_err(bad_body)
                    .map(|t| views::tenants(&t))
            })
        }
        Command::Token(cmd) => tokens::run(&api, cmd, json).await,
        Command::Audit(page) => {
            let listing = api.list(routes::AUDIT, page).await?;
            list(json, listing, |v| {
                serde_json::from_value::<Vec<AuditEntry>>(v)
                    .map_err(bad_body)
                    .map(|a| views::audit(&a))
            })
        }
        Command::TrustBundle => Ok(Output::text(
            api.get_public_text(routes::TRUST_BUNDLE).await?,
        )),
        Command::ControlPlaneCa => Ok(Output::text(
            api.get_public_text(routes::CONTROL_PLANE_CA).await?,
        )),
        Command::Ops(cmd) => ops::run(&api, cmd, json).await,
        Command::Data(cmd) => data::run(&api, cmd, json).await,
    }
}

async fn service(api: &Api, cmd: &ServiceCmd, json: bool) -> Result<Output, CliError> {
    match cmd {
        ServiceCmd::Create {
            name,
            tenant,
            settings,
        } => {
            let req = CreateServiceRequest {
                name: name.clone(),
                tenant: tenant.clone(),
                settings: settings.to_settings(),
            };
            let body = api
                .post(
                    routes::SERVICES,
                    serde_json::to_value(&req).map_err(unencodable)?,
                )
                .await?;
            shown(json, body, |b| {
                let svc: Service = serde_json::from_value(b).map_err(bad_body)?;
                Ok(views::service(&svc))
            })
        }
        ServiceCmd::List(page) => {
            let listing = api.list(routes::SERVICES, page).await?;
            list(json, listing, |v| {
                serde_json::from_value::<Vec<Service>>(v)
                    .map_err(bad_body)
                    .map(|s| views::services(&s))
            })
        }
        ServiceCmd::Show { name } => {
            let body = api.get(&routes::service(name.as_str()), &[]).await?;
            shown(json, body, |b| {
                let svc: Service = serde_json::from_value(b).map_err(bad_body)?;
                Ok(views::service(&svc))
            })
        }
        ServiceCmd::Update { name, settings } => {
            require_some(settings)?;
            let path = routes::service(name.as_str());
            let body = api
                .patch(
                    &path,
                    serde_json::to_value(settings.to_settings()).map_err(unencodable)?,
                )
                .await?;
            shown(json, body, |b| {
                let svc: Service = serde_json::from_value(b).map_err(bad_body)?;
                Ok(views::service(&svc))
            })
        }
        ServiceCmd::Delete { name } => {
            api.delete(&routes::service(name.as_str())).await?;
            Ok(done(json, format!("deleted service {name}\n")))
        }
    }
}

async fn node(api: &Api, cmd: &NodeCmd, json: bool) -> Result<Output, CliError> {
    match cmd {
        NodeCmd::List { service, page } => {
            let listing = api.list(&routes::nodes(service.as_str()), page).await?;
            list(json, listing, |v| {
                serde_json::from_value::<Vec<Node>>(v)
                    .map_err(bad_body)
                    .map(|n| views::nodes(&n))
            })
        }
        NodeCmd::Show { service, node } => {
            let body = api
                .get(&routes::node(service.as_str(), node.as_str()), &[])
                .await?;
            shown(json, body, |b| {
                let n: Node = serde_json::from_value(b).map_err(bad_body)?;
                Ok(views::node(&n))
            })
        }
        NodeCmd::Revoke { service, node } => {
            api.delete(&routes::node(service.as_str(), node.as_str()))
                .await?;
            Ok(done(
                json,
                format!("revoked node {node} of service {service}\n"),
            ))
        }
        NodeCmd::Bundle { service, node } => data::node_bundle(api, service, node, json).await,
    }
}

async fn deliveries(api: &Api, cmd: &DeliveryCommand, json: bool) -> Result<Output, CliError> {
    match cmd {
        DeliveryCommand::Refresh(args) => delivery::refresh(api, args, json).await,
        DeliveryCommand::Delivery(DeliveryCmd::Show { id }) => {
            delivery::delivery_show(api, id, json).await
        }
        DeliveryCommand::Rotate(args) => delivery::rotate(api, args, json).await,
        DeliveryCommand::Rotation(RotationCmd::Show { service, id }) => {
            delivery::rotation_show(api, service.as_str(), id, json).await
        }
    }
}

/// `service update` without a setting would be a silent no-op; say so instead.
fn require_some(settings: &SettingsArgs) -> Result<(), CliError> {
    if settings.is_empty() {
        return Err(CliError::Usage(
            "nothing to update: give at least one of --cert-ttl, --renew-before, --key-type, \
             --key-mode, --stale-after, --grace, --alert-before"
                .to_owned(),
        ));
    }
    Ok(())
}

/// The server's JSON as it came, or the human view of it.
pub fn shown(
    json: bool,
    body: Value,
    human: impl FnOnce(Value) -> Result<String, CliError>,
) -> Result<Output, CliError> {
    Ok(Output::text(if json {
        pretty(&body)
    } else {
        human(body)?
    }))
}

/// For 204 answers: nothing on stdout with `--json` (there is no JSON), a line otherwise.
pub fn done(json: bool, line: String) -> Output {
    Output::text(if json { String::new() } else { line })
}

pub fn list(
    json: bool,
    listing: Listing,
    table: impl FnOnce(Value) -> Result<String, CliError>,
) -> Result<Output, CliError> {
    if json {
        return Ok(Output::text(pretty(&listing.raw)));
    }
    let mut out = Output::text(table(Value::Array(listing.items))?);
    if let Some(cursor) = listing.next_cursor {
        out.notes
            .push(format!("more results: pass --cursor {cursor} or --all"));
    }
    Ok(out)
}

pub fn bad_body(e: serde_json::Error) -> CliError {
    CliError::BadResponse {
        url: "the server".to_owned(),
        detail: format!("body does not match the API: {e}"),
    }
}

/// Request bodies are structs with string keys, which always serialize; this is for
/// the impossible case, without a panic.
pub fn unencodable(e: serde_json::Error) -> CliError {
    CliError::Usage(format!("cannot encode the request: {e}"))
}

pub fn pretty(body: &Value) -> String {
    // A Value always serializes; fall back to the compact form rather than panic.
    let mut text = serde_json::to_string_pretty(body).unwrap_or_else(|_| body.to_string());
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn listing(items: Value, next: Option<&str>) -> Listing {
        let raw = json!({ "items": items, "next_cursor": next });
        let Value::Array(items) = items else {
            panic!("items must be an array")
        };
        Listing {
            items,
            next_cursor: next.map(str::to_owned),
            raw,
        }
    }

    #[test]
    fn lists_print_a_table_and_note_the_next_cursor_on_stderr() {
        let items = json!([{ "name": "acme", "created_at": "2026-01-01T00:00:00Z" }]);
        let render = |v| {
            serde_json::from_value::<Vec<Tenant>>(v)
                .map_err(bad_body)
                .map(|t| views::tenants(&t))
        };
        let out = list(false, listing(items.clone(), Some("c2")), render).expect("renders");
        assert_eq!(out.stdout, "NAME  CREATED\nacme  2026-01-01T00:00:00Z\n");
        assert_eq!(out.notes, ["more results: pass --cursor c2 or --all"]);

        let out = list(true, listing(items, Some("c2")), render).expect("renders");
        let parsed: Value = serde_json::from_str(&out.stdout).expect("json output");
        assert_eq!(parsed["next_cursor"], "c2");
        assert!(out.notes.is_empty());
    }

    #[test]
    fn malformed_items_are_bad_responses() {
        let render = |v| {
            serde_json::from_value::<Vec<Tenant>>(v)
                .map_err(bad_body)
                .map(|t| views::tenants(&t))
        };
        let err = list(false, listing(json!([{ "name": 5 }]), None), render).expect_err("bad");
        assert_eq!(err.exit_code(), 1);
        assert!(
            err.line()
                .starts_with("error: unexpected response from the server")
        );
    }

    #[test]
    fn empty_updates_are_usage_errors() {
        assert_eq!(
            require_some(&SettingsArgs::default()).map_err(|e| e.exit_code()),
            Err(2)
        );
        let one = SettingsArgs {
            grace: Some(5),
            ..SettingsArgs::default()
        };
        assert!(require_some(&one).is_ok());
    }

    #[test]
    fn deletes_print_nothing_with_json() {
        assert_eq!(done(true, "deleted\n".into()).stdout, "");
        assert_eq!(done(false, "deleted\n".into()).stdout, "deleted\n");
    }
}
