//! `--wait`: polls a resource until its outcome is known or time runs out, keeping the
//! progress line current.
//!
//! Transient failures (no answer, 429, 5xx) are ridden out until the deadline: a network
//! blip must not abort an hour-long rotation. Any other failure ends the wait at once.

use crate::commands::bad_body;
use crate::error::CliError;
use crate::output::duration;
use crate::progress::Reporter;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::future::Future;
use std::io::Write;
use std::time::{Duration, Instant};

/// What a state of the awaited resource means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not finished: poll again.
    Waiting,
    /// Finished as asked: exit 0.
    Succeeded,
    /// Finished otherwise, and why: exit 1.
    Failed(String),
}

impl Verdict {
    /// The command's result for a finished state; `None` while still waiting.
    pub fn outcome(self) -> Option<Result<(), CliError>> {
        match self {
            Verdict::Waiting => None,
            Verdict::Succeeded => Some(Ok(())),
            Verdict::Failed(why) => Some(Err(CliError::Unsuccessful(why))),
        }
    }
}

/// How to wait for one resource of type `T`.
pub struct Watch<T> {
    /// What is awaited, for messages: `delivery 0af3...`.
    pub what: String,
    /// Pause between polls.
    pub every: Duration,
    /// Give up this long after the wait started.
    pub timeout: Duration,
    pub verdict: fn(&T) -> Verdict,
    /// The progress line for a state, given the time since the wait started.
    pub line: fn(&T, Duration) -> String,
    /// A state in short, for the timeout message: `pending, version 7 issued`.
    pub status: fn(&T) -> String,
}

/// How a wait ended: the last state seen (the server's JSON and its parsed form), and the
/// command's result: `Ok` when it succeeded, [`CliError::Unsuccessful`] when it failed
/// or timed out.
pub struct Watched<T> {
    pub last: Option<(Value, T)>,
    pub outcome: Result<(), CliError>,
}

