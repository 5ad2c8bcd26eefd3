//! Which destination addresses a tenant-aimed request may connect to. Pure: addresses
//! in, a verdict out, no I/O.
//!
//! Always refused: unspecified, link-local (the cloud metadata services
//! 169.254.169.254 and fd00:ec2::254 included), multicast, broadcast and other reserved
//! IPv4 space, and the control plane's own listen address. Loopback is refused unless
//! the operator turns `allow_loopback` on; private ranges (10/8, 172.16/12,
//! 192.168/16, 100.64/10, fc00::/7, fec0::/10) unless the operator lists them in
//! `allow`. IPv4 addresses embedded in IPv6 (mapped, compatible, NAT64) are judged as
//! the IPv4 address they reach.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// An IP network, `10.0.0.0/8` or `fd00::/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    /// Parses `addr/prefix` (or a bare address, a /32 or /128).
    pub fn parse(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an address or network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0..={max}"))?,
        };
        Ok(Self { addr, prefix })
    }

    const fn v4(a: [u8; 4], prefix: u8) -> Self {
        Self {
            addr: IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])),
            prefix,
        }
    }

    const fn v6(a: [u16; 8], prefix: u8) -> Self {
        Self {
            addr: IpAddr::V6(Ipv6Addr::new(
                a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7],
            )),
            prefix,
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }

    /// Whether every address of `other` is in this network.
    pub fn covers(&self, other: &Net) -> bool {
        self.prefix <= other.prefix && self.contains(other.addr)
    }
}

impl std::fmt::Display for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Never reachable, whatever the operator allows.
const ALWAYS_REFUSED: &[Net] = &[
    Net::v4([0, 0, 0, 0], 8),                   // unspecified, "this network"
    Net::v4([169, 254, 0, 0], 16),              // link-local, the metadata service
    Net::v4([224, 0, 0, 0], 4),                 // multicast
    Net::v4([240, 0, 0, 0], 4),                 // reserved, broadcast
    Net::v6([0, 0, 0, 0, 0, 0, 0, 0], 128),     // unspecified
    Net::v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10), // link-local
    Net::v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8),  // multicast
    Net::v6([0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254], 128), // AWS metadata over IPv6
];

const LOOPBACK: &[Net] = &[
    Net::v4([127, 0, 0, 0], 8),
    Net::v6([0, 0, 0, 0, 0, 0, 0, 1], 128),
];

/// Reachable only through `allow`.
const PRIVATE: &[Net] = &[
    Net::v4([10, 0, 0, 0], 8),
    Net::v4([172, 16, 0, 0], 12),
    Net::v4([192, 168, 0, 0], 16),
    Net::v4([100, 64, 0, 0], 10),               // carrier-grade NAT
    Net::v4([192, 0, 0, 0], 24),                // IETF protocol assignments
    Net::v4([198, 18, 0, 0], 15),               // benchmarking
    Net::v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),  // unique local
    Net::v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10), // site-local (deprecated)
];

/// The operator's settings (`[outbound]` in the config file).
#[derive(Debug, Clone, Default)]
pub struct OutboundSettings {
    /// Private ranges tenants' requests may reach (`outbound.allow`).
    pub allow: Vec<Net>,
    /// Whether tenants' requests may reach loopback (`outbound.allow_loopback`): tests
    /// and single-host setups only.
    pub allow_loopback: bool,
}

impl OutboundSettings {
    /// Checks an `allow` entry. An entry opens private space only: what is always
    /// refused stays refused and loopback has its own switch, so an entry inside those
    /// would do nothing and is refused as a mistake.
    pub fn checked_allow(entry: &str) -> Result<Net, String> {
        let net = Net::parse(entry)?;
        if let Some(hit) = ALWAYS_REFUSED.iter().find(|r| r.covers(&net)) {
            return Err(format!("{net} is inside {hit}, which is never reachable"));
        }
        if LOOPBACK.iter().any(|r| r.covers(&net)) {
            return Err(format!("{net} is loopback; use allow_loopback = true"));
        }
        Ok(net)
    }
}

/// The policy of one replica: the settings and its own listen address.
#[derive(Debug, Clone)]
pub struct Policy {
    settings: OutboundSettings,
    /// The listen port and the addresses that reach the listener on it.
    own_port: u16,
    own_ips: Vec<IpAddr>,
    /// The listener is on loopback or every interface: all of loopback on the listen
    /// port counts as this control plane (`localhost` may resolve to either family).
    own_loopback: bool,
}

impl Policy {
    /// `listen` is the bound address; `also_own` the server names that are addresses
    /// (they reach this listener when it listens on every interface).
    pub fn new(settings: OutboundSettings, listen: SocketAddr, also_own: &[IpAddr]) -> Self {
        let ip = canonical(listen.ip());
        let mut own_ips = vec![ip];
        if ip.is_unspecified() {
            own_ips.extend(also_own.iter().map(|ip| canonical(*ip)));
        }
        Self {
            settings,
            own_port: listen.port(),
            own_ips,
            own_loopback: ip.is_loopback() || ip.is_unspecified(),
        }
    }

