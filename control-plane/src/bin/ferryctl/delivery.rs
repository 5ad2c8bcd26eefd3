//! Forced delivery and rotation: `refresh`, `delivery show`, `rotate`, `rotation show`,
//! and what each finished state means for the exit code.
//!
//! `refresh` always sends an `Idempotency-Key` (a random one when none is given) and
//! repeats the POST with it when the answer is lost, so one command never forces two
//! deliveries. The key is in the `--json` output and in the error line when the outcome
//! is unknown, so the operator can repeat the command safely too.

use crate::args::{RefreshArgs, RotateArgs, parse_id};
use crate::client::Api;
use crate::commands::{Output, bad_body, pretty, shown, unencodable};
use crate::error::CliError;
use crate::progress::{self, Reporter};
use crate::views;
use crate::watch::{Verdict, Watch, watch};
use ferry_shared::api::{
    Delivery, DeliveryState, RefreshAccepted, RotateRequest, Rotation, routes,
};
use serde_json::{Value, json};
use std::time::Duration;

const DELIVERY_POLL_EVERY: Duration = Duration::from_millis(500);
const ROTATION_POLL_EVERY: Duration = Duration::from_secs(1);
/// Tries of the refresh POST when the answer is lost or the server is overloaded; safe
/// because every try carries the same idempotency key.
const REFRESH_TRIES: u64 = 3;

pub async fn refresh(api: &Api, args: &RefreshArgs, json: bool) -> Result<Output, CliError> {
    let key = args
        .idempotency_key
        .clone()
        .unwrap_or_else(new_idempotency_key);
    let path = routes::node_refresh(args.service.as_str(), args.node.as_str());
    let accepted_body = post_refresh(api, &path, &key)
        .await
        .map_err(|e| with_retry_hint(e, &key))?;
    let accepted: RefreshAccepted =
        serde_json::from_value(accepted_body.clone()).map_err(bad_body)?;
    let id = server_id("delivery", &accepted.delivery_id)?;
    let accepted_body = with_key(accepted_body, &key);
    let human = format!("{id}\n");
    if !args.wait {
        return Ok(Output::text(if json {
            pretty(&accepted_body)
        } else {
            human
        }));
    }

    let spec = Watch {
        what: format!("delivery {id} to node {}", args.node),
        every: DELIVERY_POLL_EVERY,
        timeout: Duration::from_secs(args.timeout),
        verdict: delivery_verdict,
        line: progress::delivery_line,
        status: progress::delivery_status,
    };
    let path = routes::delivery(&id);
    let watched = watch(&spec, || api.get(&path, &[]), &mut Reporter::stderr()).await?;
    let stdout = if json {
        // The last state seen; the accepted answer when no state came back in time.
        let last = watched.last.map(|(body, _)| with_key(body, &key));
        pretty(&last.unwrap_or(accepted_body))
    } else {
        human
    };
    Ok(Output::text(stdout).failing(watched.outcome))
}

pub async fn delivery_show(api: &Api, id: &str, json: bool) -> Result<Output, CliError> {
    let body = api.get(&routes::delivery(id), &[]).await?;
    shown(json, body, |b| {
        let d: Delivery = serde_json::from_value(b).map_err(bad_body)?;
        Ok(views::delivery(&d))
    })
}

pub async fn rotate(api: &Api, args: &RotateArgs, json: bool) -> Result<Output, CliError> {
    let req = RotateRequest {
        max_in_flight: args.max_in_flight,
    };
    let started_body = api
        .post(
            &routes::rotate(args.service.as_str()),
            serde_json::to_value(&req).map_err(unencodable)?,
        )
        .await?;
    let started: Rotation = serde_json::from_value(started_body.clone()).map_err(bad_body)?;
    if !args.wait {
        return Ok(Output::text(if json {
            pretty(&started_body)
        } else {
            views::rotation(&started)
        }));
    }

    let id = server_id("rotation", &started.rotation_id)?;
    let spec = Watch {
        what: format!("rotation {id} of service {}", args.service),
        every: ROTATION_POLL_EVERY,
        timeout: Duration::from_secs(args.timeout),
        verdict: rotation_verdict,
        line: |r, _| progress::rotation_line(r),
        status: progress::rotation_line,
    };
    let path = routes::rotation(args.service.as_str(), &id);
    let watched = watch(&spec, || api.get(&path, &[]), &mut Reporter::stderr()).await?;
    let (body, last) = watched.last.unwrap_or((started_body, started));
    let stdout = if json {
        pretty(&body)
    } else {
        views::rotation(&last)
    };
    Ok(Output::text(stdout).failing(watched.outcome))
}

