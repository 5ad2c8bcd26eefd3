//! The benchmark binaries of this crate (`ferry-bench`, `ferry-bench-floors`,
//! `ferry-bench-staleness`) print each figure as a line `figure <key> <value> <unit>`.
//! [`smoke_run`] runs one of them in its smoke form for the test suite, so the harness
//! of `scripts/bench.sh` cannot rot, and returns the figures it printed.

use std::collections::HashMap;
use std::ffi::OsStr;

/// What a benchmark run printed.
pub struct SmokeRun {
    pub stdout: String,
    /// `figure` lines by key.
    pub figures: HashMap<String, f64>,
}

impl SmokeRun {
    /// The figure `key`; panics (showing the whole output) when it was not printed.
    pub fn figure(&self, key: &str) -> f64 {
        *self
            .figures
            .get(key)
            .unwrap_or_else(|| panic!("figure {key} missing from:\n{}", self.stdout))
    }
}

/// Runs the workspace binary `bin` with `args`, asserts it exits 0, and reads its figures.
pub fn smoke_run<I, S>(bin: &str, args: I) -> SmokeRun
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let started = std::time::Instant::now();
    let out = std::process::Command::new(crate::bin_path(bin))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{bin} does not start: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{bin} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "{bin} smoke run took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let figures = stdout
        .lines()
        .filter_map(|l| {
            let mut f = l.strip_prefix("figure ")?.split_whitespace();
            let (key, value) = (f.next()?, f.next()?);
            Some((key.to_owned(), value.parse().ok()?))
        })
        .collect();
    SmokeRun { stdout, figures }
}
