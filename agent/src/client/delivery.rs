//! The delivery calls of the agent API, all over mTLS: the bundle long-poll (whose
//! answers, 304 included, carry the server's clock and when to come back), the ack, and
//! the node-key CSR.

use super::{Client, ClientError, clock_skew_ms, problem_from, read_body, send};
use ferry_shared::api::{
    AckRequest, Bundle, BundleQuery, BundleResponse, CsrSubmission, MAX_POLL_WAIT_SECONDS, headers,
    routes,
};
use reqwest::{Method, StatusCode};
use std::time::Duration;
use time::OffsetDateTime;

/// A long-poll may take `wait` plus this long before the client gives up on it.
const POLL_SLACK: Duration = Duration::from_secs(15);
/// Answers slower than this were held by the server, so the middle of the round trip
/// says nothing about when the server stamped its clock.
const HELD_AFTER: Duration = Duration::from_secs(2);

/// What one bundle long-poll brought back.
#[derive(Debug, Clone)]
pub struct Polled {
    /// `None`: 304, nothing newer than `since`.
    pub bundle: Option<Bundle>,
    /// `ferry-retry-after-ms`: how long to wait before the next poll.
    pub retry_after: Option<Duration>,
    /// Server clock minus local clock, when the answer carried the server's time.
    pub clock_skew_ms: Option<i64>,
}

#[derive(serde::Deserialize)]
struct CsrAccepted {
    version: i64,
}

impl Client {
    /// `GET /v1/agent/bundle?since=V&wait=S` over mTLS: the bundle when the node's
    /// desired version is above `since`, else `None` once the server stops holding.
    pub async fn poll_bundle(&self, since: i64, wait: Duration) -> Result<Polled, ClientError> {
        const ACTION: &str = "the bundle poll";
        let wait_s = wait.as_secs().min(MAX_POLL_WAIT_SECONDS);
        let rb = self
            .request(Method::GET, routes::AGENT_BUNDLE)
            .query(&BundleQuery {
                since,
                wait: Some(wait_s),
            })
            .timeout(Duration::from_secs(wait_s) + POLL_SLACK);
        let sent = OffsetDateTime::now_utc();
        let resp = rb.send().await.map_err(|source| ClientError::Transport {
            action: ACTION,
            source,
        })?;
        let received = OffsetDateTime::now_utc();
        let header_ms = |name: &str| -> Option<i64> {
            resp.headers().get(name)?.to_str().ok()?.trim().parse().ok()
        };
        let retry_after = header_ms(headers::RETRY_AFTER_MS)
            .and_then(|ms| u64::try_from(ms).ok())
            .map(Duration::from_millis);
        let header_time = header_ms(headers::SERVER_TIME_MS).and_then(|ms| {
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
        });
        let status = resp.status();
        let bundle = if status == StatusCode::NOT_MODIFIED {
            None
        } else {
            let body = read_body(ACTION, resp).await?;
            if !status.is_success() {
                return Err(ClientError::Refused {
                    action: ACTION,
                    status: status.as_u16(),
                    problem: problem_from(status, &body),
                });
            }
            let answer: BundleResponse =
                serde_json::from_slice(&body).map_err(|source| ClientError::Decode {
                    action: ACTION,
                    source,
                })?;
            Some((answer.bundle, answer.server_time))
        };
        let server_time = header_time.or(bundle.as_ref().map(|(_, t)| *t));
        let held = received - sent > HELD_AFTER;
        // A held answer was stamped just before it was sent back: compare with its arrival.
        let clock_skew_ms = server_time.map(|t| {
            if held {
                clock_skew_ms(t, received, received)
            } else {
                clock_skew_ms(t, sent, received)
            }
        });
        Ok(Polled {
            bundle: bundle.map(|(b, _)| b),
            retry_after,
            clock_skew_ms,
        })
    }

    /// `POST /v1/agent/ack` over mTLS.
    pub async fn ack(&self, ack: &AckRequest) -> Result<(), ClientError> {
        let rb = self.request(Method::POST, routes::AGENT_ACK).json(ack);
        send("the ack", rb).await.map(drop)
    }

    /// `POST /v1/agent/csr` over mTLS (node-key mode); returns the version that will carry
    /// the certificate.
    pub async fn submit_csr(&self, csr: String) -> Result<i64, ClientError> {
        const ACTION: &str = "the CSR submission";
        let rb = self
            .request(Method::POST, routes::AGENT_CSR)
            .json(&CsrSubmission { csr });
        let body = send(ACTION, rb).await?;
        let accepted: CsrAccepted =
            serde_json::from_slice(&body).map_err(|source| ClientError::Decode {
                action: ACTION,
                source,
            })?;
        Ok(accepted.version)
    }
}