pub async fn rotation_show(
    api: &Api,
    service: &str,
    id: &str,
    json: bool,
) -> Result<Output, CliError> {
    let body = api.get(&routes::rotation(service, id), &[]).await?;
    shown(json, body, |b| {
        let r: Rotation = serde_json::from_value(b).map_err(bad_body)?;
        Ok(views::rotation(&r))
    })
}

/// `pending` waits; `delivered` succeeds; `failed` and `superseded` fail.
pub fn delivery_verdict(d: &Delivery) -> Verdict {
    let node = format!("node {} of service {}", d.node_id, d.service);
    match d.state {
        DeliveryState::Pending => Verdict::Waiting,
        DeliveryState::Delivered => Verdict::Succeeded,
        DeliveryState::Failed => Verdict::Failed(format!(
            "delivery {} to {node} failed: {}",
            d.delivery_id,
            d.error.as_deref().unwrap_or("the server gave no reason")
        )),
        DeliveryState::Superseded => Verdict::Failed(format!(
            "delivery {} to {node} was superseded by a newer delivery before the node \
             installed it",
            d.delivery_id
        )),
    }
}

/// `running` waits; `done` succeeds only without failed nodes. Any other state is one
/// this build does not know, and waiting on it could last until the timeout for nothing.
pub fn rotation_verdict(r: &Rotation) -> Verdict {
    let what = format!("rotation {} of service {}", r.rotation_id, r.service);
    match r.state.as_str() {
        "running" => Verdict::Waiting,
        "done" if r.failed == 0 => Verdict::Succeeded,
        "done" => Verdict::Failed(format!(
            "{what} finished with {} of {} nodes failed (see `ferryctl node list {}`)",
            r.failed, r.total, r.service
        )),
        other => Verdict::Failed(format!("{what} is in unknown state {other:?}")),
    }
}

/// POSTs the refresh, trying again after a lost answer or an overloaded server.
async fn post_refresh(api: &Api, path: &str, key: &str) -> Result<Value, CliError> {
    let mut tries = 1;
    loop {
        match api.post_idempotent(path, json!({}), key).await {
            Err(e) if e.is_transient() && tries < REFRESH_TRIES => {
                tokio::time::sleep(Duration::from_secs(tries)).await;
                tries += 1;
            }
            answer => return answer,
        }
    }
}

/// A failure after which the refresh may or may not have been accepted says how to
/// repeat it without forcing a second delivery.
fn with_retry_hint(e: CliError, key: &str) -> CliError {
    if !e.is_transient() {
        return e;
    }
    let line = e.line();
    CliError::Unsuccessful(format!(
        "{}; the refresh may have been accepted: repeat it with --idempotency-key {key}",
        line.trim_start_matches("error: ")
    ))
}

/// The key echoed into a JSON object answer, so scripts can keep it for a retry.
fn with_key(mut body: Value, key: &str) -> Value {
    if let Value::Object(map) = &mut body {
        map.entry("idempotency_key")
            .or_insert_with(|| Value::String(key.to_owned()));
    }
    body
}

/// An id from the server, checked before it goes into a URL path.
fn server_id(kind: &str, id: &str) -> Result<String, CliError> {
    parse_id(id).map_err(|why| CliError::BadResponse {
        url: "the server".to_owned(),
        detail: format!("{kind} id {id:?}: {why}"),
    })
}

