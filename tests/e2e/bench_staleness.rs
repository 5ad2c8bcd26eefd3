//! The database-paths benchmark in its smoke size (`ferry-bench-staleness --smoke`: 50
//! services, 5,000 nodes), so `scripts/bench.sh staleness` cannot rot: it must seed,
//! see the detector fire, and print every figure with its EXPLAIN plans and the table
//! against the target.

use ferry_tests::bench::smoke_run;

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

#[test]
fn the_database_paths_benchmark_smoke_run_prints_every_figure() {
    // Arrange: PostgreSQL from FERRY_TEST_DATABASE_URL, as every PostgreSQL test.

    // Act
    let run = smoke_run("ferry-bench-staleness", ["--smoke"]);

    // Assert
    let stdout = &run.stdout;
    for key in FIGURES {
        let ms = run.figure(key);
        assert!(ms.is_finite() && ms > 0.0, "figure {key} = {ms}");
    }
    for plan in [
        "renewal: pick",
        "staleness detector",
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
