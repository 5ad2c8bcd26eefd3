//! The agent's life: enroll when the state dir holds no identity, then keep the identity
//! renewed until shutdown.
//!
//! Times about certificates are compared on the server's clock (local clock + measured
//! skew), because the server decided the validity period. Whether an error is retried soon,
//! retried slowly while an operator acts, or ends the agent is decided in one place,
//! `retry::decide`. The current identity is published on a `watch` channel so the bundle poll
//! loop ([`crate::delivery`]), which runs beside `identity_loop`, always uses the latest
//! client.

use crate::backoff::Backoff;
use crate::client::{Client, ClientError, Timed, fetch_trust_bundle_pinned};
use crate::config::{AgentConfig, CaPin, ConfigError};
use crate::identity::{CertInfo, IdentityError, NodeKey, pem_certificates, renew_at};
use crate::state::liveness::HEARTBEAT_EVERY;
use crate::state::{AgentState, CERT_FILE, RunLock, StateDir, StateError};
use ferry_shared::SpiffeId;
use ferry_shared::api::{EnrollRequest, IdentityIssued};
use std::future::Future;
use std::time::Duration as StdDuration;
use time::{Duration, OffsetDateTime};
use tokio::sync::watch;
use tracing::{error, info, warn};

pub(crate) mod retry;

use retry::{Phase, Retry, decide, operator_advice};

/// Longest single sleep: the loop wakes up at least this often to re-check the clock,
/// so a suspended machine or a stepped clock does not make it oversleep a renewal.
const MAX_SLEEP: StdDuration = StdDuration::from_secs(300);

/// Why enrolling or running the agent failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(
        "this node has no valid identity and no join token is configured: create a join token \
         for service {service} and give it with --join-token, FERRY_JOIN_TOKEN or join_token_file"
    )]
    NoJoinToken { service: String },
    #[error(
        "{dir} holds the identity {found}, not one for service {service} node {node}; \
         use another --state-dir or remove that one"
    )]
    OtherNode {
        dir: String,
        found: String,
        service: String,
        node: String,
    },
    #[error(
        "the control plane revoked this node ({reason}); it polls no more until it is \
         enrolled again (ferry-agent enroll --join-token TOKEN, with a token that may replace \
         the node if another one took its place)"
    )]
    Revoked { reason: String },
}

/// The result of a successful enrollment.
#[derive(Debug, Clone)]
pub struct Enrolled {
    pub spiffe_id: SpiffeId,
    pub not_after: OffsetDateTime,
    pub clock_skew_ms: i64,
}

/// The identity in use: its certificate and a client that authenticates with it.
#[derive(Debug, Clone)]
pub struct Session {
    pub client: Client,
    pub spiffe_id: SpiffeId,
    pub cert: CertInfo,
    pub cert_pem: String,
    pub clock_skew_ms: i64,
    /// When this identity was enrolled (server clock); renewals keep it.
    pub enrolled_at: OffsetDateTime,
}

impl Session {
    /// Now, on the server's clock.
    pub fn server_now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + Duration::milliseconds(self.clock_skew_ms)
    }
}

/// Enrolls once, now, with the configured join token, replacing any identity in the state
/// dir. No retries: `ferry-agent enroll` reports the first failure.
pub async fn enroll(cfg: &AgentConfig) -> Result<Enrolled, AgentError> {
    let state = StateDir::new(&cfg.state_dir);
    state.create()?;
    let session = enroll_once(cfg, &state).await?;
    state.clear_revoked()?;
    Ok(Enrolled {
        spiffe_id: session.spiffe_id,
        not_after: session.cert.not_after,
        clock_skew_ms: session.clock_skew_ms,
    })
}

/// Runs the agent until `shutdown` completes: enrolls if needed (retrying transient
/// failures), then keeps the identity renewed. Returns `Err` only for failures an operator
/// must fix before a restart can help (e.g. the join token was refused). Holds the state
/// dir's run lock throughout and touches its heartbeat; a node the control plane revoked
/// waits, polling nothing, until `ferry-agent enroll` replaces its identity.
pub async fn run(cfg: AgentConfig, shutdown: impl Future<Output = ()>) -> Result<(), AgentError> {
    let state = StateDir::new(&cfg.state_dir);
    state.create()?;
    let lock = state.lock_run(LOCK_WAIT).await?;
    let work = async {
        loop {
            let reason = match run_loops(&cfg, &state).await {
                Err(AgentError::Revoked { reason }) => reason,
                other => return other,
            };
            let revoked = state.mark_revoked(&reason)?;
            error!(revoked_at = %revoked.at, "{}", AgentError::Revoked { reason: revoked.reason });
            wait_for_new_enrollment(&state).await;
            info!("the revocation record is gone (enrolled again); resuming");
        }
    };
    tokio::select! {
        res = work => res,
        () = heartbeat(&lock) => unreachable!("the heartbeat never ends"),
        () = shutdown => {
            info!("shutting down");
            Ok(())
        }
    }
}

