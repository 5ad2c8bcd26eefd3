//! The same-run floors benchmark runs end to end in its smoke size: `ferry-bench-floors
//! all --smoke` against a database of the harness's PostgreSQL exits 0 and prints every
//! figure it promises (held connections, PostgreSQL, signing, agent footprint) with a
//! positive value.

use ferry_tests::{Backend, TestDb, bench::smoke_run, bin_path};
use std::ffi::OsStr;

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
    // Arrange
    let dir = tempfile::tempdir().expect("tempdir");
    let db = TestDb::new(Backend::Postgres, dir.path());
    let url = db.url.clone().expect("PostgreSQL URL");
    // The agent built with this test run, not a release build of another commit.
    let agent = bin_path("ferry-agent");

    // Act
    let run = smoke_run(
        "ferry-bench-floors",
        [
            OsStr::new("all"),
            OsStr::new("--smoke"),
            OsStr::new("--url"),
            OsStr::new(&url),
            OsStr::new("--agent-bin"),
            agent.as_os_str(),
        ],
    );

    // Assert
    for (key, zero_ok) in FIGURES {
        let v = run.figure(key);
        assert!(
            v.is_finite() && (v > 0.0 || (*zero_ok && v == 0.0)),
            "figure {key} = {v}:\n{}",
            run.stdout
        );
    }
}
