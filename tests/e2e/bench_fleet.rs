//! The fleet benchmark harness in its smoke form (a few hundred simulated agents in
//! child processes against a control-plane process), so `scripts/bench.sh` cannot rot:
//! every phase must finish and print its figure.

use ferry_tests::bin_path;

const FIGURES: [&str; 7] = [
    "enroll.failures",
    "enroll.rate",
    "hold.ferry.200",
    "hold.ferry.300",
    "refresh.p99.200",
    "fanout.200",
    "cycles.rotation",
];

#[tokio::test]
async fn the_fleet_benchmark_smoke_run_prints_every_figure() {
    // Arrange: the harness needs the control-plane binary beside it and PostgreSQL.
    let bench = bin_path("ferry-bench");
    bin_path("ferry-control-plane");

    // Act
    let out = tokio::process::Command::new(bench)
        .arg("--smoke")
        .kill_on_drop(true)
        .output()
        .await
        .expect("ferry-bench runs");

    // Assert
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ferry-bench --smoke failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for key in FIGURES {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("figure {key}")))
            .unwrap_or_else(|| panic!("figure {key} missing from:\n{stdout}"));
        let value: f64 = line
            .split_whitespace()
            .nth(2)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no value in {line:?}"));
        assert!(value.is_finite() && value >= 0.0, "{line}");
    }
    assert!(
        stdout.contains("figure enroll.failures 0.00 "),
        "enrollment attempts failed:\n{stdout}"
    );
}
