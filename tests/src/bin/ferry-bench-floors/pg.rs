//! `pg`: what the PostgreSQL server under the benchmarks can do at best, in a scratch
//! database created from `--url` and dropped afterwards:
//!
//! - LISTEN/NOTIFY round trip: one connection LISTENs, another NOTIFYs (autocommit);
//!   the time from sending the NOTIFY until the listener has it, found by busy-polling
//!   diesel's `notifications_iter` (the driver Ferry uses).
//! - One INSERT in its own transaction (BEGIN, INSERT, COMMIT: how Ferry writes), and
//!   the serial commits per second that gives.
//! - pgbench's built-in simple-update script (`-N`), 8 clients on 2 threads.

use crate::{Opts, figure, percentile};
use anyhow::{Context, Result, bail};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use std::time::{Duration, Instant};

const WARMUP: usize = 20;

/// A database of its own, dropped (with FORCE) when this goes.
struct Scratch {
    admin_url: String,
    name: String,
    url: String,
}

impl Scratch {
    fn create(admin_url: &str) -> Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .subsec_nanos();
        let name = format!("ferry_floors_{}_{nanos}", std::process::id());
        let (base, query) = match admin_url.split_once('?') {
            Some((b, q)) => (b, format!("?{q}")),
            None => (admin_url, String::new()),
        };
        let authority_end = base.find("://").map_or(0, |i| i + 3);
        let Some(slash) = base[authority_end..].find('/') else {
            bail!("{admin_url} has no database part (postgres://user@host:port/db)");
        };
        let url = format!("{}/{name}{query}", &base[..authority_end + slash]);
        PgConnection::establish(admin_url)
            .context("connecting to PostgreSQL")?
            .batch_execute(&format!("CREATE DATABASE {name}"))?;
        Ok(Self {
            admin_url: admin_url.to_owned(),
            name,
            url,
        })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Ok(mut c) = PgConnection::establish(&self.admin_url) {
            let _ = c.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn settings(url: &str) -> Result<String> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        v: String,
    }
    let mut c = PgConnection::establish(url)?;
    let q = "SELECT current_setting('server_version') || ', fsync=' || current_setting('fsync') \
             || ', synchronous_commit=' || current_setting('synchronous_commit') AS v";
    Ok(diesel::sql_query(q).get_result::<Row>(&mut c)?.v)
}

fn notify_round_trips(url: &str, rounds: usize) -> Result<Vec<f64>> {
    let mut listener = PgConnection::establish(url)?;
    listener.batch_execute("LISTEN ferry_floors")?;
    let mut notifier = PgConnection::establish(url)?;
    let mut out = Vec::with_capacity(rounds);
    for i in 0..WARMUP + rounds {
        let payload = i.to_string();
        let started = Instant::now();
        notifier.batch_execute(&format!("NOTIFY ferry_floors, '{payload}'"))?;
        'wait: loop {
            for n in listener.notifications_iter() {
                if n?.payload == payload {
                    break 'wait;
                }
            }
            if started.elapsed() > Duration::from_secs(5) {
                bail!("NOTIFY {payload} not received within 5 s");
            }
            std::hint::spin_loop();
        }
        if i >= WARMUP {
            out.push(ms(started.elapsed()));
        }
    }
    Ok(out)
}

/// Per-commit latencies (ms) and the whole run's wall time.
fn commits(url: &str, rounds: usize) -> Result<(Vec<f64>, Duration)> {
    let mut c = PgConnection::establish(url)?;
    c.batch_execute(
        "CREATE TABLE floor_commits (id BIGSERIAL PRIMARY KEY, node TEXT NOT NULL, at BIGINT NOT NULL)",
    )?;
    let mut one = |i: usize| -> Result<Duration> {
        let started = Instant::now();
        c.transaction(|c| {
            diesel::sql_query("INSERT INTO floor_commits (node, at) VALUES ($1, $2)")
                .bind::<Text, _>(format!("n{i:05}"))
                .bind::<BigInt, _>(i as i64)
                .execute(c)
        })?;
        Ok(started.elapsed())
    };
    for i in 0..WARMUP {
        one(i)?;
    }
    let started = Instant::now();
    let out = (0..rounds)
        .map(|i| one(WARMUP + i).map(ms))
        .collect::<Result<Vec<_>>>()?;
    Ok((out, started.elapsed()))
}

fn pgbench_bin() -> &'static str {
    let on_path = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("pgbench").exists()));
    if on_path {
        "pgbench"
    } else {
        "/usr/bin/pgbench"
    }
}

fn pgbench(url: &str, args: &[&str]) -> Result<String> {
    let out = std::process::Command::new(pgbench_bin())
        .args(args)
        .arg(url)
        .output()
        .context("running pgbench")?;
    if !out.status.success() {
        bail!(
            "pgbench {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn report(what: &str, key: &str, mut v: Vec<f64>) {
    v.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&v, 0.5), percentile(&v, 0.99));
    println!(
        "pg {what} over {} rounds: p50 {p50:.3} ms, p99 {p99:.3} ms, max {:.3} ms",
        v.len(),
        percentile(&v, 1.0)
    );
    figure(&format!("pg.{key}.p50"), p50, "ms");
    figure(&format!("pg.{key}.p99"), p99, "ms");
}

pub fn run(opts: &Opts) -> Result<()> {
    let scratch = Scratch::create(&opts.url()?)?;
    println!("pg: PostgreSQL {}", settings(&scratch.url)?);
    let rounds = if opts.smoke { 200 } else { 1000 };

    report(
        "LISTEN/NOTIFY round trip (busy-polled listener)",
        "notify",
        notify_round_trips(&scratch.url, rounds)?,
    );

    let (latencies, wall) = commits(&scratch.url, rounds)?;
    let serial = rounds as f64 / wall.as_secs_f64();
    report("INSERT+COMMIT (BEGIN, INSERT, COMMIT)", "commit", latencies);
    println!("pg serial commits on one connection: {serial:.0}/s");
    figure("pg.commit.serial", serial, "commits/s");

    let (scale, secs) = if opts.smoke { ("1", "3") } else { ("10", "20") };
    pgbench(&scratch.url, &["-i", "-q", "-s", scale])?;
    let out = pgbench(&scratch.url, &["-N", "-c", "8", "-j", "2", "-T", secs])?;
    let tps: f64 = out
        .lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no tps line in pgbench's output:\n{out}"))?;
    println!("pg pgbench -N -c 8 -j 2 -T {secs} at scale {scale}: {tps:.0} TPS");
    figure("pg.pgbench.tps", tps, "tps");
    Ok(())
}
