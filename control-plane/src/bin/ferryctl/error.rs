//! What can make a `ferryctl` run fail, the one line printed for it, and its exit code.
//!
//! Every failure ends as exactly one `error: ...` line on stderr. Lines pass through
//! [`redact`] before printing, so the API token never appears in one, whatever a server
//! or a library chose to echo.

use ferry_shared::Problem;
use std::error::Error as StdError;
use std::fmt::Write as _;

/// Exit code when the server refused the request or could not be reached.
pub const EXIT_FAILED: u8 = 1;
/// Exit code of usage errors; clap uses the same for the errors it finds.
pub const EXIT_USAGE: u8 = 2;

#[derive(Debug)]
pub enum CliError {
    /// Local input that clap could not check: no CA given, unreadable token file.
    Usage(String),
    /// The server answered with an error status.
    Refused(Problem),
    /// No answer: name resolution, connection, TLS handshake or timeout.
    Unreachable { url: String, cause: String },
    /// A 2xx answer that is not what the API promises.
    BadResponse { url: String, detail: String },
    /// The server's CA does not match the pin the user gave.
    Untrusted(String),
    /// The request was accepted but its outcome is bad: a delivery failed or was
    /// superseded, a rotation finished with failures, or `--wait` timed out.
    Unsuccessful(String),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => EXIT_USAGE,
            CliError::Refused(_)
            | CliError::Unreachable { .. }
            | CliError::BadResponse { .. }
            | CliError::Untrusted(_)
            | CliError::Unsuccessful(_) => EXIT_FAILED,
        }
    }

    /// Failures worth trying again with the same request: no answer, overload, or a
    /// server-side error that may pass.
    pub fn is_transient(&self) -> bool {
        match self {
            CliError::Unreachable { .. } => true,
            CliError::Refused(problem) => problem.status == 429 || problem.status >= 500,
            _ => false,
        }
    }

    /// The single line to print, before redaction.
    pub fn line(&self) -> String {
        let text = match self {
            CliError::Usage(msg) | CliError::Untrusted(msg) | CliError::Unsuccessful(msg) => {
                msg.clone()
            }
            CliError::Refused(problem) => problem.to_string(),
            CliError::Unreachable { url, cause } => format!("cannot reach {url}: {cause}"),
            CliError::BadResponse { url, detail } => {
                format!("unexpected response from {url}: {detail}")
            }
        };
        format!("error: {}", one_line(&text))
    }
}

/// The error for a non-2xx answer: the server's problem document when it sent one,
/// otherwise the status' reason with the start of whatever body came back (a proxy's
/// HTML page, say).
pub fn refusal(status: u16, body: &[u8]) -> CliError {
    if let Ok(problem) = serde_json::from_slice::<Problem>(body) {
        return CliError::Refused(problem);
    }
    let title = reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("HTTP error")
        .to_owned();
    let text = String::from_utf8_lossy(body);
    let first = text.lines().map(str::trim).find(|l| !l.is_empty());
    let detail = first.map(|l| truncate(l, 200));
    CliError::Refused(Problem {
        kind: "about:blank".to_owned(),
        title,
        status,
        detail,
    })
}

/// The causes below a library error, joined with `: `. The top-level message of a
/// reqwest error only repeats the URL, which the caller prints already.
pub fn causes(err: &(dyn StdError + 'static)) -> String {
    let mut out = String::new();
    let mut next = err.source();
    while let Some(e) = next {
        let msg = e.to_string();
        // Layers often repeat their inner error's text; print each message once.
        if !out.contains(&msg) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&msg);
        }
        next = e.source();
    }
    if out.is_empty() { err.to_string() } else { out }
}

/// Replaces every occurrence of each non-empty secret in `line`.
pub fn redact(line: &str, secrets: &[String]) -> String {
    secrets
        .iter()
        .filter(|s| !s.is_empty())
        .fold(line.to_owned(), |acc, s| {
            acc.replace(s.as_str(), "[redacted]")
        })
}

/// Collapses newlines and other control characters so the message stays one line.
fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '\n' || c == '\r' || c == '\t' {
            if !out.ends_with(' ') {
                out.push(' ');
            }
        } else if c.is_control() {
            // Writing to a String cannot fail.
            let _ = write!(out, "{}", c.escape_default());
        } else {
            out.push(c);
        }
    }
    out.trim_end().to_owned()
}

