//! The one place that decides what an error means for the agent's retry loops: retry
//! soon (transient), retry slowly while an operator acts, or end the run; and what the
//! operator is told.

use super::AgentError;
use crate::client::ClientError;
use crate::state::StateError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// First enrollment: nothing to keep alive yet.
    Enroll,
    /// Enrollment after the identity expired.
    Reenroll,
    Renew,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Transient: backoff with full jitter.
    Soon,
    /// Needs an operator, but the agent keeps going (and keeps trying at the slow pace).
    Slowly,
    /// Ends the run: a restart cannot help until an operator acts.
    Fatal,
}

/// The one place that decides what an error means for the retry loop.
pub(crate) fn decide(err: &AgentError, phase: Phase) -> Retry {
    let transient = match err {
        AgentError::Client(c) => match c.status() {
            Some(s) => s == 408 || s == 429 || s >= 500,
            None => matches!(
                c,
                ClientError::Transport { .. } | ClientError::TooLarge { .. }
            ),
        },
        AgentError::State(StateError::Io { .. }) => phase != Phase::Enroll,
        _ => false,
    };
    match (transient, phase) {
        (true, _) => Retry::Soon,
        (false, Phase::Enroll) => Retry::Fatal,
        (false, Phase::Reenroll | Phase::Renew) => Retry::Slowly,
    }
}

/// What an operator must do, for errors that will not go away on their own.
pub(crate) fn operator_advice(err: &AgentError, phase: Phase) -> Option<&'static str> {
    let status = match err {
        AgentError::Client(c) => c.status(),
        _ => None,
    };
    match (phase, status, err) {
        (Phase::Renew, Some(401 | 403), _) => Some(
            "the control plane refused this node's identity (node revoked or deleted): \
             re-enroll it with a new join token (ferry-agent enroll ... --join-token TOKEN)",
        ),
        (_, _, AgentError::NoJoinToken { .. }) => Some(
            "the identity certificate expired and no join token is configured: create a join \
             token for this service and set join_token_file (or run ferry-agent enroll)",
        ),
        _ if decide(err, phase) == Retry::Soon => None,
        _ => Some("identity renewal keeps failing and needs an operator"),
    }
}

/// What a failed delivery request (poll, ack, CSR) means: retry soon (transient), retry
/// slowly (the node is refused, 401/403, or the answer is unusable: an operator must act),
/// or give this request up (any other 4xx: sending it again cannot help).
pub(crate) fn decide_request(err: &ClientError) -> Retry {
    match err.status() {
        Some(s) if s == 408 || s == 429 || s >= 500 => Retry::Soon,
        Some(401 | 403) => Retry::Slowly,
        Some(_) => Retry::Fatal,
        None if matches!(
            err,
            ClientError::Transport { .. } | ClientError::TooLarge { .. }
        ) =>
        {
            Retry::Soon
        }
        None => Retry::Slowly,
    }
}

/// What an operator must do when delivery requests are refused.
pub(crate) fn delivery_advice(err: &ClientError) -> Option<&'static str> {
    match err.status() {
        Some(401 | 403) => Some(
            "the control plane refused this node's identity for bundle delivery (node revoked \
             or deleted): re-enroll it with a new join token; the installed files are kept",
        ),
        _ => None,
    }
}
