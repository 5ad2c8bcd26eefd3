//! Reads of `/proc/<pid>`: resident memory (`VmRSS`, `VmHWM`), CPU time (`utime` +
//! `stime`), and waiting for a process's memory to settle.

use anyhow::{Context, Result};
use std::time::{Duration, Instant};

/// A `kB` line of `/proc/<pid>/status` (`VmRSS`, `VmHWM`), in KiB.
pub fn status_kb(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

/// `utime + stime` of a process (every thread, dead ones included), in clock ticks.
pub fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces; fields after it are plain.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc/<pid>/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14, stime field 15.
    let field = |n: usize| -> Result<u64> {
        fields
            .get(n - 3)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("field {n} of /proc/{pid}/stat"))
    };
    Ok(field(14)? + field(15)?)
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux when that fails).
pub fn ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// A settled RSS reading.
pub struct Settled {
    pub rss_kb: u64,
    pub waited: Duration,
    /// False when `max_wait` passed before the readings stopped moving.
    pub settled: bool,
}

/// Samples `VmRSS` every `interval` until three readings in a row lie within 64 KiB of
/// each other, or `max_wait` passes.
pub fn settle(pid: u32, interval: Duration, max_wait: Duration) -> Result<Settled> {
    let started = Instant::now();
    let mut last: Vec<u64> = Vec::new();
    loop {
        last.push(status_kb(pid, "VmRSS")?);
        if last.len() > 3 {
            last.remove(0);
        }
        let steady = last.len() == 3
            && last.iter().max().unwrap_or(&0) - last.iter().min().unwrap_or(&0) <= 64;
        if steady || started.elapsed() >= max_wait {
            return Ok(Settled {
                rss_kb: *last.last().unwrap_or(&0),
                waited: started.elapsed(),
                settled: steady,
            });
        }
        std::thread::sleep(interval);
    }
}
