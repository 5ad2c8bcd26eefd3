//! `sign`: certificates signed per second by the control plane's own issuance
//! (`Ca::issue_leaf`, the path every delivered certificate takes: ECDSA P-256 CA, random
//! serial, SPIFFE URI and DNS SANs), on one thread and on every core (std threads),
//! each for a fixed duration. `leaf` signs for one node key generated up front (the
//! `node-key` mode, signature only); `central` also generates the node's P-256 key for
//! every certificate, as the `central` key mode does. Other work on the machine takes
//! cores away from the all-cores figure, so each phase also reports certificates per
//! CPU-second this process used (`utime + stime`), which that does not move.

use crate::{Opts, figure, procfs};
use anyhow::Result;
use ferry_control_plane::ca::Ca;
use ferry_control_plane::ca::leaf::generate_key;
use ferry_shared::{KeyType, SpiffeId};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Calls per second of wall time and per CPU-second.
struct Rate {
    wall: f64,
    cpu: f64,
}

/// Runs `work` on `threads` threads for `duration`.
fn rate(
    threads: usize,
    duration: Duration,
    work: &(dyn Fn() -> Result<()> + Sync),
) -> Result<Rate> {
    let stop = AtomicBool::new(false);
    let ticks = procfs::cpu_ticks(std::process::id())?;
    let started = Instant::now();
    let counts = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| -> Result<u64> {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        work()?;
                        n += 1;
                    }
                    Ok(n)
                })
            })
            .collect();
        std::thread::sleep(duration);
        stop.store(true, Ordering::Relaxed);
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect::<Result<Vec<u64>>>()
    })?;
    let wall = started.elapsed().as_secs_f64();
    let cpu =
        (procfs::cpu_ticks(std::process::id())? - ticks) as f64 / procfs::ticks_per_second() as f64;
    let n = counts.iter().sum::<u64>() as f64;
    Ok(Rate {
        wall: n / wall,
        cpu: n / cpu.max(f64::MIN_POSITIVE),
    })
}

pub fn run(opts: &Opts) -> Result<()> {
    let duration = Duration::from_secs(if opts.smoke { 1 } else { 5 });
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let now = time::OffsetDateTime::now_utc();
    let id = SpiffeId::parse("spiffe://floors.local/service/web/node/n1")?;
    let (ca, _) = Ca::generate(&id.trust_domain, now)?;
    let dns = vec!["n1.web.floors.local".to_owned()];
    let ttl = time::Duration::days(1);
    let node_key = generate_key(KeyType::EcdsaP256)?;

    let leaf = || -> Result<()> {
        ca.issue_leaf(&node_key, &id, &dns, now, ttl)?;
        Ok(())
    };
    let central = || -> Result<()> {
        let key = generate_key(KeyType::EcdsaP256)?;
        ca.issue_leaf(&key, &id, &dns, now, ttl)?;
        Ok(())
    };
    let modes: [(&str, &(dyn Fn() -> Result<()> + Sync)); 2] =
        [("leaf", &leaf), ("central", &central)];
    for (mode, work) in modes {
        let one = rate(1, duration, work)?;
        let all = rate(cores, duration, work)?;
        println!(
            "sign {mode}: ECDSA P-256 leaf certificates over {:.0} s: {:.0}/s on 1 thread, \
             {:.0}/s on {cores} threads ({:.2}x); per CPU-second: {:.0} and {:.0}",
            duration.as_secs_f64(),
            one.wall,
            all.wall,
            all.wall / one.wall,
            one.cpu,
            all.cpu,
        );
        figure(&format!("sign.{mode}.1thread"), one.wall, "certs/s");
        figure(&format!("sign.{mode}.all_cores"), all.wall, "certs/s");
        figure(
            &format!("sign.{mode}.per_cpu_second"),
            all.cpu,
            "certs/cpu-s",
        );
    }
    Ok(())
}
