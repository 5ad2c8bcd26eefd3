//! The fault schedule of the scenario, one seeded loop until the deadline: replicas
//! stopped and restarted at random (never all at once; a restarted replica stays up at
//! least [`MIN_UP`] before it may be stopped again), real `ferry-agent` processes
//! (some with clocks skewed by libfaketime) killed with SIGKILL at random and started
//! again, PostgreSQL stopped abruptly and restarted once, and a few in-process agents
//! silenced for longer than `stale_after`, so they must be alerted and then resolved.

use super::{MAX_DOWN, MIN_UP, Rng, SEED, SILENCE, SVC};
use ferry_tests::ControlPlane;
use ferry_tests::agent::{InProcessAgent, agent_command_skewed};
use ferry_tests::pg_cluster::PgCluster;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::process::Child;
use tokio::task::JoinHandle;

/// A real agent process of the fleet, on one replica's URL.
pub struct ProcAgent {
    pub node: String,
    pub dir: tempfile::TempDir,
    replica: usize,
    skew: Option<&'static str>,
    child: Option<Child>,
    back_at: Option<Instant>,
}

impl ProcAgent {
    pub fn spawn(
        cps: &[ControlPlane],
        replica: usize,
        node: String,
        token: &str,
        skew: Option<&'static str>,
    ) -> Self {
        let mut agent = Self {
            node,
            dir: tempfile::tempdir().expect("tempdir"),
            replica,
            skew,
            child: None,
            back_at: None,
        };
        agent.start(&cps[replica], token);
        agent
    }

    pub fn install_dir(&self) -> PathBuf {
        self.dir.path().join("install")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn start(&mut self, cp: &ControlPlane, token: &str) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("agent.log"))
            .expect("agent log");
        let mut cmd = agent_command_skewed(cp, SVC, &self.node, token, self.dir.path(), self.skew);
        cmd.args(["--poll-wait-seconds", "5"])
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        self.child = Some(cmd.spawn().expect("start ferry-agent"));
    }

    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }
}

/// Everything the faults act on.
pub struct Targets {
    pub replicas: Vec<ControlPlane>,
    pub procs: Vec<ProcAgent>,
    /// In-process agents silenced once for [`SILENCE`], with their replica.
    pub silenced: Vec<(String, usize, InProcessAgent)>,
    pub cluster: Arc<PgCluster>,
    pub token: String,
}

/// What the schedule did.
#[derive(Debug, Default)]
pub struct FaultLog {
    pub outages: usize,
    pub kills: usize,
    /// How long `pg_ctl stop -m immediate; pg_ctl start` took.
    pub pg_restart: Option<Duration>,
    /// Per replica, from PostgreSQL answering again to three `/readyz` in a row.
    pub ready_after_pg: Vec<Option<Duration>>,
}

