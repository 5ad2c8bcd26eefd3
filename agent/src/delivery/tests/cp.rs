//! A fake control plane for the delivery tests: enrolls anyone, serves one bundle to
//! polls below its version, records acks (answering with a chosen status) and signs CSRs.

use super::*;
use crate::identity::CertInfo;
use crate::testkit::{Request, Response, TestCa};
use ferry_shared::api::{
    AckRequest, BundleResponse, CsrSubmission, EnrollRequest, IdentityIssued, WhoAmI, headers,
    routes,
};
use ferry_shared::hash::hash_of;
use rcgen::KeyPair;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use time::Duration as TimeDuration;

pub const SPIFFE: &str = "spiffe://ferry.local/service/web/node/n-1";

/// A control plane that enrolls anyone and serves `bundle` to polls whose `since` is
/// below its version (or always, when `ignore_since`).
pub struct Cp {
    pub ca: TestCa,
    pub bundle: Mutex<Option<Bundle>>,
    pub ignore_since: AtomicBool,
    /// Status of ack answers (204, or an error to make the agent retry).
    pub ack_status: AtomicU16,
    /// Every ack received, with the status it was answered with.
    pub acks: Mutex<Vec<(AckRequest, u16)>>,
    pub polls: Mutex<Vec<i64>>,
    /// When non-zero, polls are answered with this status (an outage).
    pub poll_status: AtomicU16,
    /// `ferry-retry-after-ms` of 304 answers.
    pub retry_after_ms: AtomicU64,
    pub served: AtomicUsize,
}

impl Cp {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            ca: TestCa::new("ferry test ca"),
            bundle: Mutex::new(None),
            ignore_since: false.into(),
            ack_status: AtomicU16::new(204),
            acks: Mutex::new(Vec::new()),
            polls: Mutex::new(Vec::new()),
            poll_status: AtomicU16::new(0),
            retry_after_ms: AtomicU64::new(20),
            served: AtomicUsize::new(0),
        })
    }

    pub fn serve(&self, bundle: Bundle) {
        *self.bundle.lock().expect("lock") = Some(bundle);
    }

    /// Acks answered 2xx.
    pub fn accepted(&self) -> Vec<AckRequest> {
        let acks = self.acks.lock().expect("lock");
        acks.iter()
            .filter(|(_, s)| *s < 300)
            .map(|(a, _)| a.clone())
            .collect()
    }

    pub fn polls_since(&self, since: i64) -> usize {
        self.polls
            .lock()
            .expect("lock")
            .iter()
            .filter(|s| **s == since)
            .count()
    }

    /// A central-mode bundle signed by this CA, valid for an hour.
    pub fn central(&self, version: i64) -> Bundle {
        self.central_for(version, TimeDuration::hours(1))
    }

    /// A central-mode bundle whose certificate expires `lifetime` from now.
    pub fn central_for(&self, version: i64, lifetime: TimeDuration) -> Bundle {
        let key = KeyPair::generate().expect("key");
        let now = OffsetDateTime::now_utc();
        let cert = self
            .ca
            .leaf(&key, SPIFFE, now - TimeDuration::minutes(1), now + lifetime);
        finish_bundle(Bundle {
            version,
            content_hash: String::new(),
            certificate: cert,
            chain: String::new(),
            private_key: Some(key.serialize_pem()),
            trust_bundle: self.ca.cert_pem.clone(),
            metadata: [("v".to_owned(), serde_json::json!(version))]
                .into_iter()
                .collect(),
            not_after: Some(now + lifetime),
            csr_required: false,
            csr_key_type: None,
            alert_before_seconds: None,
        })
    }

    pub fn handle(&self, req: &Request) -> Response {
        let now = OffsetDateTime::now_utc();
        let (path, query) = req.path.split_once('?').unwrap_or((&req.path, ""));
        match (req.method.as_str(), path) {
            ("GET", routes::TRUST_BUNDLE) => Response::text(200, &self.ca.cert_pem),
            ("POST", routes::AGENT_ENROLL) => {
                let body: EnrollRequest = serde_json::from_slice(&req.body).expect("enroll");
                let certificate = self.ca.sign_csr(&body.csr, SPIFFE, TimeDuration::hours(1));
                Response::json(
                    200,
                    &IdentityIssued {
                        spiffe_id: SPIFFE.to_owned(),
                        not_after: CertInfo::from_pem(&certificate, "c")
                            .expect("cert")
                            .not_after,
                        certificate,
                        ca_certificates: self.ca.cert_pem.clone(),
                        server_time: now,
                    },
                )
            }
            ("GET", routes::AGENT_WHOAMI) => Response::json(
                200,
                &WhoAmI {
                    spiffe_id: SPIFFE.to_owned(),
                    service: "web".parse().expect("valid"),
                    node_id: "n-1".parse().expect("valid"),
                    server_time: now,
                },
            ),
            ("GET", routes::AGENT_BUNDLE) => {
                let since: i64 = query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("since="))
                    .and_then(|v| v.parse().ok())
                    .expect("since");
                self.polls.lock().expect("lock").push(since);
                let outage = self.poll_status.load(Ordering::SeqCst);
                if outage != 0 {
                    return Response::problem(outage, "Unavailable", "outage");
                }
                let bundle = self.bundle.lock().expect("lock").clone();
                let newer = bundle
                    .filter(|b| b.version > since || self.ignore_since.load(Ordering::SeqCst));
                let resp = match newer {
                    Some(bundle) => {
                        self.served.fetch_add(1, Ordering::SeqCst);
                        Response::json(
                            200,
                            &BundleResponse {
                                bundle,
                                server_time: now,
                            },
                        )
                        .header(headers::RETRY_AFTER_MS, 0)
                    }
                    None => Response::text(304, "").header(
                        headers::RETRY_AFTER_MS,
                        self.retry_after_ms.load(Ordering::SeqCst),
                    ),
                };
                resp.header(
                    headers::SERVER_TIME_MS,
                    now.unix_timestamp_nanos() / 1_000_000,
                )
            }
            ("POST", routes::AGENT_ACK) => {
                let ack: AckRequest = serde_json::from_slice(&req.body).expect("ack");
                let status = self.ack_status.load(Ordering::SeqCst);
                self.acks.lock().expect("lock").push((ack, status));
                Response::text(status, "")
            }
            ("POST", routes::AGENT_CSR) => {
                let body: CsrSubmission = serde_json::from_slice(&req.body).expect("csr");
                let mut slot = self.bundle.lock().expect("lock");
                let current = slot.clone().expect("a bundle asked for the CSR");
                assert!(current.csr_required, "CSR only when asked");
                let version = current.version + 1;
                *slot = Some(finish_bundle(Bundle {
                    version,
                    certificate: self.ca.sign_csr(&body.csr, SPIFFE, TimeDuration::hours(1)),
                    csr_required: false,
                    csr_key_type: None,
                    ..current
                }));
                Response::json(200, &serde_json::json!({ "version": version }))
            }
            _ => Response::problem(404, "Not found", &req.path),
        }
    }
}

pub fn finish_bundle(mut b: Bundle) -> Bundle {
    b.content_hash = hash_of(&b);
    b
}
