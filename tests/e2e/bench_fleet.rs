//! The fleet benchmark harness in its smoke form (a few hundred simulated agents in
//! child processes against a control-plane process), so `scripts/bench.sh fleet` cannot
//! rot: every phase must finish and print its figure.

use ferry_tests::{bench::smoke_run, bin_path};

const FIGURES: [&str; 15] = [
    "idle.job_statements_per_second",
    "enroll.failures",
    "enroll.rate",
    "enroll.server_cpu_ms",
    "idle.statements_per_poll",
    "idle.wal_bytes_per_second",
    "idle.server_cpu_ms_per_agent_minute",
    "refresh.server_cpu_ms",
    "cycles.server_cpu_ms",
    "hot.rotation.nodes",
    "hold.ferry.200",
    "hold.ferry.300",
    "refresh.p99.200",
    "fanout.200",
    "cycles.rotation",
];

#[test]
fn the_fleet_benchmark_smoke_run_prints_every_figure() {
    // Arrange: the harness runs the control-plane binary beside it, over PostgreSQL
    // from FERRY_TEST_DATABASE_URL.
    bin_path("ferry-control-plane");

    // Act
    let run = smoke_run("ferry-bench", ["fleet", "--smoke"]);

    // Assert
    for key in FIGURES {
        let v = run.figure(key);
        assert!(v.is_finite() && v >= 0.0, "figure {key} = {v}");
    }
    assert_eq!(run.figure("enroll.failures"), 0.0, "{}", run.stdout);
    assert!(run.figure("enroll.rate") > 0.0, "{}", run.stdout);
}