/// How long a starting agent waits for the run lock of one that is just ending.
const LOCK_WAIT: StdDuration = StdDuration::from_secs(5);

/// Touches the run lock's heartbeat forever; a failure is logged once.
async fn heartbeat(lock: &RunLock) {
    let mut told = false;
    loop {
        tokio::time::sleep(HEARTBEAT_EVERY).await;
        if let Err(err) = lock.beat()
            && !std::mem::replace(&mut told, true)
        {
            warn!(error = %err, "could not touch the heartbeat of agent.lock");
        }
    }
}

/// Completes once `revoked.json` is gone.
async fn wait_for_new_enrollment(state: &StateDir) {
    loop {
        tokio::time::sleep(StdDuration::from_secs(2)).await;
        if matches!(state.load_revoked(), Ok(None)) {
            return;
        }
    }
}

async fn run_loops(cfg: &AgentConfig, state: &StateDir) -> Result<(), AgentError> {
    if let Some(revoked) = state.load_revoked()? {
        return Err(AgentError::Revoked {
            reason: revoked.reason,
        });
    }
    let session = match load_session(cfg, state)? {
        Some(session) => session,
        None => {
            info!(state_dir = %state.path().display(), "no identity yet, enrolling");
            enroll_until_done(cfg, state).await?
        }
    };
    info!(spiffe_id = %session.spiffe_id, not_after = %session.cert.not_after, "identity ready");
    let (identity_tx, _identity_rx) = watch::channel(session);
    tokio::try_join!(
        identity_loop(cfg, state, &identity_tx),
        crate::delivery::delivery_loop(cfg, state, &identity_tx),
    )
    .map(drop)
}

/// The session stored in the state dir, if the node has enrolled.
pub fn load_session(cfg: &AgentConfig, state: &StateDir) -> Result<Option<Session>, AgentError> {
    let Some(stored) = state.load_identity()? else {
        return Ok(None);
    };
    let other = |found: String| AgentError::OtherNode {
        dir: state.path().display().to_string(),
        found,
        service: cfg.service.to_string(),
        node: cfg.node_id.to_string(),
    };
    let spiffe_id = stored
        .cert
        .spiffe_id_for(&cfg.node_id)
        .map_err(|e| other(e.to_string()))?;
    if spiffe_id.service != cfg.service {
        return Err(other(spiffe_id.to_string()));
    }
    let ca_pem = state
        .load_ca()?
        .ok_or_else(|| ConfigError::NoCa(state.path().to_owned()))?;
    let client = Client::with_identity(&cfg.server, &ca_pem, &stored.cert_pem, &stored.key_pem)?;
    let saved = state.load_state()?;
    let clock_skew_ms = saved.as_ref().map_or(0, |s| s.clock_skew_ms);
    let enrolled_at = saved
        .and_then(|s| s.enrolled_at)
        .unwrap_or(stored.cert.not_before);
    Ok(Some(Session {
        client,
        spiffe_id,
        cert: stored.cert,
        cert_pem: stored.cert_pem,
        clock_skew_ms,
        enrolled_at,
    }))
}

async fn enroll_until_done(cfg: &AgentConfig, state: &StateDir) -> Result<Session, AgentError> {
    let mut backoff = Backoff::new(cfg.retry);
    loop {
        let err = match enroll_once(cfg, state).await {
            Ok(session) => return Ok(session),
            Err(err) => err,
        };
        let delay = match decide(&err, Phase::Enroll) {
            Retry::Fatal => return Err(err),
            Retry::Soon => backoff.next_delay(),
            Retry::Slowly => backoff.slow_delay(),
        };
        warn!(error = %chain(&err), retry_in_ms = delay.as_millis(), "enrollment failed");
        tokio::time::sleep(delay).await;
    }
}