    pub fn own_port(&self) -> u16 {
        self.own_port
    }

    /// Whether `ip` may be connected to on any port but the listen port.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        if ALWAYS_REFUSED.iter().any(|n| n.contains(ip)) {
            return false;
        }
        if LOOPBACK.iter().any(|n| n.contains(ip)) {
            return self.settings.allow_loopback;
        }
        if PRIVATE.iter().any(|n| n.contains(ip)) {
            return self.settings.allow.iter().any(|n| n.contains(ip));
        }
        true
    }

    /// Whether `ip` may be connected to on the listen port (it must not be this
    /// control plane itself).
    pub fn allows_on_own_port(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.allows(ip)
            && !self.own_ips.contains(&ip)
            && !(self.own_loopback && LOOPBACK.iter().any(|n| n.contains(ip)))
    }

    /// Whether `addr` may be connected to.
    pub fn allows_addr(&self, addr: SocketAddr) -> bool {
        if addr.port() == self.own_port {
            self.allows_on_own_port(addr.ip())
        } else {
            self.allows(addr.ip())
        }
    }
}

/// The address as routed: IPv4 embedded in IPv6 (mapped `::ffff:a.b.c.d`, compatible
/// `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`) judged as that IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip else { return ip };
    let s = v6.segments();
    let embedded = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => IpAddr::V4(embedded),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => IpAddr::V4(embedded),
        // `::` and `::1` are themselves; the rest of ::/96 is the deprecated compatible form.
        [0, 0, 0, 0, 0, 0, 0, 0 | 1] => ip,
        [0, 0, 0, 0, 0, 0, _, _] => IpAddr::V4(embedded),
        _ => ip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str], loopback: bool) -> Policy {
        let settings = OutboundSettings {
            allow: allow
                .iter()
                .map(|a| OutboundSettings::checked_allow(a).expect("valid"))
                .collect(),
            allow_loopback: loopback,
        };
        Policy::new(settings, "127.0.0.1:8443".parse().expect("addr"), &[])
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn the_default_refuses_every_internal_class_and_allows_public_addresses() {
        let p = policy(&[], false);
        for refused in [
            "127.0.0.1",
            "127.9.9.9",
            "::1",
            "0.0.0.0",
            "::",
            "169.254.169.254",
            "fd00:ec2::254",
            "fe80::1",
            "224.0.0.1",
            "ff02::1",
            "255.255.255.255",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "fc00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "::7f00:1",
        ] {
            assert!(!p.allows(ip(refused)), "{refused} allowed");
        }
        for allowed in [
            "93.184.216.34",
            "2606:2800:220:1::1",
            "8.8.8.8",
            "::ffff:8.8.8.8",
        ] {
            assert!(p.allows(ip(allowed)), "{allowed} refused");
        }
    }

    #[test]
    fn operator_switches_open_only_what_they_name() {
        let p = policy(&["10.0.0.0/8", "fd12::/16"], true);
        assert!(p.allows(ip("10.20.30.40")) && p.allows(ip("fd12::5")));
        assert!(p.allows(ip("127.0.0.1")) && p.allows(ip("::1")));
        assert!(!p.allows(ip("192.168.0.1")), "not listed");
        assert!(!p.allows(ip("169.254.169.254")) && !p.allows(ip("fd00:ec2::254")));
        let wide = policy(&["0.0.0.0/0", "fd00::/8"], false);
        assert!(wide.allows(ip("192.168.0.1")) && wide.allows(ip("fd00::1")));
        assert!(!wide.allows(ip("127.0.0.1")), "allow never opens loopback");
        assert!(!wide.allows(ip("169.254.169.254")) && !wide.allows(ip("fd00:ec2::254")));
        assert!(
            !p.allows_addr("127.0.0.1:8443".parse().expect("addr")),
            "itself"
        );
        assert!(
            !p.allows_addr("[::1]:8443".parse().expect("addr")),
            "localhost, too"
        );
        assert!(p.allows_addr("127.0.0.1:8444".parse().expect("addr")));
        for bad in [
            "169.254.169.254",
            "fd00:ec2::254",
            "127.0.0.0/8",
            "::1",
            "10.0.0.0/33",
            "x",
        ] {
            assert!(
                OutboundSettings::checked_allow(bad).is_err(),
                "{bad} accepted"
            );
        }
    }

    #[test]
    fn listening_on_every_interface_makes_loopback_and_named_addresses_own() {
        let settings = OutboundSettings {
            allow: vec![Net::parse("10.0.0.0/8").expect("net")],
            allow_loopback: true,
        };
        let p = Policy::new(
            settings,
            "0.0.0.0:8443".parse().expect("addr"),
            &[ip("10.0.0.5")],
        );
        assert!(!p.allows_addr("127.0.0.1:8443".parse().expect("addr")));
        assert!(!p.allows_addr("10.0.0.5:8443".parse().expect("addr")));
        assert!(p.allows_addr("10.0.0.5:9000".parse().expect("addr")));
    }
}
