//! Which names a service's delivered certificates may carry.
//!
//! A tenant writes the SAN template; an admin sets the names it may render to (DNS
//! suffixes, wildcards on or off, IP networks) beside the service's own
//! `<service>.<trust domain>`, which is all it may name without an admin's word: no IP
//! address at all by default. Whatever the policy, a certificate never names the control
//! plane (its configured server names), `localhost`, or a loopback, unspecified,
//! link-local or multicast address. Checked when a service is saved (422) and again for
//! every certificate issued, with the node's real id in the template.

use ferry_shared::SpiffeId;
use ipnet::IpNet;
use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{0:?} is reserved (the control plane's own name, or localhost)")]
    Reserved(String),
    #[error("{name:?} is outside the names this service may use ({allowed})")]
    OutsidePolicy { name: String, allowed: String },
    #[error("{0:?} is a wildcard, which this service may not use")]
    WildcardRefused(String),
    #[error("{0:?} is not a valid DNS name (a '*' only as the whole leftmost label)")]
    Invalid(String),
    #[error("{ip} is outside the IP networks this service may name ({allowed})")]
    IpOutsidePolicy { ip: String, allowed: String },
    #[error("{0} is a loopback, unspecified, link-local or multicast address")]
    IpReserved(String),
}

/// Parses an admin's IP network (`10.20.0.0/16`, `fd00:1::/64`, or one address); the
/// host bits must be zero, so what is stored is what is meant.
pub fn parse_ip_range(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    let net: IpNet = match s.parse::<IpNet>() {
        Ok(n) => n,
        Err(_) => s
            .parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|_| format!("{s:?} is not an IP network (CIDR) or address"))?,
    };
    if net.trunc() != net {
        return Err(format!(
            "{s:?} has host bits set; the network is {}",
            net.trunc()
        ));
    }
    Ok(net)
}

/// Addresses no certificate names whatever the policy says.
fn ip_reserved(ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || match ip {
            IpAddr::V4(v4) => v4.is_link_local() || v4.is_broadcast(),
            IpAddr::V6(v6) => v6.is_unicast_link_local(),
        }
}

/// The names one service may put in certificates.
#[derive(Debug, Clone)]
pub struct NamePolicy {
    suffixes: Vec<String>,
    wildcards: bool,
    reserved: Vec<String>,
    ip_ranges: Vec<IpNet>,
}

/// A suffix as stored: lower case, without a leading or trailing dot.
pub fn normalize_suffix(s: &str) -> String {
    s.trim().trim_matches('.').to_ascii_lowercase()
}

/// Whether `suffix` is a DNS name of at least two labels (so no one allows a whole
/// top-level domain by mistake).
pub fn suffix_is_valid(suffix: &str) -> bool {
    let s = normalize_suffix(suffix);
    s.split('.').count() >= 2
        && s.parse::<IpAddr>().is_err()
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

impl NamePolicy {
    /// `suffixes`: what an admin allowed beside the service's own subtree;
    /// `reserved`: the control plane's server names.
    pub fn new(
        service: &str,
        trust_domain: &str,
        suffixes: Option<&[String]>,
        wildcards: bool,
        reserved: &[String],
    ) -> Self {
        // The service's own namespace always; an admin may add suffixes beside it.
        let mut own = vec![format!("{service}.{trust_domain}").to_ascii_lowercase()];
        for s in suffixes
            .unwrap_or_default()
            .iter()
            .map(|s| normalize_suffix(s))
        {
            if !own.contains(&s) {
                own.push(s);
            }
        }
        let suffixes = own;
        Self {
            suffixes,
            wildcards,
            reserved: reserved.iter().map(|r| r.to_ascii_lowercase()).collect(),
            ip_ranges: Vec::new(),
        }
    }

    /// The IP networks an admin allowed as IP SANs.
    pub fn with_ip_ranges(mut self, ranges: Vec<IpNet>) -> Self {
        self.ip_ranges = ranges;
        self
    }

    fn check_ip(&self, ip: IpAddr) -> Result<(), NameError> {
        if ip_reserved(ip) || self.reserved.contains(&ip.to_string()) {
            return Err(NameError::IpReserved(ip.to_string()));
        }
        if self
            .ip_ranges
            .iter()
            .any(|n| n.contains(&ip.to_canonical()))
        {
            return Ok(());
        }
        let allowed = match self.ip_ranges.as_slice() {
            [] => "none; an admin sets ip_ranges".to_owned(),
            nets => nets
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        };
        Err(NameError::IpOutsidePolicy {
            ip: ip.to_string(),
            allowed,
        })
    }

    /// Every name of `names` is allowed, or the first that is not.
    pub fn check_all(&self, names: &[String]) -> Result<(), NameError> {
        names.iter().try_for_each(|n| self.check(n))
    }

    pub fn check(&self, name: &str) -> Result<(), NameError> {
        let name = name.to_ascii_lowercase();
        if let Ok(ip) = name.parse::<IpAddr>() {
            return self.check_ip(ip);
        }
        let (wildcard, base) = match name.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, name.as_str()),
        };
        if base.contains('*') || base.split('.').count() < 2 && wildcard {
            return Err(NameError::Invalid(name));
        }
        if wildcard && !self.wildcards {
            return Err(NameError::WildcardRefused(name));
        }
        if base == "localhost" || base.ends_with(".localhost") {
            return Err(NameError::Reserved(name));
        }
        let covers = |r: &str| {
            if wildcard {
                r.split_once('.').is_some_and(|(_, parent)| parent == base)
            } else {
                r == base
            }
        };
        if self.reserved.iter().any(|r| covers(r)) {
            return Err(NameError::Reserved(name));
        }
        let inside = self
            .suffixes
            .iter()
            .any(|s| base == s || base.ends_with(&format!(".{s}")));
        if !inside {
            return Err(NameError::OutsidePolicy {
                name,
                allowed: self.describe(),
            });
        }
        Ok(())
    }

    fn describe(&self) -> String {
        let list = self
            .suffixes
            .iter()
            .map(|s| format!("*.{s}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "{list}; an admin sets dns_suffixes{}",
            if self.wildcards {
                ""
            } else {
                ", wildcards off"
            }
        )
    }
}