/// Runs the schedule until `deadline` and returns the targets all running again.
pub async fn run(mut t: Targets, deadline: Instant) -> (Targets, FaultLog) {
    let start = Instant::now();
    let span = deadline - start;
    let mut rng = Rng(SEED);
    let mut log = FaultLog::default();
    let mut up_at: Vec<Option<Instant>> = vec![None; t.replicas.len()];
    let mut up_since: Vec<Instant> = vec![start; t.replicas.len()];
    let mut next_stop = start + rng.millis(1000, 3000);
    let mut next_kill = start + rng.millis(500, 1500);
    let (silence_at, speak_at) = (
        start + Duration::from_secs(5),
        start + Duration::from_secs(5) + SILENCE,
    );
    let (mut silent, mut spoken) = (false, false);
    let pg_at = start + span / 2;
    let mut calm_until = start;
    let mut readiness: Option<JoinHandle<Vec<Option<Duration>>>> = None;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = Instant::now();
        for (i, at) in up_at.iter_mut().enumerate() {
            if at.is_some_and(|t| now >= t) {
                t.replicas[i].restart().await;
                *at = None;
                up_since[i] = Instant::now();
            }
        }
        for p in t
            .procs
            .iter_mut()
            .filter(|p| p.back_at.is_some_and(|b| now >= b))
        {
            p.start(&t.replicas[p.replica], &t.token);
            p.back_at = None;
        }
        if now >= next_kill {
            let running: Vec<usize> = (0..t.procs.len())
                .filter(|i| t.procs[*i].child.is_some())
                .collect();
            if !running.is_empty() {
                let p = &mut t.procs[running[rng.below(running.len() as u64) as usize]];
                p.kill().await;
                p.back_at = Some(Instant::now() + rng.millis(300, 1500));
                log.kills += 1;
            }
            next_kill = Instant::now() + rng.millis(1000, 3000);
        }
        if now >= silence_at && !silent {
            for (_, _, a) in t.silenced.iter_mut() {
                a.stop().await;
            }
            silent = true;
        }
        if now >= speak_at && !spoken {
            let silenced = std::mem::take(&mut t.silenced);
            for (node, r, a) in silenced {
                let a = a.restart(&t.replicas[r], SVC, &node, &t.token);
                t.silenced.push((node, r, a));
            }
            spoken = true;
        }
        if now >= pg_at && log.pg_restart.is_none() {
            // Every replica up, then the database cut from under them; no replica is
            // stopped until they have all found it again.
            for (i, at) in up_at.iter_mut().enumerate() {
                if at.take().is_some() {
                    t.replicas[i].restart().await;
                    up_since[i] = Instant::now();
                }
            }
            let cluster = t.cluster.clone();
            let took = Instant::now();
            tokio::task::spawn_blocking(move || cluster.restart_immediate())
                .await
                .expect("pg restart");
            log.pg_restart = Some(took.elapsed());
            readiness = Some(tokio::spawn(ready_again(&t.replicas)));
            calm_until = Instant::now() + Duration::from_secs(20);
            continue;
        }
        let down = up_at.iter().filter(|d| d.is_some()).count();
        if now >= next_stop && now >= calm_until && down < t.replicas.len() - 1 {
            let stoppable: Vec<usize> = (0..t.replicas.len())
                .filter(|i| up_at[*i].is_none() && now.duration_since(up_since[*i]) >= MIN_UP)
                .collect();
            if stoppable.is_empty() {
                continue;
            }
            let victim = stoppable[rng.below(stoppable.len() as u64) as usize];
            t.replicas[victim].stop().await;
            let outage = rng.millis(2000, 6000);
            assert!(outage <= MAX_DOWN);
            up_at[victim] = Some(Instant::now() + outage);
            log.outages += 1;
            next_stop = Instant::now() + rng.millis(1500, 4000);
        }
    }
    for (i, at) in up_at.iter().enumerate() {
        if at.is_some() {
            t.replicas[i].restart().await;
        }
    }
    for p in t.procs.iter_mut().filter(|p| p.child.is_none()) {
        p.start(&t.replicas[p.replica], &t.token);
        p.back_at = None;
    }
    if let Some(r) = readiness {
        log.ready_after_pg = r.await.expect("readiness task");
    }
    (t, log)
}

/// Per replica, how long until `/readyz` answered 200 three times in a row (`None`:
/// not within 20 s). The pool must drop the connections the restart cut.
fn ready_again(replicas: &[ControlPlane]) -> impl Future<Output = Vec<Option<Duration>>> + use<> {
    let probes: Vec<(reqwest::Client, String)> = replicas
        .iter()
        .map(|r| (r.admin().client, format!("{}/readyz", r.url)))
        .collect();
    async move {
        let since = Instant::now();
        let mut streak = vec![0; probes.len()];
        let mut ready: Vec<Option<Duration>> = vec![None; probes.len()];
        while ready.iter().any(Option::is_none) && since.elapsed() < Duration::from_secs(20) {
            for (i, (client, url)) in probes.iter().enumerate() {
                if ready[i].is_some() {
                    continue;
                }
                let ok = client
                    .get(url)
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                streak[i] = if ok { streak[i] + 1 } else { 0 };
                if streak[i] >= 3 {
                    ready[i] = Some(since.elapsed());
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ready
    }
}