/// Sleeps until renewal is due, renews, and re-enrolls once the certificate has expired.
async fn identity_loop(
    cfg: &AgentConfig,
    state: &StateDir,
    identity: &watch::Sender<Session>,
) -> Result<(), AgentError> {
    let mut backoff = Backoff::new(cfg.retry);
    let mut operator_told = false;
    whoami(state, identity).await;
    loop {
        adopt_from_disk(cfg, state, identity);
        let session = identity.borrow().clone();
        let now = session.server_now();
        let expired = now >= session.cert.not_after;
        let due = renew_at(session.cert.not_before, session.cert.not_after);
        if !expired && now < due {
            tokio::time::sleep(until(now, due)).await;
            continue;
        }
        let (result, phase) = if !expired {
            (renew_once(cfg, state, &session).await, Phase::Renew)
        } else if cfg.join_token.is_some() {
            info!(not_after = %session.cert.not_after, "identity expired, enrolling again");
            (enroll_once(cfg, state).await, Phase::Reenroll)
        } else {
            (
                Err(AgentError::NoJoinToken {
                    service: cfg.service.to_string(),
                }),
                Phase::Reenroll,
            )
        };
        let err = match result {
            Ok(new) => {
                info!(spiffe_id = %new.spiffe_id, not_after = %new.cert.not_after, "identity renewed");
                identity.send_replace(new);
                backoff.reset();
                operator_told = false;
                continue;
            }
            Err(err) => err,
        };
        if let AgentError::Client(c) = &err
            && let Some(reason) = c.revocation()
        {
            return Err(AgentError::Revoked { reason });
        }
        let delay = match decide(&err, phase) {
            Retry::Soon => backoff.next_delay(),
            Retry::Slowly | Retry::Fatal => backoff.slow_delay(),
        };
        if let Some(advice) = operator_advice(&err, phase).filter(|_| !operator_told) {
            error!(error = %chain(&err), "{advice}");
            operator_told = true;
        } else {
            warn!(error = %chain(&err), retry_in_ms = delay.as_millis(), "identity renewal failed");
        }
        tokio::time::sleep(delay).await;
    }
}

/// Picks up an identity written by someone else (an operator running `ferry-agent enroll`
/// while this agent waits for help), so no restart is needed.
fn adopt_from_disk(cfg: &AgentConfig, state: &StateDir, identity: &watch::Sender<Session>) {
    let on_disk = std::fs::read_to_string(state.file(CERT_FILE)).ok();
    if on_disk.is_none_or(|pem| pem == identity.borrow().cert_pem) {
        return;
    }
    match load_session(cfg, state) {
        Ok(Some(stored)) if stored.cert_pem != identity.borrow().cert_pem => {
            info!(spiffe_id = %stored.spiffe_id, not_after = %stored.cert.not_after,
                "identity replaced in the state dir, using it");
            identity.send_replace(stored);
        }
        Ok(_) => {}
        Err(err) => warn!(error = %chain(&err), "could not re-read the state dir"),
    }
}

/// First contact with a stored identity: measures the clock skew and shows whether the
/// control plane still knows this node. Failures only log; the loop retries on its own.
async fn whoami(state: &StateDir, identity: &watch::Sender<Session>) {
    let session = identity.borrow().clone();
    if session.server_now() >= session.cert.not_after {
        return;
    }
    match session.client.whoami().await {
        Ok(Timed {
            body,
            clock_skew_ms,
        }) => {
            if body.spiffe_id != session.spiffe_id.to_string() {
                warn!(server_says = %body.spiffe_id, "control plane sees another identity");
            }
            identity.send_modify(|s| s.clock_skew_ms = clock_skew_ms);
            record_contact(state, &identity.borrow(), clock_skew_ms);
        }
        Err(err) => warn!(error = %chain(&err), "control plane not reachable yet"),
    }
}

