//! Network partitions between hosts and the control plane: real `ferry-agent` processes on
//! three hosts (network namespaces, `ferry_tests::netns`), two per host. Two hosts are cut
//! off for twice `stale_after`: their nodes go stale with one `unseen` alert each while
//! the third host's nodes stay fine; after healing every node is back within a bound and
//! the agents' request rate stays at the long-poll pace (no reconnect storm).
//!
//! The partition is a silent drop in the middle of the path: each host reaches the
//! control plane through a forwarding namespace of its own, and a cut puts a zero-length
//! pfifo on both of its interfaces. Both ends transmit fine and hear nothing back (no RST,
//! no ICMP, routes stay up, ARP not needed), so a held long-poll hangs until the agent's
//! own timeout and connects hang in SYN retries: what an agent meets when a router or link
//! on the way dies. The alternatives are loud, leak or are missing: a pfifo on an
//! endpoint's own link is reported to its TCP stack, which then aborts connections with
//! unacked data after about 8 s; a link set down loses its routes (the root side would
//! send the host's packets to the default route); a blackhole route fails the sender at
//! once; this kernel has no sch_netem nor tc classifiers; iptables/nft are not installed.

use ferry_tests::agent::{Installed, agent_command, read_installed};
use ferry_tests::netns::NetLab;
use ferry_tests::{Backend, ControlPlane, eventually, spawn_control_plane};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::time::{Instant, sleep};

