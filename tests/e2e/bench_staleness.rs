//! The database-paths benchmark in its smoke size (`ferry-bench-staleness --smoke`: 50
//! services, 5,000 nodes), so `scripts/bench.sh staleness` cannot rot: it must seed,
//! see the detector fire, and print every figure with its EXPLAIN plans and the table
//! against the target.

use ferry_tests::bin_path;

/// Every figure the smoke run prints: the big service has more than one node page, the
/// 50 services fit on one status page (so there is no later one).
const FIGURES: [&str; 8] = [
    "detector.pass",
    "renewal.pick",
    "status.first",
    "status.service",
    "nodes.first",
    "nodes.later",
    "nodes.later.max",
    "dashboard",
];

#[tokio::test]
async fn the_database_paths_benchmark_smoke_run_prints_every_figure() {
    // Arrange: PostgreSQL from FERRY_TEST_DATABASE_URL, as every PostgreSQL test.
    let bench = bin_path("ferry-bench-staleness");

    // Act
    let out = tokio::process::Command::new(bench)
        .arg("--smoke")
        .kill_on_drop(true)
        .output()
        .await
        .expect("ferry-bench-staleness runs");

    // Assert
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ferry-bench-staleness --smoke failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for key in FIGURES {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("figure {key} ")))
            .unwrap_or_else(|| panic!("figure {key} missing from:\n{stdout}"));
        let ms: f64 = line
            .split_whitespace()
            .nth(2)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no value in {line:?}"));
        assert!(ms.is_finite() && ms > 0.0, "{line}");
    }
    for plan in [
        "renewal: pick",
        "status: fleet line",
        "node page: a later page",
    ] {
        assert!(
            stdout.contains(&format!("EXPLAIN ({plan}")),
            "no plan for {plan}"
        );
    }
    assert!(
        stdout.contains("| GET /v1/status (first page of 100) |"),
        "{stdout}"
    );
}
