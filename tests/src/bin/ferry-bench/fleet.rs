//! `ferry-bench fleet`: one control-plane process over PostgreSQL and swarms of simulated
//! agents (separate processes, real protocol, real mTLS), measured in phases:
//!
//! 1. enrollment storm: every agent of service `bench` enrolls at once;
//! 2. held long-polls: control-plane memory per held poll with `agents` connected, and
//!    again with `extra` more agents (service `extra`) connected, then those leave;
//! 3. refresh -> ack: forced refreshes at a fixed rate, latency from the control plane's
//!    own record (`deliveries.created_at` -> `finished_at`);
//! 4. fan-out: one service-wide metadata change until every agent acked it;
//! 5. sustained cycles: a rotation of the whole service (issue + deliver + ack of a new
//!    certificate per node) with everything in flight, cycles per second.
//!
//! Every figure is printed as `figure <key> <value> <unit>` next to its target.

use crate::measure::{self, HotStats};
use crate::procs::{ControlPlaneProc, CpuMeter, RunningSwarm, Swarm, SwarmPlan};
use anyhow::{Context, ensure};
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use ferry_tests::{Backend, TestDb};
use reqwest::Method;
use serde_json::json;
use std::time::{Duration, Instant};

pub struct FleetArgs {
    pub agents: usize,
    pub extra: usize,
    pub per_process: usize,
    pub concurrency: usize,
    pub refreshes: usize,
    pub rate: u64,
    pub idle_seconds: u64,
}

pub fn figure(key: &str, value: f64, unit: &str, target: &str) {
    println!("figure {key} {value:.2} {unit}    (target {target})");
}

#[derive(QueryableByName)]
struct Latency {
    #[diesel(sql_type = BigInt)]
    ms: i64,
}