const HOSTS: usize = 3;
/// Host 0 stays connected; these are cut off.
const CONNECTED: usize = 0;
const CUT: [usize; 2] = [1, 2];
/// The service's `stale_after_seconds` (the smallest the API takes with 5 s polls).
const STALE_AFTER: u64 = 10;
/// The agents' `--poll-wait-seconds`: how long the control plane holds a poll.
const POLL_WAIT: u64 = 2;
const PARTITION: Duration = Duration::from_secs(2 * STALE_AFTER);
/// stale_after + one poll interval (wait + up to 1 s of retry-after jitter) + the seen
/// granularity (1 s) + a detector tick, and 2 s for a loaded machine.
const ALERT_BOUND: Duration = Duration::from_secs(STALE_AFTER + POLL_WAIT + 4);
/// At the heal an agent may be waiting on a poll sent into the cut: its retransmission
/// gets through at the next RTO, or it times out (wait + 15 s), or it was sent on a pooled
/// connection the control plane closed during the cut (the FIN was lost) and is reset at
/// once. The agent then backs off (at most 2 s after the one or two failures a 20 s cut
/// allows) and polls again, which the control plane sees on arrival; a detector tick
/// resolves the alert.
const RECOVER_BOUND: Duration = Duration::from_secs(POLL_WAIT + 15 + 2 + 1);
/// Agent requests are counted over this long from the heal.
const WINDOW: Duration = Duration::from_secs(30);
/// Per agent and minute: the control plane holds every poll for POLL_WAIT when nothing
/// changed, so at most 60 / POLL_WAIT polls, plus two requests per window for the
/// reconnect. A storm (polls not held: the agent's 250 ms floor) would be 240.
const RATE_BOUND: f64 = 60.0 / POLL_WAIT as f64 + 2.0 * 60.0 / WINDOW.as_secs() as f64;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_off_hosts_go_stale_alert_once_per_node_and_recover_without_a_request_storm() {
    // Arrange: three hosts, a control plane listening only on the lab's address.
    let lab = NetLab::new(HOSTS);
    let cp = control_plane(&lab).await;
    let agents = fleet(&lab, &cp).await;
    let installed: Vec<Installed> = agents.iter().map(Agent::installed).collect();
    let firing = alerts(&cp, "state=firing").await;
    assert!(firing.is_empty(), "no alerts yet: {firing:?}");
    let cut_off: Vec<&Agent> = agents.iter().filter(|a| CUT.contains(&a.host)).collect();
    // A few polls, so the cut finds the agents in different phases of their polls.
    sleep(Duration::from_secs(2 * POLL_WAIT + 1)).await;

    // Act: cut hosts 1 and 2 off for PARTITION, then heal and count requests for WINDOW.
    let cut = Moment::now();
    CUT.iter().for_each(|h| lab.partition(*h));
    let fired = watch_the_cut(&cp, &agents, &cut).await;
    let last_seen = last_seen(&cp).await;
    let (before_heal, healed) = (agent_requests(&cp), Moment::now());
    CUT.iter().for_each(|h| lab.heal(*h));
    let seen_again = wait_for_recovery(&cp, &cut_off, &healed).await;
    sleep((healed.instant + WINDOW).saturating_duration_since(Instant::now())).await;
    let requests = agent_requests(&cp) - before_heal;

    // Assert: one unseen alert per cut-off node, fired in time and resolved; nothing for
    // the connected host; the files stayed; every node polls again at the long-poll pace.
    assert_eq!(fired.len(), cut_off.len(), "alerted in the cut: {fired:?}");
    let all = alerts(&cp, "service=web").await;
    for a in &agents {
        let mine: Vec<&Value> = all.iter().filter(|x| x["node_id"] == a.node).collect();
        if a.host == CONNECTED {
            assert!(mine.is_empty(), "{} stayed connected: {mine:?}", a.node);
            continue;
        }
        assert_eq!(mine.len(), 1, "exactly one alert for {}: {mine:?}", a.node);
        let (reason, state) = (&mine[0]["reason"], &mine[0]["state"]);
        assert_eq!((reason, state), (&json!("unseen"), &json!("resolved")));
        let alerted = ts(&mine[0]["fired_at"]) - cut.at;
        assert!(
            alerted <= ALERT_BOUND,
            "{} alerted {alerted} after the cut",
            a.node
        );
    }
    let share = of(&all, "", "stale-share");
    assert_eq!(share.len(), 1, "4 of 6 stale: one service alert {share:?}");
    assert_eq!(share[0]["state"], "resolved");
    for (a, before) in agents.iter().zip(&installed) {
        assert_eq!(a.installed().hash, before.hash, "{}: files kept", a.node);
    }
    let status = cp.admin().get("/v1/status").await.body;
    assert_eq!(status["services"][0]["ok"], agents.len(), "{status}");
    let recently = healed.at + WINDOW - Duration::from_secs(POLL_WAIT + 3);
    for n in nodes(&cp).await {
        let polling = ts(&n["last_seen"]) >= recently;
        assert!(polling, "{} stopped polling: {n}", n["node_id"]);
    }
    let rate = requests as f64 / agents.len() as f64 * 60.0 / WINDOW.as_secs_f64();
    print_figures(&cut_off, &all, &last_seen, &seen_again, (&cut, &healed));
    println!(
        "after the heal: {requests} agent requests in {WINDOW:?} from {} agents = {rate:.1} \
         per agent per minute (bound {RATE_BOUND:.0})\n",
        agents.len()
    );
    assert!(
        rate <= RATE_BOUND,
        "request storm after the heal: {rate:.1}/agent/min"
    );
}

/// A wall-clock time for comparing with the API's timestamps, and the same for sleeping.
struct Moment {
    at: OffsetDateTime,
    instant: Instant,
}

impl Moment {
    fn now() -> Self {
        Self {
            at: OffsetDateTime::now_utc(),
            instant: Instant::now(),
        }
    }
}

/// The service, and two agents per host that have installed and acked their bundle.
async fn fleet(lab: &NetLab, cp: &ControlPlane) -> Vec<Agent> {
    let settings = json!({ "cert_ttl_seconds": 600, "stale_after_seconds": STALE_AFTER });
    cp.create_service("web", settings).await;
    let (token, _) = cp.join_token("web", 2 * HOSTS as u32, 600).await;
    let mut agents = Vec::new();
    for host in 0..HOSTS {
        for k in ["a", "b"] {
            let node = format!("h{host}-{k}");
            agents.push(Agent::spawn(lab, cp, host, &node, &token));
        }
    }
    for a in &agents {
        a.is_the_agent_process().await;
    }
    eventually("every agent acked", Duration::from_secs(45), || async {
        let nodes = nodes(cp).await;
        let acked = |n: &Value| n["acked_version"].as_i64() >= Some(1);
        (nodes.len() == agents.len() && nodes.iter().all(acked)).then_some(())
    })
    .await;
    agents
}

