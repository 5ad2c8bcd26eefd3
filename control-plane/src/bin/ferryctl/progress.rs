//! Live progress of `--wait` on stderr: the line for each resource (pure functions of the
//! wire types), and a [`Reporter`] that redraws that line in place on a terminal, or
//! prints one every few seconds when stderr is a file or a pipe (CI logs).
//!
//! Progress never goes to stdout, which holds only the result.

use crate::output::{clean, duration};
use ferry_shared::api::{Delivery, DeliveryState, Rotation};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Cells in the rotation progress bar.
pub const BAR_WIDTH: usize = 10;
/// How often a line is printed when stderr is not a terminal.
pub const LOG_EVERY: Duration = Duration::from_secs(5);

/// `[#####.....] 50/100 delivered, 10 in flight, 0 failed`
pub fn rotation_line(r: &Rotation) -> String {
    format!(
        "{} {}/{} delivered, {} in flight, {} failed",
        bar(r.delivered, r.total, r.state == "done"),
        r.delivered,
        r.total,
        r.in_flight,
        r.failed
    )
}

/// `delivery 0af3...: pending (12s)`; the version once one carries it.
pub fn delivery_line(d: &Delivery, elapsed: Duration) -> String {
    format!(
        "delivery {}: {} ({})",
        clean(&d.delivery_id),
        delivery_status(d),
        duration(elapsed.as_secs())
    )
}

/// `pending`, `pending, version 7 issued`, `delivered, version 7`, `failed`, ...
pub fn delivery_status(d: &Delivery) -> String {
    match (d.state, d.version) {
        (DeliveryState::Pending, None) => "pending".to_owned(),
        (DeliveryState::Pending, Some(v)) => format!("pending, version {v} issued"),
        (DeliveryState::Delivered, Some(v)) => format!("delivered, version {v}"),
        (DeliveryState::Delivered, None) => "delivered".to_owned(),
        (DeliveryState::Failed, _) => "failed".to_owned(),
        (DeliveryState::Superseded, _) => "superseded".to_owned(),
    }
}

/// `done` of `total` as `#` cells in a bar of [`BAR_WIDTH`]; rounded down, so the bar is
/// only full when everything is. An empty rotation is full once it is `complete`.
pub fn bar(done: u64, total: u64, complete: bool) -> String {
    let filled = if total == 0 {
        if complete { BAR_WIDTH } else { 0 }
    } else {
        let cells = u128::from(done.min(total)) * BAR_WIDTH as u128 / u128::from(total);
        // At most BAR_WIDTH because done <= total.
        usize::try_from(cells).unwrap_or(BAR_WIDTH)
    };
    format!("[{}{}]", "#".repeat(filled), ".".repeat(BAR_WIDTH - filled))
}

/// Shows the latest progress line. Write errors are ignored: progress is a courtesy,
/// and a closed stderr must not turn a delivered certificate into a failed command.
pub struct Reporter<W: Write> {
    out: W,
    /// Redraw one line with `\r` (a terminal) or append lines (anything else).
    live: bool,
    every: Duration,
    /// Characters of the line currently on screen (live) to blank out when redrawing.
    drawn: usize,
    last_line: Option<String>,
    last_print: Option<Instant>,
}

impl Reporter<std::io::Stderr> {
    pub fn stderr() -> Self {
        let err = std::io::stderr();
        let live = err.is_terminal();
        Reporter::new(err, live, LOG_EVERY)
    }
}

impl<W: Write> Reporter<W> {
    pub fn new(out: W, live: bool, every: Duration) -> Self {
        Self {
            out,
            live,
            every,
            drawn: 0,
            last_line: None,
            last_print: None,
        }
    }

    /// A new state: redrawn at once when live, otherwise printed if `every` has passed
    /// since the last printed line (the first line is printed at once).
    pub fn update(&mut self, line: &str, now: Instant) {
        if self.live {
            self.redraw(line);
        } else if self
            .last_print
            .is_none_or(|at| now.saturating_duration_since(at) >= self.every)
        {
            self.print(line);
            self.last_print = Some(now);
        }
    }

    /// The final state: always shown, and the terminal's line is ended so what follows
    /// (the error line, the shell prompt) starts on a fresh one.
    pub fn finish(&mut self, line: &str) {
        if self.live {
            self.redraw(line);
            let _ = self.out.write_all(b"\n");
            self.drawn = 0;
        } else if self.last_line.as_deref() != Some(line) {
            self.print(line);
        }
        let _ = self.out.flush();
    }

    /// Ends a line left on a terminal without a final state, so an error line that
    /// follows starts on its own line.
    pub fn abandon(&mut self) {
        if self.live && self.drawn > 0 {
            let _ = self.out.write_all(b"\n");
            self.drawn = 0;
        }
        let _ = self.out.flush();
    }

    fn redraw(&mut self, line: &str) {
        let width = line.chars().count();
        let blank = self.drawn.saturating_sub(width);
        let _ = write!(self.out, "\r{line}{:blank$}", "");
        let _ = self.out.flush();
        self.drawn = width;
        self.last_line = Some(line.to_owned());
    }

