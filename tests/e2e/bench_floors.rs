//! The same-run floors benchmark runs end to end in its smoke size: `ferry-bench-floors
//! all --smoke` against a database of the harness's PostgreSQL exits 0 and prints every
//! figure it promises (held connections, PostgreSQL, signing, agent footprint) with a
//! positive value.

use ferry_tests::{Backend, TestDb, bin_path};
use std::collections::HashMap;

/// Every figure the smoke run prints, and whether zero is a valid value (an idle agent
/// may well use no measurable CPU in a 10 s window).
const FIGURES: &[(&str, bool)] = &[
    ("hold.tcp.500", false),
    ("hold.tls.500", false),
    ("pg.notify.p50", false),
    ("pg.notify.p99", false),
    ("pg.commit.p50", false),
    ("pg.commit.p99", false),
    ("pg.commit.serial", false),
    ("pg.pgbench.tps", false),
    ("sign.leaf.1thread", false),
    ("sign.leaf.all_cores", false),
    ("sign.leaf.per_cpu_second", false),
    ("sign.central.1thread", false),
    ("sign.central.all_cores", false),
    ("sign.central.per_cpu_second", false),
    ("agent.binary", false),
    ("agent.rss.acked", false),
    ("agent.rss.idle", false),
    ("agent.hwm", false),
    ("agent.cpu.idle", true),
];

#[test]
fn smoke_run_prints_every_figure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = TestDb::new(Backend::Postgres, dir.path());
    let url = db.url.clone().expect("PostgreSQL URL");
    let started = std::time::Instant::now();
    let out = std::process::Command::new(bin_path("ferry-bench-floors"))
        .args(["all", "--smoke", "--url", &url])
        // The agent built with this test run, not a release build of another commit.
        .arg("--agent-bin")
        .arg(bin_path("ferry-agent"))
        .output()
        .expect("ferry-bench-floors runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "ferry-bench-floors failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let figures: HashMap<&str, f64> = stdout
        .lines()
        .filter_map(|l| {
            let mut f = l.strip_prefix("figure ")?.split_whitespace();
            let (key, value, _unit) = (f.next()?, f.next()?, f.next()?);
            Some((key, value.parse().ok()?))
        })
        .collect();
    for (key, zero_ok) in FIGURES {
        let v = figures
            .get(key)
            .unwrap_or_else(|| panic!("figure {key} missing from:\n{stdout}"));
        assert!(
            v.is_finite() && (*v > 0.0 || (*zero_ok && *v == 0.0)),
            "figure {key} = {v}:\n{stdout}"
        );
    }
    eprintln!(
        "ferry-bench-floors all --smoke took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