/// Watches the alerts for PARTITION: the connected host's nodes are never alerted, no
/// node has more than one alert. Returns the first alert seen for each node.
async fn watch_the_cut(
    cp: &ControlPlane,
    agents: &[Agent],
    cut: &Moment,
) -> BTreeMap<String, Value> {
    let mut fired = BTreeMap::new();
    while cut.instant.elapsed() < PARTITION {
        let firing = alerts(cp, "state=firing").await;
        for a in agents {
            let mine: Vec<&Value> = firing.iter().filter(|x| x["node_id"] == a.node).collect();
            if a.host == CONNECTED {
                assert!(
                    mine.is_empty(),
                    "{} is connected but alerted: {mine:?}",
                    a.node
                );
            }
            assert!(
                mine.len() <= 1,
                "more than one alert for {}: {mine:?}",
                a.node
            );
            if let Some(x) = mine.first() {
                assert_eq!(x["reason"], "unseen", "{x}");
                fired.entry(a.node.clone()).or_insert_with(|| (*x).clone());
            }
        }
        sleep(Duration::from_millis(250)).await;
    }
    fired
}

/// Waits until every cut-off node was seen after the heal, has acked its desired version
/// and has its alert resolved; returns when each was first seen again (s after the heal).
async fn wait_for_recovery(
    cp: &ControlPlane,
    cut_off: &[&Agent],
    healed: &Moment,
) -> BTreeMap<String, f64> {
    let mut seen_again = BTreeMap::new();
    loop {
        let (nodes, all) = (nodes(cp).await, alerts(cp, "service=web").await);
        let node = |id: &str| nodes.iter().find(|n| n["node_id"] == id).cloned();
        let mut back = true;
        for a in cut_off {
            let n = node(&a.node).unwrap_or_default();
            let seen = ts(&n["last_seen"]);
            if seen >= healed.at {
                seen_again
                    .entry(a.node.clone())
                    .or_insert(secs(seen - healed.at));
            }
            back &= seen_again.contains_key(&a.node)
                && n["acked_version"] == n["desired_version"]
                && of(&all, &a.node, "unseen")
                    .iter()
                    .all(|x| x["state"] == "resolved");
        }
        if back {
            return seen_again;
        }
        assert!(
            healed.instant.elapsed() < RECOVER_BOUND,
            "not every cut-off node recovered within {RECOVER_BOUND:?} of the heal; seen \
             again: {seen_again:?}; nodes {nodes:?}; alerts {all:?}"
        );
        sleep(Duration::from_millis(100)).await;
    }
}

async fn last_seen(cp: &ControlPlane) -> BTreeMap<String, OffsetDateTime> {
    let nodes = nodes(cp).await;
    let id = |n: &Value| n["node_id"].as_str().unwrap_or_default().to_owned();
    nodes.iter().map(|n| (id(n), ts(&n["last_seen"]))).collect()
}

/// The table: seconds from the cut (stale, alerted, first failed poll) or from the heal.
fn print_figures(
    cut_off: &[&Agent],
    alerts: &[Value],
    last_seen: &BTreeMap<String, OffsetDateTime>,
    seen_again: &BTreeMap<String, f64>,
    (cut, healed): (&Moment, &Moment),
) {
    println!(
        "\n{} hosts cut off for {PARTITION:?}; stale_after {STALE_AFTER} s, poll wait \
         {POLL_WAIT} s; seconds from the cut (first three) or from the heal (last two)",
        CUT.len()
    );
    println!("node   stale at  alerted  1st failed poll  failed polls  seen again  resolved");
    for a in cut_off {
        let alert = of(alerts, &a.node, "unseen")[0];
        let failures = a.poll_failures(cut.at, healed.at + WINDOW);
        let first = failures
            .first()
            .map(|t| format!("{:.1}", secs(*t - cut.at)));
        println!(
            "{:<6} {:>8.1}  {:>7.1}  {:>15}  {:>12}  {:>10.1}  {:>8.1}",
            a.node,
            secs(last_seen[&a.node] + Duration::from_secs(STALE_AFTER) - cut.at),
            secs(ts(&alert["fired_at"]) - cut.at),
            first.unwrap_or_else(|| "-".into()),
            failures.len(),
            seen_again[&a.node],
            secs(ts(&alert["resolved_at"]) - healed.at),
        );
    }
}