    fn print(&mut self, line: &str) {
        let _ = writeln!(self.out, "{line}");
        let _ = self.out.flush();
        self.last_line = Some(line.to_owned());
    }

    #[cfg(test)]
    pub fn into_inner(self) -> W {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_shared::{NodeId, ServiceName};
    use time::macros::datetime;

    fn rotation(state: &str, total: u64, delivered: u64, in_flight: u64, failed: u64) -> Rotation {
        Rotation {
            rotation_id: "r1".into(),
            service: ServiceName::parse("web").expect("valid"),
            state: state.into(),
            max_in_flight: 10,
            total,
            delivered,
            failed,
            in_flight,
            queued: total.saturating_sub(delivered + failed + in_flight),
            created_at: datetime!(2026-01-01 00:00:00 UTC),
            finished_at: None,
        }
    }

    fn delivery(state: DeliveryState, version: Option<i64>) -> Delivery {
        Delivery {
            delivery_id: "d\n1".into(),
            service: ServiceName::parse("web").expect("valid"),
            node_id: NodeId::parse("n-1").expect("valid"),
            state,
            version,
            rotation_id: None,
            error: None,
            created_at: datetime!(2026-01-01 00:00:00 UTC),
            issued_at: None,
            finished_at: None,
        }
    }

    #[test]
    fn rotation_lines_match_the_documented_format() {
        assert_eq!(
            rotation_line(&rotation("running", 100, 50, 10, 0)),
            "[#####.....] 50/100 delivered, 10 in flight, 0 failed"
        );
        assert_eq!(
            rotation_line(&rotation("running", 3, 0, 3, 0)),
            "[..........] 0/3 delivered, 3 in flight, 0 failed"
        );
        assert_eq!(
            rotation_line(&rotation("done", 3, 2, 0, 1)),
            "[######....] 2/3 delivered, 0 in flight, 1 failed"
        );
        assert_eq!(
            rotation_line(&rotation("done", 0, 0, 0, 0)),
            "[##########] 0/0 delivered, 0 in flight, 0 failed"
        );
    }

    #[test]
    fn bars_round_down_and_never_overflow() {
        assert_eq!(bar(99, 100, false), "[#########.]");
        assert_eq!(bar(100, 100, false), "[##########]");
        assert_eq!(
            bar(7, 5, false),
            "[##########]",
            "more than total is clamped"
        );
        assert_eq!(bar(u64::MAX - 1, u64::MAX, false), "[#########.]");
        assert_eq!(bar(0, 0, false), "[..........]");
    }

    #[test]
    fn delivery_lines_show_state_version_and_elapsed() {
        let secs = Duration::from_secs;
        assert_eq!(
            delivery_line(&delivery(DeliveryState::Pending, None), secs(3)),
            "delivery d\\n1: pending (3s)"
        );
        let line = delivery_line(&delivery(DeliveryState::Pending, Some(7)), secs(65));
        assert!(
            line.ends_with(": pending, version 7 issued (1m5s)"),
            "{line}"
        );
        let line = delivery_line(&delivery(DeliveryState::Delivered, Some(7)), secs(0));
        assert!(line.ends_with(": delivered, version 7 (0s)"), "{line}");
        let line = delivery_line(&delivery(DeliveryState::Superseded, Some(7)), secs(1));
        assert!(line.ends_with(": superseded (1s)"), "{line}");
    }

    #[test]
    fn terminals_get_one_line_redrawn_in_place() {
        let mut r = Reporter::new(Vec::new(), true, LOG_EVERY);
        let t = Instant::now();
        r.update("pending (10s)", t);
        r.update("pending (9s)", t);
        r.finish("done");
        r.abandon();
        let text = String::from_utf8(r.into_inner()).expect("utf-8");
        assert_eq!(text, "\rpending (10s)\rpending (9s) \rdone        \n");

        let mut r = Reporter::new(Vec::new(), true, LOG_EVERY);
        r.update("half", t);
        r.abandon();
        assert_eq!(r.into_inner(), b"\rhalf\n");
    }

    #[test]
    fn logs_get_a_line_every_interval_and_the_final_state() {
        let mut r = Reporter::new(Vec::new(), false, LOG_EVERY);
        let t = Instant::now();
        r.update("a", t);
        r.update("b", t + Duration::from_secs(2));
        r.update("c", t + Duration::from_secs(5));
        r.update("d", t + Duration::from_secs(9));
        r.finish("e");
        r.finish("e");
        let text = String::from_utf8(r.into_inner()).expect("utf-8");
        assert_eq!(text, "a\nc\ne\n");

        // A final state that was just printed is not repeated.
        let mut r = Reporter::new(Vec::new(), false, LOG_EVERY);
        r.update("x", t);
        r.finish("x");
        assert_eq!(r.into_inner(), b"x\n");
    }
}