/// Polls until the verdict is not [`Verdict::Waiting`] or `watch.timeout` has passed.
/// `Err` only for a failure that is not transient (401, 404, a malformed body).
pub async fn watch<T, F, Fut, W>(
    watch: &Watch<T>,
    mut poll: F,
    reporter: &mut Reporter<W>,
) -> Result<Watched<T>, CliError>
where
    T: DeserializeOwned,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Value, CliError>>,
    W: Write,
{
    let start = Instant::now();
    let deadline = start + watch.timeout;
    let mut last: Option<(Value, T)> = None;
    let mut last_line: Option<String> = None;
    let mut last_status: Option<String> = None;
    let mut last_error: Option<CliError> = None;
    loop {
        // At least one interval per request, so the poll at the deadline gets an answer.
        let budget = deadline
            .saturating_duration_since(Instant::now())
            .max(watch.every);
        let answer = match tokio::time::timeout(budget, poll()).await {
            Ok(answer) => answer,
            Err(_) => break,
        };
        let elapsed = start.elapsed();
        match answer {
            Ok(body) => {
                let state: T = serde_json::from_value(body.clone()).map_err(|e| {
                    reporter.abandon();
                    bad_body(e)
                })?;
                let line = (watch.line)(&state, elapsed);
                let verdict = (watch.verdict)(&state);
                last = Some((body, state));
                last_error = None;
                if let Some(outcome) = verdict.outcome() {
                    reporter.finish(&line);
                    return Ok(Watched { last, outcome });
                }
                reporter.update(&line, Instant::now());
                last_line = Some(line);
                last_status = last.as_ref().map(|(_, state)| (watch.status)(state));
            }
            Err(e) if e.is_transient() => {
                let line = format!(
                    "{}: no answer, retrying ({})",
                    watch.what,
                    duration(elapsed.as_secs())
                );
                reporter.update(&line, Instant::now());
                last_error = Some(e);
            }
            Err(e) => {
                reporter.abandon();
                return Err(e);
            }
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            break;
        }
        tokio::time::sleep(watch.every.min(remaining)).await;
    }
    let seen = match (&last_error, &last_status) {
        (Some(e), _) => format!("; last error: {}", e.line().trim_start_matches("error: ")),
        (None, Some(status)) => format!("; last seen: {status}"),
        (None, None) => String::new(),
    };
    if let Some(line) = &last_line {
        reporter.finish(line);
    } else {
        reporter.abandon();
    }
    let why = format!(
        "timed out after {} waiting for {}{seen}",
        duration(watch.timeout.as_secs()),
        watch.what
    );
    Ok(Watched {
        last,
        outcome: Err(CliError::Unsuccessful(why)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::refusal;
    use serde_json::json;
    use std::collections::VecDeque;

    /// A resource that is done when `n` reaches 3 and failed when it is negative.
    fn counter() -> Watch<i64> {
        Watch {
            what: "counter c1".into(),
            every: Duration::from_millis(1),
            timeout: Duration::from_secs(5),
            verdict: |n| match *n {
                3 => Verdict::Succeeded,
                n if n < 0 => Verdict::Failed(format!("counter went to {n}")),
                _ => Verdict::Waiting,
            },
            line: |n, _| format!("at {n}"),
            status: |n| format!("{n}"),
        }
    }

    async fn run(
        w: &Watch<i64>,
        answers: Vec<Result<Value, CliError>>,
    ) -> (Result<Watched<i64>, CliError>, String) {
        let mut answers = VecDeque::from(answers);
        let mut reporter = Reporter::new(Vec::new(), false, Duration::ZERO);
        let poll = || {
            let next = answers.pop_front();
            async move {
                match next {
                    Some(answer) => answer,
                    // Out of answers: hang, as a server that stopped answering would.
                    None => std::future::pending().await,
                }
            }
        };
        let result = watch(w, poll, &mut reporter).await;
        let log = String::from_utf8(reporter.into_inner()).expect("utf-8");
        (result, log)
    }

    #[tokio::test]
    async fn waits_through_progress_and_transient_errors_until_done() {
        let unreachable = CliError::Unreachable {
            url: "u".into(),
            cause: "refused".into(),
        };
        let answers = vec![
            Ok(json!(1)),
            Err(unreachable),
            Err(refusal(503, b"")),
            Ok(json!(2)),
            Ok(json!(3)),
        ];
        let (result, log) = run(&counter(), answers).await;
        let watched = result.expect("no hard error");
        assert!(watched.outcome.is_ok());
        assert_eq!(watched.last, Some((json!(3), 3)));
        assert!(
            log.starts_with("at 1\ncounter c1: no answer, retrying ("),
            "{log}"
        );
        assert!(log.ends_with("at 2\nat 3\n"), "{log}");
    }

    #[tokio::test]
    async fn failed_states_end_the_wait_with_exit_1() {
        let (result, _) = run(&counter(), vec![Ok(json!(1)), Ok(json!(-1))]).await;
        let err = result.expect("no hard error").outcome.expect_err("failed");
        assert_eq!(err.exit_code(), 1);
        assert_eq!(err.line(), "error: counter went to -1");
    }

    #[tokio::test]
    async fn refusals_and_malformed_bodies_end_the_wait_at_once() {
        let (result, _) = run(&counter(), vec![Ok(json!(1)), Err(refusal(404, b""))]).await;
        let err = result.err().expect("404 is not waited out");
        assert_eq!(err.line(), "error: Not Found (404)");

        let (result, _) = run(&counter(), vec![Ok(json!("three"))]).await;
        assert_eq!(result.err().map(|e| e.exit_code()), Some(1));
    }

    #[tokio::test]
    async fn timeouts_report_the_last_state_or_error() {
        let mut w = counter();
        w.timeout = Duration::from_millis(30);
        let (result, log) = run(&w, vec![Ok(json!(1)), Ok(json!(2))]).await;
        let watched = result.expect("no hard error");
        assert_eq!(watched.last.map(|(_, n)| n), Some(2));
        let err = watched.outcome.expect_err("timed out");
        assert_eq!(err.exit_code(), 1);
        assert_eq!(
            err.line(),
            "error: timed out after 0s waiting for counter c1; last seen: 2"
        );
        assert!(log.ends_with("at 2\n"), "{log}");

        let answers = (0..1000).map(|_| Err(refusal(502, b""))).collect();
        let (result, _) = run(&w, answers).await;
        let watched = result.expect("no hard error");
        assert!(watched.last.is_none());
        let line = watched.outcome.expect_err("timed out").line();
        assert!(line.ends_with("last error: Bad Gateway (502)"), "{line}");
    }

    #[test]
    fn verdicts_map_to_exit_codes() {
        assert!(Verdict::Waiting.outcome().is_none());
        assert!(matches!(Verdict::Succeeded.outcome(), Some(Ok(()))));
        let failed = Verdict::Failed("x".into()).outcome();
        assert_eq!(failed.and_then(Result::err).map(|e| e.exit_code()), Some(1));
    }
}
