//! Running a fleet: `status`, `alert list`, `health`, `metrics`, and `completions`
//! (the one command that needs no server). Output is returned, not printed.

use crate::args::{AlertCmd, AlertListArgs, Cli, MAX_ALERTS, OpsCommand, PageArgs, StatusArgs};
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

/// The summary: the fleet line and one page of services (every page with `--all`);
/// with `--service`, only that service's line (and with `--json`, the document
/// narrowed to it). A service the server does not show is unknown to it or hidden from
/// this token, and says so with exit code 1.
async fn status(api: &Api, args: &StatusArgs, json: bool) -> Result<Output, CliError> {
    if let Some(name) = &args.service {
        let body = match api.get(STATUS, &[("service", name.to_string())]).await {
            Err(CliError::Refused(p)) if p.status == 404 => {
                return Err(CliError::Unsuccessful(format!(
                    "service {name} is not in the status summary: it does not exist, or \
                     this token cannot see it"
                )));
            }
            other => other?,
        };
        let doc: fleet::StatusDoc = serde_json::from_value(body.clone()).map_err(bad_body)?;
        return shown(json, body, |_| Ok(fleet::status(None, &doc.services)));
    }
    let body = status_pages(api, &args.page).await?;
    let doc: fleet::StatusDoc = serde_json::from_value(body.clone()).map_err(bad_body)?;
    let mut out = shown(json, body, |_| {
        Ok(fleet::status(Some(&doc.fleet), &doc.services))
    })?;
    if let (false, Some(cursor)) = (json, doc.next_cursor) {
        out.notes
            .push(format!("more services: pass --cursor {cursor} or --all"));
    }
    Ok(out)
}

/// One page of the summary (from `--cursor`), or with `--all` every page's services
/// appended to the first page, whose fleet line covers them all.
async fn status_pages(api: &Api, page: &PageArgs) -> Result<Value, CliError> {
    let bad = |detail: String| CliError::BadResponse {
        url: STATUS.to_owned(),
        detail,
    };
    let mut cursor = page.cursor.clone();
    let mut seen = Vec::new();
    let mut merged: Option<Value> = None;
    loop {
        let mut query: Vec<(&str, String)> = Vec::new();
        query.extend(page.limit.map(|l| ("limit", l.to_string())));
        query.extend(cursor.clone().map(|c| ("cursor", c)));
        let mut body = api.get(STATUS, &query).await?;
        if !page.all {
            return Ok(body);
        }
        let next = match body.get("next_cursor") {
            None | Some(Value::Null) => None,
            Some(Value::String(c)) => Some(c.clone()),
            Some(_) => return Err(bad("next_cursor is not a string".to_owned())),
        };
        let Some(Value::Array(services)) = body.get_mut("services").map(Value::take) else {
            return Err(bad("the summary has no services array".to_owned()));
        };
        let all =
            merged.get_or_insert_with(|| json!({ "fleet": body["fleet"].take(), "services": [] }));
        if let Some(Value::Array(kept)) = all.get_mut("services") {
            kept.extend(services);
        }
        match next {
            Some(c) if seen.contains(&c) => {
                return Err(bad(format!("cursor {c:?} came back twice; stopping")));
            }
            Some(c) => {
                seen.push(c.clone());
                cursor = Some(c);
            }
            None => break,
        }
    }
    let mut all = merged.unwrap_or_default();
    all["next_cursor"] = Value::Null;
    Ok(all)
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
}