/// A control plane whose only address is the lab's, named in its certificate.
async fn control_plane(lab: &NetLab) -> ControlPlane {
    let ip = lab.cp_ip;
    let mut cp = spawn_control_plane(Backend::Postgres, |cfg| {
        cfg.listen = std::net::SocketAddr::from((ip, 0));
        cfg.server_names = vec![ip.to_string()];
        cfg.presence_linger = Duration::from_secs(1);
        // Staleness must be at least two poll waits.
        cfg.max_poll_wait = Duration::from_secs(5);
        cfg.jobs.staleness_tick = Duration::from_millis(300);
    })
    .await;
    // The harness's URL names localhost; this control plane listens on the lab's address.
    cp.url = format!("https://{}", cp.addr);
    cp
}

/// A `ferry-agent run` process on one host, logging JSON lines to a file.
struct Agent {
    node: String,
    host: usize,
    dir: tempfile::TempDir,
    child: tokio::process::Child,
}

impl Agent {
    fn spawn(lab: &NetLab, cp: &ControlPlane, host: usize, node: &str, token: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = std::fs::File::create(dir.path().join("agent.log")).expect("agent log");
        let mut cmd = agent_command(cp, "web", node, token, dir.path());
        cmd.args(["--poll-wait-seconds", &POLL_WAIT.to_string(), "--log-json"]);
        let mut cmd = lab.command_in(host, cmd);
        cmd.stdout(std::process::Stdio::null()).stderr(log);
        let child = cmd.spawn().expect("ip netns exec ferry-agent starts");
        Self {
            node: node.to_owned(),
            host,
            dir,
            child,
        }
    }

    /// `ip netns exec` must exec the agent, not fork it: killing the child kills the agent.
    async fn is_the_agent_process(&self) {
        let pid = self.child.id().expect("agent running");
        eventually(
            "ip netns exec becomes ferry-agent",
            Duration::from_secs(5),
            || async {
                let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
                exe.to_string_lossy().contains("ferry-agent").then_some(())
            },
        )
        .await;
    }

    fn installed(&self) -> Installed {
        read_installed(&self.dir.path().join("install"), true).expect("a bundle is installed")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    /// When the agent logged a failed bundle poll between `from` and `to`.
    fn poll_failures(&self, from: OffsetDateTime, to: OffsetDateTime) -> Vec<OffsetDateTime> {
        self.log()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["fields"]["message"] == "bundle poll failed")
            .map(|v| ts(&v["timestamp"]))
            .filter(|t| (from..to).contains(t))
            .collect()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(12).collect();
            eprintln!("--- {} (host {}), last log lines:", self.node, self.host);
            tail.iter().rev().for_each(|l| eprintln!("{l}"));
        }
    }
}

/// Polls answered and acks received: every agent request of a fleet whose identities
/// are not due for renewal.
fn agent_requests(cp: &ControlPlane) -> u64 {
    let s = &cp.stats;
    [&s.polls_not_modified, &s.bundles_served, &s.acks]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum()
}

async fn nodes(cp: &ControlPlane) -> Vec<Value> {
    let r = cp.admin().get("/v1/services/web/nodes").await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["items"].as_array().cloned().unwrap_or_default()
}

async fn alerts(cp: &ControlPlane, query: &str) -> Vec<Value> {
    let r = cp.admin().get(&format!("/v1/alerts?{query}")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["items"].as_array().cloned().unwrap_or_default()
}

fn of<'a>(items: &'a [Value], node: &str, reason: &str) -> Vec<&'a Value> {
    items
        .iter()
        .filter(|a| a["node_id"] == node && a["reason"] == reason)
        .collect()
}

/// An RFC 3339 timestamp of the API or of an agent log line.
fn ts(v: &Value) -> OffsetDateTime {
    let s = v.as_str().unwrap_or_else(|| panic!("not a timestamp: {v}"));
    OffsetDateTime::parse(s, &Rfc3339).unwrap_or_else(|e| panic!("timestamp {s}: {e}"))
}

fn secs(d: time::Duration) -> f64 {
    d.as_seconds_f64()
}
