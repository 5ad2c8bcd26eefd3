//! Separate hosts for network-fault scenarios: one network namespace per host, reaching
//! the control plane (in this, the root, namespace) through a namespace of its own that
//! plays the network in between, so a test can cut a host off and heal it while the
//! others stay connected. Needs root and iproute2.
//!
//! A [`NetLab`] lives in one 10.X.Y.0/24 that no route of this machine overlaps, with X.Y
//! derived from the process id and a counter and claimed by creating the lab's first link
//! (whose name carries the same block number), so parallel tests and runs never share
//! addresses or names:
//! - the control plane's address, 10.X.Y.253/32, on a veth whose peer sits in the lab's
//!   `-cp` namespace, so deleting the lab's namespaces removes every link it made;
//! - host `i`: namespace `ferry-part-<pid>-<block>-h<i>` with address 10.X.Y.(8i+2), linked
//!   to its wire namespace (`...-w<i>`, which forwards) that is linked to the root
//!   namespace (10.X.Y.(8i+4)/30). Routes are /32s to the control plane and back; a host
//!   has no default route and reaches nothing but the control plane's address.
//!
//! [`NetLab::partition`] puts a zero-length pfifo on both of the wire's interfaces: every
//! forwarded packet is dropped there, in the middle of the path. The endpoints' own
//! transmissions succeed, so neither side learns anything: no RST, no ICMP, no local
//! error (a drop in the sender's own queue would be reported to its TCP stack, which
//! then gives a connection up after about 8 s instead of retransmitting for minutes).
//! Neighbour entries are permanent, so ARP is never needed across a cut. Everything is
//! removed on drop (also when the test panics); namespaces of a run that was killed (its
//! pid is gone) are removed, with the processes still inside them, when the next lab
//! starts.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

const IP: &str = "/usr/sbin/ip";
const TC: &str = "/usr/sbin/tc";
const SYSCTL: &str = "/usr/sbin/sysctl";
const NS_PREFIX: &str = "ferry-part-";
/// /24 blocks of 10.128.0.0/9 a lab may use.
const BLOCKS: u32 = 0x8000;
static LABS: AtomicU32 = AtomicU32::new(0);

/// One simulated host: its network namespace and the wire to the control plane.
pub struct Host {
    pub ns: String,
    /// The host's own address.
    pub ip: Ipv4Addr,
    /// The namespace between the host and the control plane, where partitions happen.
    wire: String,
    /// The root namespace's end of the wire.
    link: String,
}

/// Hosts in their own namespaces and an address for the control plane to listen on.
pub struct NetLab {
    /// Where the control plane listens; every host routes to it through its own wire.
    pub cp_ip: Ipv4Addr,
    pub hosts: Vec<Host>,
    block: u32,
    cp_ns: String,
    cp_link: String,
}

impl NetLab {
    /// Creates `hosts` hosts. Panics with one message when not root or when network
    /// namespaces cannot be made.
    pub fn new(hosts: usize) -> Self {
        assert!((1..=30).contains(&hosts), "a lab has 1..=30 hosts");
        require_root();
        sweep_leftovers();
        let mut lab = claim_block();
        for i in 0..hosts {
            lab.add_host(i);
        }
        lab
    }

    fn addr(&self, last: u32) -> Ipv4Addr {
        block_addr(self.block, last)
    }

    fn mac(&self, host: usize, side: u8) -> String {
        let b = self.block;
        format!(
            "02:fe:{:02x}:{:02x}:{host:02x}:{side:02x}",
            b >> 8,
            b & 0xff
        )
    }

