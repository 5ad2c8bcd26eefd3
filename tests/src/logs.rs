//! What the in-process control planes log at WARN and above, kept in memory so a test
//! can check what a log line says and, above all, what it must not say (a URL's path
//! or query, a response body). Installed by [`crate::init`] beside the test writer.
//!
//! One buffer per test process: nextest runs each test in a process of its own;
//! under `cargo test` tests share it, so a test picks its lines by something only it
//! has (the port of its own receiver, its service name).

use std::io::Write;
use std::sync::Mutex;

/// Lines kept at most; the oldest half goes when the buffer is full.
const MAX_LINES: usize = 100_000;

static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The warnings and errors logged so far that contain `needle`, one formatted line
/// each (level, target, fields, message; no colours).
pub fn warnings_with(needle: &str) -> Vec<String> {
    LINES
        .lock()
        .expect("log buffer lock")
        .iter()
        .filter(|l| l.contains(needle))
        .cloned()
        .collect()
}

/// A writer for one event: the formatter writes the line, dropping it keeps it.
#[derive(Default)]
pub struct Capture(Vec<u8>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let line = String::from_utf8_lossy(&self.0).trim_end().to_owned();
        // A test that panicked while holding the lock poisoned it; the lines are intact.
        let mut lines = LINES.lock().unwrap_or_else(|p| p.into_inner());
        if lines.len() >= MAX_LINES {
            lines.drain(..MAX_LINES / 2);
        }
        lines.push(line);
    }
}
