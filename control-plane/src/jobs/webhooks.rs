//! The webhook sender: claims due outbox events (a lease, so one replica sends each),
//! POSTs them signed with the service's secret, marks them delivered on a 2xx and backs
//! off exponentially otherwise. Delivery is at least once: a sender that dies between
//! sending and marking leaves the event to be sent again when its lease ends, with the
//! same `Ferry-Event-Id`, so receivers can drop the repeat.
//!
//! Requests go through the outbound policy's client (destinations checked on every
//! connection, no redirects); a failure records only the policy's refusal or the HTTP
//! status, and the log names the receiver as `scheme://host:port`. The receiver's
//! answer is never read.

use super::pause;
use crate::http::AppState;
use crate::outbound::{OutboundClient, OutboundError, origin};
use crate::store::{self, alert_events::EventRow, services::Webhook};
use aws_lc_rs::hmac;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::watch;

const LEASE_MS: i64 = 30_000;
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BACKOFF_MS: i64 = 10 * 60_000;

/// `sha256=<hex>` of HMAC-SHA256(secret, body): the `Ferry-Signature` header.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    format!("sha256={}", hex::encode(hmac::sign(&key, body).as_ref()))
}

/// Delay before attempt `attempts + 1`: 1 s, 2 s, 4 s ... capped at 10 minutes.
pub fn backoff_ms(attempts: i32) -> i64 {
    (1000i64 << attempts.clamp(0, 20)).min(MAX_BACKOFF_MS)
}

pub async fn run(state: AppState, tick: Duration, mut shutdown: watch::Receiver<bool>) {
    let client = match state.outbound.client(SEND_TIMEOUT) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the webhook client; alerts will not be sent");
            return;
        }
    };
    loop {
        if let Err(e) = pass(&state, &client).await {
            tracing::warn!(error = %e, "webhook pass failed");
        }
        if !pause(tick, &state.jobs.webhooks, &mut shutdown).await {
            return;
        }
    }
}

pub async fn pass(state: &AppState, client: &OutboundClient) -> Result<usize, store::StoreError> {
    let now = store::now_ms();
    let (events, hooks) = state
        .store
        .write(move |c| {
            let events = store::alert_events::claim_due(c, now, LEASE_MS, 100)?;
            let hooks = store::services::with_webhooks(c)?;
            Ok::<_, store::StoreError>((events, hooks))
        })
        .await?;
    let hooks: HashMap<String, Webhook> =
        hooks.into_iter().map(|w| (w.service.clone(), w)).collect();
    let sent = events.len();
    for event in events {
        let hook = hooks.get(&event.service);
        let outcome = send(state, client, &event, hook).await;
        let receiver = hook.map(|h| origin(&h.url)).unwrap_or_default();
        let now = store::now_ms();
        state
            .store
            .write(move |c| {
                match outcome {
                    Ok(()) => store::alert_events::mark_delivered(c, &event.id, now)?,
                    Err(error) => {
                        let attempts = event.attempts + 1;
                        tracing::warn!(service = %event.service, event = %event.id, %receiver, attempts, %error, "webhook delivery failed; retrying");
                        store::alert_events::mark_failed(c, &event.id, attempts, now + backoff_ms(attempts), &error)?;
                    }
                }
                Ok::<_, store::StoreError>(())
            })
            .await?;
    }
    Ok(sent)
}

async fn send(
    state: &AppState,
    client: &OutboundClient,
    event: &EventRow,
    hook: Option<&Webhook>,
) -> Result<(), String> {
    let Webhook {
        url,
        secret_sealed: sealed,
        key_id,
        ..
    } = hook.ok_or("the service has no webhook any more")?;
    let aad = format!("webhook/{}", event.service);
    let secret = state
        .master
        .open(sealed, aad.as_bytes(), key_id)
        .map_err(|e| e.to_string())?;
    let req = client
        .request(reqwest::Method::POST, url)
        .map_err(|e| e.to_string())?
        .header("content-type", "application/json")
        .header("ferry-event-id", &event.id)
        .header(
            "ferry-signature",
            signature(&secret, event.payload.as_bytes()),
        )
        .body(event.payload.clone());
    let status = client.send(req).await.map_err(|e| e.to_string())?.status();
    if status.is_success() {
        Ok(())
    } else if status.is_redirection() {
        Err(OutboundError::Redirect(status.as_u16()).to_string())
    } else {
        Err(OutboundError::Status(status.as_u16()).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hmac_sha256_hex_and_backoff_is_capped() {
        // RFC 4231 test case 2.
        let sig = signature(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            sig,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            (backoff_ms(0), backoff_ms(1), backoff_ms(3)),
            (1000, 2000, 8000)
        );
        assert_eq!(backoff_ms(30), MAX_BACKOFF_MS);
    }
}
