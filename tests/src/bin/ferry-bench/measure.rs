//! What the fleet phases measure beside their rates: the server's CPU per unit of work
//! (control plane plus PostgreSQL, the agents' share printed apart), the share of HOT
//! updates on the hot tables, and the idle fleet's database cost (statements per poll,
//! WAL bytes per second).

use crate::fleet::figure;
use crate::procs::{ControlPlaneProc, CpuMeter};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use std::time::{Duration, Instant};

/// The tables whose rows change on every ack, renewal or delivery.
const HOT_TABLES: [&str; 3] = ["nodes", "bundles", "deliveries"];

#[derive(QueryableByName)]
struct TableStats {
    #[diesel(sql_type = Text)]
    relname: String,
    #[diesel(sql_type = BigInt)]
    upd: i64,
    #[diesel(sql_type = BigInt)]
    hot: i64,
}

/// Cumulative (updates, HOT updates) per hot table, to diff between phases.
#[derive(Debug, Clone, Default)]
pub struct HotStats(Vec<(String, i64, i64)>);

impl HotStats {
    pub fn read(pg: &mut PgConnection) -> anyhow::Result<Self> {
        // Backends report their counts when they go idle, at most once a second.
        std::thread::sleep(Duration::from_millis(1100));
        let rows: Vec<TableStats> = diesel::sql_query(
            "SELECT relname::text AS relname, n_tup_upd AS upd, n_tup_hot_upd AS hot \
             FROM pg_stat_user_tables WHERE relname IN ('nodes', 'bundles', 'deliveries')",
        )
        .load(pg)?;
        Ok(Self(
            HOT_TABLES
                .iter()
                .map(|t| {
                    let r = rows.iter().find(|r| r.relname == *t);
                    (
                        t.to_string(),
                        r.map_or(0, |r| r.upd),
                        r.map_or(0, |r| r.hot),
                    )
                })
                .collect(),
        ))
    }

    /// Prints `n_tup_hot_upd / n_tup_upd` of each hot table in `phase` (since `self`
    /// was read) and returns the counts now, for the next phase.
    pub fn report(&self, pg: &mut PgConnection, phase: &str) -> anyhow::Result<HotStats> {
        let now = Self::read(pg)?;
        now.print_since(self, phase);
        Ok(now)
    }

    fn print_since(&self, before: &HotStats, phase: &str) {
        let mut line = format!("HOT updates in {phase}:");
        for ((t, upd, hot), (_, upd0, hot0)) in self.0.iter().zip(&before.0) {
            let (u, h) = (upd - upd0, hot - hot0);
            line.push_str(&format!(" {t} {h}/{u}"));
            if u > 0 {
                figure(
                    &format!("hot.{phase}.{t}"),
                    h as f64 / u as f64,
                    "HOT/updates",
                    "HOT where the columns allow",
                );
            }
        }
        println!("{line}");
    }
}

/// Prints the CPU split and `key` = control-plane plus PostgreSQL CPU ms per unit.
pub fn server_cpu(cpu: &CpuMeter, key: &str, units: usize, target: &str) {
    println!("{}", cpu.report());
    figure(key, cpu.server_ms_per(units), "ms/unit", target);
}

/// (statements the control plane ran, WAL position of the database) now.
pub async fn counters(cp: &ControlPlaneProc, pg: &mut PgConnection) -> anyhow::Result<(f64, i64)> {
    Ok((cp.metric("ferry_db_statements_total").await?, wal_lsn(pg)?))
}

fn wal_lsn(pg: &mut PgConnection) -> anyhow::Result<i64> {
    Ok(diesel::select(diesel::dsl::sql::<BigInt>(
        "CAST(pg_current_wal_lsn() - '0/0'::pg_lsn AS BIGINT)",
    ))
    .get_result(pg)?)
}

/// The statements per second the control plane runs with no agent connected: its
/// periodic jobs (renewal, rotation, expiry, staleness, sources, webhooks, objects, the
/// presence heartbeat), a cost per replica that does not grow with the fleet.
pub async fn job_rate(cp: &ControlPlaneProc, secs: u64) -> anyhow::Result<f64> {
    let before = cp.metric("ferry_db_statements_total").await?;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let rate =
        (cp.metric("ferry_db_statements_total").await? - before) / started.elapsed().as_secs_f64();
    figure(
        "idle.job_statements_per_second",
        rate,
        "statements/s",
        "printed (per replica)",
    );
    Ok(rate)
}

/// `agents` agents idling on their long-polls for `secs`: statements per poll beyond
/// the replica's own job rate (`job_rate`, measured in the same run with no agent),
/// and WAL bytes per second of the whole database (jobs included).
pub async fn idle(
    cp: &ControlPlaneProc,
    pg: &mut PgConnection,
    agents: usize,
    secs: u64,
    job_rate: f64,
) -> anyhow::Result<()> {
    println!("phase idle: {agents} agents on their long-polls for {secs} s");
    let polls = || async {
        Ok::<_, anyhow::Error>(
            cp.metric("ferry_polls_not_modified_total").await?
                + cp.metric("ferry_bundles_served_total").await?,
        )
    };
    let cpu = CpuMeter::start(cp);
    let (polls0, statements0, wal0) = (
        polls().await?,
        cp.metric("ferry_db_statements_total").await?,
        wal_lsn(pg)?,
    );
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let wall = started.elapsed().as_secs_f64();
    let (polls, statements, wal) = (
        polls().await? - polls0,
        cp.metric("ferry_db_statements_total").await? - statements0,
        wal_lsn(pg)? - wal0,
    );
    println!("{}", cpu.report());
    println!(
        "{polls} polls answered, {statements} statements ({:.0} of them the jobs' own rate), \
         {wal} WAL bytes in {wall:.0} s",
        job_rate * wall
    );
    figure(
        "idle.statements_per_poll",
        (statements - job_rate * wall).max(0.0) / polls.max(1.0),
        "statements/poll",
        "< 0.1",
    );
    figure(
        "idle.wal_bytes_per_second",
        wal as f64 / wall,
        "bytes/s",
        "printed",
    );
    figure(
        "idle.server_cpu_ms_per_agent_minute",
        cpu.server_ms_per(agents) * 60.0 / wall,
        "ms",
        "printed",
    );
    Ok(())
}
