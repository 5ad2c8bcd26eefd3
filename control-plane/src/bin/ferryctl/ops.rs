//! Running a fleet: `status`, `alert list`, `health`, `metrics`, and `completions`
//! (the one command that needs no server). Output is returned, not printed.

use crate::args::{AlertCmd, AlertListArgs, Cli, MAX_ALERTS, OpsCommand, StatusArgs};
use crate::client::Api;
use crate::commands::{Output, bad_body, pretty, shown};
use crate::error::CliError;
use crate::{fleet, webhook};
use clap::CommandFactory;
use serde_json::{Value, json};

/// Routes of the fleet resources; not in `ferry_shared::api::routes` yet.
const STATUS: &str = "/v1/status";
const ALERTS: &str = "/v1/alerts";
const METRICS: &str = "/metrics";
const READYZ: &str = ferry_shared::api::routes::READYZ;
/// How many alerts the server returns when no `--limit` is given.
const SERVER_DEFAULT_ALERTS: u32 = 100;

/// Every fleet command but `completions`, which [`completions`] answers offline.
pub async fn run(api: &Api, cmd: &OpsCommand, json: bool) -> Result<Output, CliError> {
    match cmd {
        OpsCommand::Status(args) => status(api, args, json).await,
        OpsCommand::Alert(AlertCmd::List(args)) => alert_list(api, args, json).await,
        OpsCommand::Webhook(cmd) => webhook::run(api, cmd, json).await,
        OpsCommand::Health => health(api, json).await,
        OpsCommand::Metrics => Ok(Output::text(api.get_text(METRICS).await?)),
        OpsCommand::Completions { shell } => Ok(completions(*shell)),
    }
}

/// The completion script of `shell` for the whole command tree.
pub fn completions(shell: clap_complete::Shell) -> Output {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "ferryctl", &mut script);
    Output::text(String::from_utf8_lossy(&script).into_owned())
}

/// The summary; with `--service`, only that service's line (and with `--json`, the
/// document narrowed to it). A service missing from the summary is unknown to the
/// server or hidden from this token, and says so with exit code 1.
async fn status(api: &Api, args: &StatusArgs, json: bool) -> Result<Output, CliError> {
    let body = api.get(STATUS, &[]).await?;
    let doc: fleet::StatusDoc = serde_json::from_value(body.clone()).map_err(bad_body)?;
    let Some(name) = &args.service else {
        return shown(json, body, |_| {
            Ok(fleet::status(Some(&doc.fleet), &doc.services))
        });
    };
    let Some(index) = doc.services.iter().position(|s| s.service == name.as_str()) else {
        return Err(CliError::Unsuccessful(format!(
            "service {name} is not in the status summary: it does not exist, or this \
             token cannot see it"
        )));
    };
    if json {
        return Ok(Output::text(pretty(&narrowed(body, index))));
    }
    Ok(Output::text(fleet::status(
        None,
        &doc.services[index..=index],
    )))
}

/// The status document with only `services[index]` left in `services`.
fn narrowed(mut body: Value, index: usize) -> Value {
    if let Some(Value::Array(services)) = body.get_mut("services") {
        let keep = services.get(index).cloned();
        services.clear();
        services.extend(keep);
    }
    body
}

async fn alert_list(api: &Api, args: &AlertListArgs, json: bool) -> Result<Output, CliError> {
    let mut query = Vec::new();
    if let Some(service) = &args.service {
        query.push(("service", service.to_string()));
    }
    if let Some(state) = args.state {
        query.push(("state", state.as_str().to_owned()));
    }
    if let Some(limit) = args.limit {
        query.push(("limit", limit.to_string()));
    }
    let body = api.get(ALERTS, &query).await?;
    let Some(items) = body.get("items") else {
        return Err(CliError::BadResponse {
            url: ALERTS.to_owned(),
            detail: "the answer has no items array".to_owned(),
        });
    };
    let items: Vec<fleet::Alert> = serde_json::from_value(items.clone()).map_err(bad_body)?;
    let limit = args.limit.unwrap_or(SERVER_DEFAULT_ALERTS);
    let mut out = shown(json, body, |_| Ok(fleet::alerts(&items)))?;
    if !json && items.len() >= usize::try_from(limit).unwrap_or(usize::MAX) {
        out.notes.push(if limit < MAX_ALERTS {
            format!("showing the newest {limit} alerts: pass --limit (up to {MAX_ALERTS}) for more")
        } else {
            format!("showing the newest {limit} alerts: narrow with --service or --state")
        });
    }
    Ok(out)
}

/// `/readyz`: answers when the control plane is up, its database reachable and its
/// schema current; anything else is the server's refusal line and exit code 1.
async fn health(api: &Api, json: bool) -> Result<Output, CliError> {
    let text = api.get_public_text(READYZ).await?;
    Ok(Output::text(if json {
        pretty(&json!({ "ready": true }))
    } else {
        format!("{}\n", text.trim())
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_cover_the_whole_command_tree() {
        let bash = completions(clap_complete::Shell::Bash).stdout;
        for word in [
            "ferryctl",
            "status",
            "alert",
            "webhook",
            "completions",
            "rotate",
            "--secret-file",
        ] {
            assert!(bash.contains(word), "{word} not in the bash script");
        }
        let fish = completions(clap_complete::Shell::Fish).stdout;
        assert!(fish.contains("complete -c ferryctl"), "{fish}");
    }

    #[test]
    fn status_narrowing_keeps_the_document_shape() {
        let body = json!({
            "fleet": { "service": "*" },
            "services": [{ "service": "api" }, { "service": "web" }]
        });
        assert_eq!(
            narrowed(body, 1),
            json!({ "fleet": { "service": "*" }, "services": [{ "service": "web" }] })
        );
    }
}