    fn add_host(&mut self, i: usize) {
        let prefix = format!("{NS_PREFIX}{}-{:04x}", std::process::id(), self.block);
        let (ns, wire) = (format!("{prefix}-h{i}"), format!("{prefix}-w{i}"));
        for name in [&wire, &ns] {
            if let Err(e) = run(IP, &["netns", "add", name]) {
                cannot_run(&e);
            }
        }
        let base = 8 * i as u32;
        self.hosts.push(Host {
            ns,
            wire,
            ip: self.addr(base + 2),
            link: format!("fp{:04x}r{i}", self.block),
        }); // from here on, drop removes it
        let h = &self.hosts[i];
        let (ns, wire, link) = (h.ns.as_str(), h.wire.as_str(), h.link.as_str());
        // host (eth0) .8i+2 <-> .8i+1 (tohost) wire (tocp) .8i+6 <-> .8i+5 root
        let [host_ip, wire_down, wire_up, root_ip, cp] = [
            h.ip,
            self.addr(base + 1),
            self.addr(base + 6),
            self.addr(base + 5),
            self.cp_ip,
        ]
        .map(|a| a.to_string());
        let [m_root, m_up, m_down, m_host] = [1, 2, 3, 4].map(|side| self.mac(i, side));
        let (cp32, host32) = (format!("{cp}/32"), format!("{host_ip}/32"));
        let (up30, down30) = (format!("{wire_up}/30"), format!("{wire_down}/30"));
        let (root30, host30) = (format!("{root_ip}/30"), format!("{host_ip}/30"));
        #[rustfmt::skip]
        let steps: &[&[&str]] = &[
            &["link", "add", link, "address", &m_root, "type", "veth",
              "peer", "name", "tocp", "address", &m_up, "netns", wire],
            &["-n", wire, "link", "add", "tohost", "address", &m_down, "type", "veth",
              "peer", "name", "eth0", "address", &m_host, "netns", ns],
            &["addr", "add", &root30, "dev", link],
            &["link", "set", link, "up"],
            &["neigh", "replace", &wire_up, "lladdr", &m_up, "dev", link, "nud", "permanent"],
            &["route", "add", &host32, "via", &wire_up],
            &["-n", wire, "addr", "add", &up30, "dev", "tocp"],
            &["-n", wire, "addr", "add", &down30, "dev", "tohost"],
            &["-n", wire, "link", "set", "tocp", "up"],
            &["-n", wire, "link", "set", "tohost", "up"],
            &["-n", wire, "neigh", "replace", &root_ip, "lladdr", &m_root, "dev", "tocp", "nud", "permanent"],
            &["-n", wire, "neigh", "replace", &host_ip, "lladdr", &m_host, "dev", "tohost", "nud", "permanent"],
            &["-n", wire, "route", "add", &cp32, "via", &root_ip],
            &["netns", "exec", wire, SYSCTL, "-qw", "net.ipv4.conf.all.forwarding=1"],
            &["-n", ns, "link", "set", "lo", "up"],
            &["-n", ns, "addr", "add", &host30, "dev", "eth0"],
            &["-n", ns, "link", "set", "eth0", "up"],
            &["-n", ns, "neigh", "replace", &wire_down, "lladdr", &m_down, "dev", "eth0", "nud", "permanent"],
            &["-n", ns, "route", "add", &cp32, "via", &wire_down],
        ];
        for args in steps {
            must(IP, args);
        }
    }

    /// Cuts `host` off: a zero-length pfifo on both of its wire's interfaces drops every
    /// packet between it and the control plane, in both directions, silently.
    pub fn partition(&self, host: usize) {
        let wire = &self.hosts[host].wire;
        for dev in ["tocp", "tohost"] {
            must(
                TC,
                &[
                    "-n", wire, "qdisc", "replace", "dev", dev, "root", "pfifo", "limit", "0",
                ],
            );
        }
    }

    /// Undoes [`NetLab::partition`]: the wire's interfaces get their default queue back.
    pub fn heal(&self, host: usize) {
        let wire = &self.hosts[host].wire;
        for dev in ["tocp", "tohost"] {
            must(TC, &["-n", wire, "qdisc", "del", "dev", dev, "root"]);
        }
    }

    /// `cmd` run inside `host`'s namespace through `ip netns exec`, with the same program,
    /// arguments, environment and working directory (stdio is the caller's to set).
    /// `ip netns exec` execs the program without forking, so the child *is* the program
    /// and killing it (or dropping it: `kill_on_drop`) kills the program.
    pub fn command_in(&self, host: usize, cmd: tokio::process::Command) -> tokio::process::Command {
        let inner = cmd.as_std();
        let mut outer = tokio::process::Command::new(IP);
        outer
            .args(["netns", "exec", &self.hosts[host].ns])
            .arg(inner.get_program())
            .args(inner.get_args());
        for (key, value) in inner.get_envs() {
            match value {
                Some(v) => outer.env(key, v),
                None => outer.env_remove(key),
            };
        }
        if let Some(dir) = inner.get_current_dir() {
            outer.current_dir(dir);
        }
        outer.kill_on_drop(true);
        outer
    }
}