pub async fn run(a: FleetArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = TestDb::new(Backend::Postgres, dir.path());
    let db_url = db.url.clone().context("postgres url")?;
    let cp_dir = dir.path().join("control-plane");
    std::fs::create_dir_all(&cp_dir)?;
    let cp = ControlPlaneProc::start(&cp_dir, &db_url, 32).await?;
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &cp.ca_pem)?;
    for svc in ["bench", "extra"] {
        let (s, b) = cp
            .call(
                Method::POST,
                "/v1/services",
                Some(json!({ "name": svc, "cert_ttl_seconds": 3600 })),
            )
            .await?;
        ensure!(s == 201, "create service {svc}: {s} {b}");
    }
    let token = |svc: &'static str, uses: usize| {
        let cp = &cp;
        async move {
            let (s, b) = cp
                .call(
                    Method::POST,
                    &format!("/v1/services/{svc}/join-tokens"),
                    Some(json!({ "max_uses": uses.max(1), "ttl_seconds": 3600 })),
                )
                .await?;
            ensure!(s == 201, "join token: {s} {b}");
            Ok::<_, anyhow::Error>(b["token"].as_str().context("token")?.to_owned())
        }
    };
    let (bench_token, extra_token) = (
        token("bench", a.agents).await?,
        token("extra", a.extra).await?,
    );
    let mut pg = PgConnection::establish(&db_url)?;
    let count = |pg: &mut PgConnection, sql: &str| -> anyhow::Result<i64> {
        Ok(diesel::select(diesel::dsl::sql::<BigInt>(sql)).get_result(pg)?)
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let base_kib = cp.rss_kib()?;
    let mut hot = HotStats::read(&mut pg)?;
    let job_rate = measure::job_rate(&cp, a.idle_seconds.min(30)).await?;
    println!("control plane up (pid {}), RSS {base_kib} KiB", cp.pid());

    // 1. Enrollment storm.
    println!("phase 1: {} agents enroll at once", a.agents);
    let started = Instant::now();
    let cpu = CpuMeter::start(&cp);
    let statements = measure::counters(&cp, &mut pg).await?;
    let (mut swarms, failed) =
        spawn_swarms(&cp, &ca_file, "bench", &bench_token, "a", a.agents, &a).await?;
    let storm_s = started.elapsed().as_secs_f64();
    figure("enroll.failures", failed as f64, "attempts", "0");
    figure(
        "enroll.rate",
        a.agents as f64 / storm_s,
        "enrollments/s",
        ">= 500/s",
    );
    wait_for(
        &format!("{} first bundles acked", a.agents),
        Duration::from_secs(600),
        || {
            Ok(count(
                &mut pg,
                "count(*) FROM nodes WHERE service = 'bench' AND acked_version >= 1",
            )? as usize
                >= a.agents)
        },
    )
    .await?;
    println!(
        "fleet up: enrolled, first bundle installed and acked in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    measure::server_cpu(
        &cpu,
        "enroll.server_cpu_ms",
        a.agents,
        "<= 1.0 ms, first bundle included",
    );
    per_unit(&cp, &mut pg, statements, a.agents, "enrollment").await?;
    hot = hot.report(&mut pg, "enroll")?;

    // 2. Held long-polls.
    let per_poll = held_memory(&cp, a.agents, base_kib).await?;
    figure(
        &format!("hold.ferry.{}", a.agents),
        per_poll,
        "KiB/poll",
        "<= 16 KB",
    );
    if a.extra > 0 {
        let (extra, failed) =
            spawn_swarms(&cp, &ca_file, "extra", &extra_token, "x", a.extra, &a).await?;
        ensure!(
            failed == 0,
            "{failed} enrollment attempts of the extra agents failed"
        );
        let per_poll = held_memory(&cp, a.agents + a.extra, base_kib).await?;
        figure(
            &format!("hold.ferry.{}", a.agents + a.extra),
            per_poll,
            "KiB/poll",
            "<= 16 KB",
        );
        for s in extra {
            s.stop().await;
        }
    }
    measure::idle(&cp, &mut pg, a.agents, a.idle_seconds, job_rate).await?;

    // 3. Refresh -> ack with the fleet connected.
    println!("phase 3: {} forced refreshes at {}/s", a.refreshes, a.rate);
    let mut ids = Vec::with_capacity(a.refreshes);
    let cpu = CpuMeter::start(&cp);
    let statements = measure::counters(&cp, &mut pg).await?;
    let interval = Duration::from_micros(1_000_000 / a.rate.max(1));
    let mut next = tokio::time::Instant::now();
    for i in 0..a.refreshes {
        let node = (i * 7919) % a.agents;
        let (s, b) = cp
            .call(
                Method::POST,
                &format!("/v1/services/bench/nodes/a{node:06}/refresh"),
                Some(json!({})),
            )
            .await?;
        ensure!(s == 202, "refresh: {s} {b}");
        ids.push(b["delivery_id"].as_str().context("delivery id")?.to_owned());
        next += interval;
        tokio::time::sleep_until(next).await;
    }
    let list = ids
        .iter()
        .map(|id| format!("'{id}'"))
        .collect::<Vec<_>>()
        .join(",");
    wait_for("every refresh acked", Duration::from_secs(120), || {
        Ok(count(
            &mut pg,
            &format!("count(*) FROM deliveries WHERE id IN ({list}) AND state <> 'pending'"),
        )? as usize
            == ids.len())
    })
    .await?;
    let mut ms: Vec<i64> = diesel::sql_query(format!(
        "SELECT finished_at - created_at AS ms FROM deliveries WHERE id IN ({list}) AND state = 'delivered'"
    ))
    .load::<Latency>(&mut pg)?
    .into_iter()
    .map(|l| l.ms)
    .collect();
    ensure!(
        ms.len() == ids.len(),
        "{} of {} refreshes failed",
        ids.len() - ms.len(),
        ids.len()
    );
    measure::server_cpu(&cpu, "refresh.server_cpu_ms", ids.len(), "printed");
    per_unit(&cp, &mut pg, statements, ids.len(), "refresh cycle").await?;
    hot = hot.report(&mut pg, "refresh")?;
    ms.sort_unstable();
    let pct = |p: f64| ms[((ms.len() as f64 - 1.0) * p).round() as usize] as f64;
    println!(
        "refresh -> ack persisted: p50 {} ms, p90 {} ms, max {} ms",
        pct(0.5),
        pct(0.9),
        pct(1.0)
    );
    figure(
        &format!("refresh.p99.{}", a.agents),
        pct(0.99),
        "ms",
        "p99 < 100 ms",
    );

    // 4. Fan-out of one service-wide change.
    println!(
        "phase 4: one service-wide metadata change to {} agents",
        a.agents
    );
    let started = Instant::now();
    let cpu = CpuMeter::start(&cp);
    let statements = measure::counters(&cp, &mut pg).await?;
    let (s, b) = cp
        .call(
            Method::PUT,
            "/v1/services/bench/metadata/fanout",
            Some(json!({ "value": "v1" })),
        )
        .await?;
    ensure!(s == 200 || s == 201, "metadata put: {s} {b}");
    wait_for(
        "every agent acked the change",
        Duration::from_secs(300),
        || {
            Ok(count(
                &mut pg,
                "count(*) FROM nodes WHERE service = 'bench' AND acked_version < desired_version",
            )? == 0)
        },
    )
    .await?;
    let fanout_s = started.elapsed().as_secs_f64();
    measure::server_cpu(&cpu, "fanout.server_cpu_ms", a.agents, "printed");
    per_unit(&cp, &mut pg, statements, a.agents, "node cycle").await?;
    hot = hot.report(&mut pg, "fanout")?;
    figure(&format!("fanout.{}", a.agents), fanout_s, "s", "< 5 s");

    // 5. Sustained issue + deliver + ack cycles: rotate everything at once.
    println!("phase 5: rotation of {} nodes, all in flight", a.agents);
    let started = Instant::now();
    let cpu = CpuMeter::start(&cp);
    let statements = measure::counters(&cp, &mut pg).await?;
    let (s, b) = cp
        .call(
            Method::POST,
            "/v1/services/bench/rotate",
            Some(json!({ "max_in_flight": a.agents })),
        )
        .await?;
    ensure!(s == 202 || s == 201, "rotate: {s} {b}");
    let rid = b["rotation_id"].as_str().context("rotation id")?.to_owned();
    let deadline = Instant::now() + Duration::from_secs(600);
    let done = loop {
        let (_, r) = cp
            .call(
                Method::GET,
                &format!("/v1/services/bench/rotations/{rid}"),
                None,
            )
            .await?;
        if r["state"] == "done" {
            break r;
        }
        ensure!(Instant::now() < deadline, "rotation did not finish: {r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let secs = started.elapsed().as_secs_f64();
    measure::server_cpu(&cpu, "cycles.server_cpu_ms", a.agents, "<= 0.5 ms");
    per_unit(&cp, &mut pg, statements, a.agents, "rotation cycle").await?;
    hot.report(&mut pg, "rotation")?;
    ensure!(done["failed"] == 0, "rotation had failures: {done}");
    figure(
        "cycles.rotation",
        a.agents as f64 / secs,
        "cycles/s",
        ">= 2000/s",
    );

    for s in swarms.drain(..) {
        s.stop().await;
    }
    println!("control plane RSS at the end: {} KiB", cp.rss_kib()?);
    cp.stop().await;
    Ok(())
}

/// Starts swarms for `total` agents named `<prefix>NNNNNN` at once and waits until every
/// one enrolled; returns them (draining) and the number of failed attempts.
async fn spawn_swarms(
    cp: &ControlPlaneProc,
    ca_file: &std::path::Path,
    service: &str,
    token: &str,
    prefix: &str,
    total: usize,
    a: &FleetArgs,
) -> anyhow::Result<(Vec<RunningSwarm>, u64)> {
    let mut pending = Vec::new();
    for from in (0..total).step_by(a.per_process.max(1)) {
        let plan = SwarmPlan {
            cp,
            service,
            join_token: token,
            prefix,
            from,
            count: a.per_process.min(total - from),
            concurrency: a.concurrency,
        };
        pending.push(Swarm::spawn(&plan, ca_file)?);
    }
    let (mut running, mut failed, mut ok) = (Vec::new(), 0, 0);
    for mut s in pending {
        let (o, f, _) = s.enrolled().await?;
        ok += o;
        failed += f;
        running.push(s.drain());
    }
    ensure!(ok as usize == total, "{ok} of {total} agents enrolled");
    Ok((running, failed))
}

/// Waits until (nearly) `n` polls are held, lets the process settle, and returns KiB
/// per held poll above the idle process (`base_kib`). Agents re-poll after a 304 with
/// up to a second of jitter, so at any instant about 1% of them are between polls:
/// the figure divides by the polls actually held when memory is read.
async fn held_memory(cp: &ControlPlaneProc, n: usize, base_kib: u64) -> anyhow::Result<f64> {
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut held = cp.metric("ferry_long_polls_held").await?;
    while held < n as f64 * 0.98 {
        ensure!(
            Instant::now() < deadline,
            "only {held} of {n} polls were ever held at once"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        held = cp.metric("ferry_long_polls_held").await?;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let kib = cp.rss_kib()?;
    let held = cp.metric("ferry_long_polls_held").await?.max(1.0);
    println!(
        "{held} long-polls held ({n} agents): control plane RSS {kib} KiB ({base_kib} KiB idle)"
    );
    Ok(kib.saturating_sub(base_kib) as f64 / held)
}

async fn wait_for(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !check()? {
        ensure!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        // Not faster: the check is a count over the service's nodes in PostgreSQL.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}

/// Prints the SQL statements the control plane ran and the WAL the database wrote
/// since `before` (from [`measure::counters`]), per `what`.
async fn per_unit(
    cp: &ControlPlaneProc,
    pg: &mut PgConnection,
    before: (f64, i64),
    n: usize,
    what: &str,
) -> anyhow::Result<()> {
    let (statements, wal) = measure::counters(cp, pg).await?;
    let n = n.max(1) as f64;
    println!(
        "SQL statements: {:.1} per {what}; WAL: {:.0} bytes per {what}",
        (statements - before.0) / n,
        (wal - before.1) as f64 / n
    );
    Ok(())
}