/// 128 bits from the system RNG. Should that fail, the time and process id are unique
/// enough: the key only has to tell this command's tries apart from other commands.
fn new_idempotency_key() -> String {
    let mut bytes = [0u8; 16];
    if aws_lc_rs::rand::fill(&mut bytes).is_ok() {
        return format!("ferryctl-{}", hex::encode(bytes));
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("ferryctl-{nanos:x}-{:x}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_shared::{NodeId, ServiceName};
    use time::macros::datetime;

    fn delivery(state: DeliveryState, error: Option<&str>) -> Delivery {
        Delivery {
            delivery_id: "d1".into(),
            service: ServiceName::parse("web").expect("valid"),
            node_id: NodeId::parse("n-1").expect("valid"),
            state,
            version: Some(4),
            rotation_id: None,
            error: error.map(str::to_owned),
            created_at: datetime!(2026-01-01 00:00:00 UTC),
            issued_at: None,
            finished_at: None,
        }
    }

    fn rotation(state: &str, failed: u64) -> Rotation {
        Rotation {
            rotation_id: "r1".into(),
            service: ServiceName::parse("web").expect("valid"),
            state: state.into(),
            max_in_flight: 10,
            total: 4,
            delivered: 4 - failed,
            failed,
            in_flight: 0,
            queued: 0,
            created_at: datetime!(2026-01-01 00:00:00 UTC),
            finished_at: None,
        }
    }

    fn exit_code(v: Verdict) -> Option<u8> {
        v.outcome().map(|r| r.err().map_or(0, |e| e.exit_code()))
    }

    #[test]
    fn delivery_states_decide_the_exit_code() {
        use DeliveryState::*;
        assert_eq!(exit_code(delivery_verdict(&delivery(Pending, None))), None);
        assert_eq!(
            exit_code(delivery_verdict(&delivery(Delivered, None))),
            Some(0)
        );
        assert_eq!(
            exit_code(delivery_verdict(&delivery(Superseded, None))),
            Some(1)
        );
        let failed = delivery_verdict(&delivery(Failed, Some("reload hook exited 3")));
        assert_eq!(
            failed,
            Verdict::Failed(
                "delivery d1 to node n-1 of service web failed: reload hook exited 3".into()
            )
        );
        assert_eq!(exit_code(failed), Some(1));
    }

    #[test]
    fn rotations_succeed_only_when_done_without_failures() {
        assert_eq!(exit_code(rotation_verdict(&rotation("running", 1))), None);
        assert_eq!(exit_code(rotation_verdict(&rotation("done", 0))), Some(0));
        let failed = rotation_verdict(&rotation("done", 1));
        let Verdict::Failed(why) = &failed else {
            panic!("{failed:?}");
        };
        assert!(why.contains("finished with 1 of 4 nodes failed"), "{why}");
        assert_eq!(exit_code(failed), Some(1));
        assert_eq!(exit_code(rotation_verdict(&rotation("paused", 0))), Some(1));
    }

    #[test]
    fn generated_keys_are_random_header_safe_and_echoed_in_json() {
        let (a, b) = (new_idempotency_key(), new_idempotency_key());
        assert_ne!(a, b);
        assert!(a.starts_with("ferryctl-") && a.bytes().all(|c| c.is_ascii_graphic()));
        assert_eq!(
            with_key(json!({ "delivery_id": "d1" }), "k1"),
            json!({ "delivery_id": "d1", "idempotency_key": "k1" })
        );
        assert_eq!(with_key(json!([1]), "k1"), json!([1]));
    }

    #[test]
    fn lost_answers_name_the_key_and_refusals_do_not() {
        let lost = CliError::Unreachable {
            url: "https://cp/v1/x".into(),
            cause: "timed out".into(),
        };
        let line = with_retry_hint(lost, "k1").line();
        assert_eq!(
            line,
            "error: cannot reach https://cp/v1/x: timed out; the refresh may have been \
             accepted: repeat it with --idempotency-key k1"
        );
        let refused = with_retry_hint(crate::error::refusal(404, b""), "k1");
        assert_eq!(refused.line(), "error: Not Found (404)");
    }

    #[test]
    fn server_ids_must_be_safe_path_segments() {
        assert_eq!(server_id("delivery", "0af3").ok().as_deref(), Some("0af3"));
        let err = server_id("delivery", "../audit").expect_err("unsafe id");
        assert_eq!(err.exit_code(), 1);
    }
}