fn truncate(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_bodies_render_title_status_and_detail() {
        let body = br#"{"type":"https://ferry.dev/problems/not-found","title":"Not Found",
            "status":404,"detail":"no service named \"web\""}"#;
        let err = refusal(404, body);
        assert_eq!(
            err.line(),
            r#"error: Not Found (404): no service named "web""#
        );
        assert_eq!(err.exit_code(), EXIT_FAILED);

        let no_detail = br#"{"type":"about:blank","title":"Unauthorized","status":401}"#;
        assert_eq!(refusal(401, no_detail).line(), "error: Unauthorized (401)");
    }

    #[test]
    fn non_problem_bodies_fall_back_to_the_status_reason() {
        let html = b"\n<html>bad gateway</html>\nmore";
        assert_eq!(
            refusal(502, html).line(),
            "error: Bad Gateway (502): <html>bad gateway</html>"
        );
        assert_eq!(refusal(503, b"").line(), "error: Service Unavailable (503)");
        let long = "x".repeat(500);
        let line = refusal(500, long.as_bytes()).line();
        assert!(line.len() < 260 && line.ends_with("..."), "{line}");
    }

    #[test]
    fn multi_line_details_print_as_one_line() {
        let body = br#"{"type":"t","title":"Bad\nRequest","status":400,"detail":"a\nb\u001bc"}"#;
        let line = refusal(400, body).line();
        assert_eq!(line.lines().count(), 1);
        assert_eq!(line, r"error: Bad Request (400): a b\u{1b}c");
    }

    #[test]
    fn unreachable_and_usage_lines_and_codes() {
        let err = CliError::Unreachable {
            url: "https://127.0.0.1:1/v1/services".into(),
            cause: "Connection refused (os error 111)".into(),
        };
        assert_eq!(
            err.line(),
            "error: cannot reach https://127.0.0.1:1/v1/services: Connection refused (os error 111)"
        );
        assert_eq!(err.exit_code(), 1);
        assert_eq!(CliError::Usage("no CA".into()).exit_code(), 2);
        let failed = CliError::Unsuccessful("delivery d1 failed:\nhook exited 1".into());
        assert_eq!(failed.exit_code(), 1);
        assert_eq!(failed.line(), "error: delivery d1 failed: hook exited 1");
    }

    #[test]
    fn only_unanswered_and_server_side_failures_are_transient() {
        let unreachable = CliError::Unreachable {
            url: "u".into(),
            cause: "c".into(),
        };
        assert!(unreachable.is_transient());
        assert!(refusal(503, b"").is_transient());
        assert!(refusal(429, b"").is_transient());
        assert!(!refusal(404, b"").is_transient());
        assert!(!refusal(409, b"").is_transient());
        assert!(!CliError::Unsuccessful("x".into()).is_transient());
    }

    #[test]
    fn the_token_is_never_in_an_error_line() {
        let token = "fy_secret_0123456789".to_owned();
        let body = format!(
            r#"{{"type":"t","title":"Unauthorized","status":401,"detail":"token {token} is unknown"}}"#
        );
        let line = redact(
            &refusal(401, body.as_bytes()).line(),
            std::slice::from_ref(&token),
        );
        assert!(!line.contains(&token), "{line}");
        assert_eq!(
            line,
            "error: Unauthorized (401): token [redacted] is unknown"
        );
        // Empty secrets (no token given) leave the line alone.
        assert_eq!(redact("error: x", &[String::new()]), "error: x");
    }

    #[test]
    fn causes_skip_the_top_message_and_repeats() {
        #[derive(Debug)]
        struct E(&'static str, Option<Box<E>>);
        impl std::fmt::Display for E {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl StdError for E {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                self.1.as_deref().map(|e| e as _)
            }
        }
        let leaf = E("refused", None);
        let err = E(
            "top url",
            Some(Box::new(E("connect: refused", Some(Box::new(leaf))))),
        );
        assert_eq!(causes(&err), "connect: refused");
        assert_eq!(causes(&E("alone", None)), "alone");
    }
}