/// The names `template` renders to for `id`, checked against `policy`.
pub fn render_checked(
    template: &str,
    id: &SpiffeId,
    policy: &NamePolicy,
) -> Result<Vec<String>, NameError> {
    let names = super::leaf::render_sans(template, id);
    policy.check_all(&names)?;
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_policy() -> NamePolicy {
        NamePolicy::new(
            "web",
            "ferry.local",
            None,
            false,
            &["cp.example.com".into()],
        )
    }

    #[test]
    fn by_default_a_service_names_only_its_own_subtree() {
        let p = default_policy();
        assert_eq!(p.check("n1.web.ferry.local"), Ok(()));
        assert_eq!(p.check("web.ferry.local"), Ok(()));
        for bad in ["db.ferry.local", "example.com", "evilweb.ferry.local"] {
            assert!(
                matches!(p.check(bad), Err(NameError::OutsidePolicy { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_control_plane_localhost_and_ip_addresses_are_never_allowed() {
        let p = NamePolicy::new(
            "web",
            "ferry.local",
            Some(&["example.com".into()]),
            true,
            &["cp.example.com".into()],
        );
        assert!(matches!(p.check("localhost"), Err(NameError::Reserved(_))));
        assert!(matches!(
            p.check("cp.example.com"),
            Err(NameError::Reserved(_))
        ));
        assert!(matches!(
            p.check("CP.Example.com"),
            Err(NameError::Reserved(_))
        ));
        assert!(matches!(
            p.check("*.example.com"),
            Err(NameError::Reserved(_))
        ));
        assert!(matches!(
            p.check("10.0.0.1"),
            Err(NameError::IpOutsidePolicy { .. })
        ));
        assert!(matches!(p.check("*"), Err(NameError::Invalid(_))));
        assert!(matches!(
            p.check("a.*.example.com"),
            Err(NameError::Invalid(_))
        ));
        assert_eq!(p.check("*.web.example.com"), Ok(()));
        assert_eq!(p.check("api.example.com"), Ok(()));
    }

    #[test]
    fn wildcards_need_the_admins_word() {
        let p = default_policy();
        assert!(matches!(
            p.check("*.web.ferry.local"),
            Err(NameError::WildcardRefused(_))
        ));
    }

    #[test]
    fn suffixes_must_be_names_of_two_labels_at_least() {
        assert!(suffix_is_valid("example.com"));
        assert!(suffix_is_valid(".Corp.Example.com."));
        for bad in ["com", "", "10.0.0.1", "a..b", "*.example.com"] {
            assert!(!suffix_is_valid(bad), "{bad}");
        }
    }

    #[test]
    fn ip_addresses_need_an_admins_network_and_never_loopback() {
        let nets = ["10.20.0.0/16", "fd00:1::/64"]
            .iter()
            .map(|n| parse_ip_range(n).expect("valid"))
            .collect();
        let p = default_policy().with_ip_ranges(nets);
        assert_eq!(p.check("10.20.3.4"), Ok(()));
        assert_eq!(p.check("fd00:1::7"), Ok(()));
        assert_eq!(
            p.check("::ffff:10.20.3.4"),
            Ok(()),
            "IPv4-mapped is the IPv4"
        );
        for outside in ["10.21.0.1", "192.168.1.1", "fd00:2::1"] {
            assert!(
                matches!(p.check(outside), Err(NameError::IpOutsidePolicy { .. })),
                "{outside}"
            );
        }
        let everything = default_policy().with_ip_ranges(vec![
            parse_ip_range("0.0.0.0/0").expect("valid"),
            parse_ip_range("::/0").expect("valid"),
        ]);
        for reserved in [
            "127.0.0.1",
            "0.0.0.0",
            "::1",
            "169.254.169.254",
            "fe80::1",
            "224.0.0.1",
            "::ffff:127.0.0.1",
        ] {
            assert!(
                matches!(everything.check(reserved), Err(NameError::IpReserved(_))),
                "{reserved}"
            );
        }
        assert!(parse_ip_range("10.20.0.1/16").is_err(), "host bits set");
        assert!(parse_ip_range("10.20.0.0/33").is_err());
        assert!(parse_ip_range("ten").is_err());
        assert_eq!(
            parse_ip_range("10.1.2.3").expect("one address").to_string(),
            "10.1.2.3/32"
        );
    }
}