impl Drop for NetLab {
    fn drop(&mut self) {
        // Deleting one end of a veth pair deletes both, and a namespace's links go with it
        // (a host's namespace lingers until its last process, a dropped child, has died).
        for h in &self.hosts {
            let _ = run(IP, &["link", "del", &h.link]);
            let _ = run(IP, &["netns", "del", &h.wire]);
            let _ = run(IP, &["netns", "del", &h.ns]);
        }
        let _ = run(IP, &["link", "del", &self.cp_link]);
        let _ = run(IP, &["netns", "del", &self.cp_ns]);
    }
}

/// Picks a free block and creates the control plane's link in it: the link's name is the
/// claim, so two processes that picked the same block cannot both get it. Nothing named
/// after a block is removed before this process holds the claim.
fn claim_block() -> NetLab {
    let pid = std::process::id();
    let start = pid
        .wrapping_mul(16)
        .wrapping_add(LABS.fetch_add(1, Ordering::Relaxed));
    for attempt in 0..64u32 {
        let block = start.wrapping_add(attempt.wrapping_mul(97)) % BLOCKS;
        if routed(&format!("{}/24", block_addr(block, 0))) {
            continue;
        }
        let (cp_ns, cp_link) = (
            format!("{NS_PREFIX}{pid}-{block:04x}-cp"),
            format!("fp{block:04x}cp"),
        );
        if let Err(e) = run(IP, &["netns", "add", &cp_ns]) {
            cannot_run(&e);
        }
        #[rustfmt::skip]
        let made = run(IP, &["link", "add", &cp_link, "type", "veth",
                             "peer", "name", "cp", "netns", &cp_ns]);
        if let Err(e) = made {
            let _ = run(IP, &["netns", "del", &cp_ns]);
            if e.contains("exists") {
                continue; // another lab holds this block
            }
            cannot_run(&e);
        }
        let lab = NetLab {
            cp_ip: block_addr(block, 253),
            hosts: Vec::new(),
            block,
            cp_ns,
            cp_link,
        };
        must(
            IP,
            &[
                "addr",
                "add",
                &format!("{}/32", lab.cp_ip),
                "dev",
                &lab.cp_link,
            ],
        );
        must(IP, &["link", "set", &lab.cp_link, "up"]);
        must(IP, &["-n", &lab.cp_ns, "link", "set", "cp", "up"]);
        return lab;
    }
    panic!("no free 10.128.0.0/9 block for the network lab after 64 tries");
}

/// 10.X.Y.`last` of `block` (X = 128 + block / 256, Y = block % 256).
fn block_addr(block: u32, last: u32) -> Ipv4Addr {
    Ipv4Addr::from((10 << 24) | ((128 + (block >> 8)) << 16) | ((block & 0xff) << 8) | last)
}

/// Whether any route of this machine (any table) overlaps `prefix`, the default aside.
fn routed(prefix: &str) -> bool {
    ["match", "root"].iter().any(|selector| {
        let out = Command::new(IP)
            .args(["-4", "route", "show", "table", "all", selector, prefix])
            .output();
        out.map_or(true, |o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| !l.trim().is_empty() && !l.starts_with("default"))
        })
    })
}

/// Removes the namespaces of labs whose process is gone, and what still runs in them.
fn sweep_leftovers() {
    let Ok(out) = Command::new(IP).args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(pid) = name
            .strip_prefix(NS_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue; // its lab may still be running
        }
        if let Ok(pids) = Command::new(IP).args(["netns", "pids", name]).output() {
            for left in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-KILL", left]).status();
            }
        }
        let _ = run(IP, &["netns", "del", name]);
    }
}

fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1));
    if euid != Some("0") {
        cannot_run(&format!(
            "not root (effective uid {})",
            euid.unwrap_or("unknown")
        ));
    }
}

/// The one message a machine that cannot run network-fault scenarios gets.
fn cannot_run(why: &str) -> ! {
    panic!(
        "network-fault scenarios need root, iproute2 ({IP}, {TC}: network namespaces, veth, \
         pfifo) and {SYSCTL}, and cannot run here: {why}. CI runs them as root; so must you."
    )
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "`{program} {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    ))
}

fn must(program: &str, args: &[&str]) {
    if let Err(e) = run(program, args) {
        panic!("{e}");
    }
}