async fn enroll_once(cfg: &AgentConfig, state: &StateDir) -> Result<Session, AgentError> {
    let token = cfg
        .join_token
        .as_ref()
        .ok_or_else(|| AgentError::NoJoinToken {
            service: cfg.service.to_string(),
        })?
        .read()?;
    let roots = bootstrap_roots(cfg, state).await?;
    // The key of an identity this node already holds (expired, say) goes into the CSR:
    // it proves to the control plane that this is the node enrolled before, which a
    // join token alone does not (enrolling over an existing node is refused otherwise).
    let held = state.load_identity().ok().flatten().filter(|s| {
        s.key.is(cfg.key_type)
            && s.cert
                .spiffe_id_for(&cfg.node_id)
                .is_ok_and(|id| id.service == cfg.service)
    });
    let key = match held {
        Some(stored) => stored.key,
        None => NodeKey::generate(cfg.key_type)?,
    };
    let request = EnrollRequest {
        service: cfg.service.clone(),
        node_id: cfg.node_id.clone(),
        join_token: token.expose().to_owned(),
        csr: key.csr_pem(&cfg.node_id)?,
    };
    let issued = Client::anonymous(&cfg.server, &roots)?
        .enroll(&request)
        .await?;
    let enrolled_at = issued.body.server_time;
    accept_issued(cfg, state, key, issued, enrolled_at)
}

async fn renew_once(
    cfg: &AgentConfig,
    state: &StateDir,
    session: &Session,
) -> Result<Session, AgentError> {
    let key = NodeKey::generate(cfg.key_type)?;
    let issued = session.client.renew(key.csr_pem(&cfg.node_id)?).await?;
    accept_issued(cfg, state, key, issued, session.enrolled_at)
}

/// The CAs to trust for enrollment: the operator's file or pin first, else `ca.pem`.
async fn bootstrap_roots(cfg: &AgentConfig, state: &StateDir) -> Result<String, AgentError> {
    let pem = match &cfg.ca {
        Some(CaPin::Fingerprint(pin)) => fetch_trust_bundle_pinned(&cfg.server, pin).await?,
        Some(CaPin::File(path)) => {
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?
        }
        None => state
            .load_ca()?
            .ok_or_else(|| ConfigError::NoCa(state.path().to_owned()))?,
    };
    pem_certificates(&pem, "the CA file")?;
    Ok(pem)
}

/// Checks that an issued certificate is this node's and certifies `key`, stores it, and
/// returns the session that uses it.
fn accept_issued(
    cfg: &AgentConfig,
    state: &StateDir,
    key: NodeKey,
    issued: Timed<IdentityIssued>,
    enrolled_at: OffsetDateTime,
) -> Result<Session, AgentError> {
    let Timed {
        body,
        clock_skew_ms,
    } = issued;
    let cert = CertInfo::from_pem(&body.certificate, "the issued certificate")?;
    if !key.matches(&cert) {
        return Err(IdentityError::Unexpected("it certifies another key".to_owned()).into());
    }
    let spiffe_id = cert.spiffe_id_for(&cfg.node_id)?;
    if spiffe_id.service != cfg.service || body.spiffe_id != spiffe_id.to_string() {
        let msg = format!("it names {spiffe_id} (answer says {})", body.spiffe_id);
        return Err(IdentityError::Unexpected(msg).into());
    }
    pem_certificates(&body.ca_certificates, "the issued CA bundle")?;
    let key_pem = key.to_pem();
    state.save_identity(&key_pem, &body.certificate, &body.ca_certificates)?;
    let client = Client::with_identity(
        &cfg.server,
        &body.ca_certificates,
        &body.certificate,
        &key_pem,
    )?;
    let session = Session {
        client,
        spiffe_id,
        cert,
        cert_pem: body.certificate,
        clock_skew_ms,
        enrolled_at,
    };
    record_contact(state, &session, clock_skew_ms);
    Ok(session)
}

/// Saves `agent-state.json` after a successful exchange. Losing it is harmless (it is
/// informational), so a failure is logged, not returned.
pub(crate) fn record_contact(state: &StateDir, session: &Session, clock_skew_ms: i64) {
    let cfg_server = session.client.server().to_owned();
    let record = AgentState {
        server: cfg_server,
        service: session.spiffe_id.service.clone(),
        node_id: session.spiffe_id.node.clone(),
        spiffe_id: session.spiffe_id.to_string(),
        last_contact: Some(OffsetDateTime::now_utc()),
        clock_skew_ms,
        enrolled_at: Some(session.enrolled_at),
    };
    if let Err(err) = state.save_state(&record) {
        warn!(error = %chain(&err), "could not save agent state");
    }
}

fn until(now: OffsetDateTime, at: OffsetDateTime) -> StdDuration {
    StdDuration::try_from(at - now)
        .unwrap_or(StdDuration::ZERO)
        .min(MAX_SLEEP)
}

/// An error and its sources, joined by ": ", on one line.
pub(crate) fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests;
