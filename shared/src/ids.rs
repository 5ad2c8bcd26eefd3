//! Names that cross a boundary, parsed once into newtypes and trusted afterwards.
//!
//! Service and tenant names are DNS labels; node ids are host-name-like; a node's
//! identity is the SPIFFE URI `spiffe://<trust-domain>/service/<service>/node/<node-id>`.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{what} must not be empty")]
    Empty { what: &'static str },
    #[error("{what} is longer than {max} characters")]
    TooLong { what: &'static str, max: usize },
    #[error("{what} {value:?} has invalid characters: {rule}")]
    Invalid {
        what: &'static str,
        value: String,
        rule: &'static str,
    },
    #[error(
        "{0:?} is not a SPIFFE node identity (spiffe://<domain>/service/<service>/node/<node>)"
    )]
    NotSpiffe(String),
    #[error("unknown {what} {value:?}; expected one of {expected}")]
    UnknownVariant {
        what: &'static str,
        value: String,
        expected: &'static str,
    },
}

fn dns_label(what: &'static str, s: &str) -> Result<(), NameError> {
    const RULE: &str = "lowercase letters, digits and '-', not starting or ending with '-'";
    if s.is_empty() {
        return Err(NameError::Empty { what });
    }
    if s.len() > 63 {
        return Err(NameError::TooLong { what, max: 63 });
    }
    let ok_chars = s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !ok_chars || s.starts_with('-') || s.ends_with('-') {
        return Err(NameError::Invalid {
            what,
            value: s.to_owned(),
            rule: RULE,
        });
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $what:literal, $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(s: &str) -> Result<Self, NameError> {
                let check: fn(&str) -> Result<(), NameError> = $check;
                check(s)?;
                Ok(Self(s.to_owned()))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                Self::parse(s)
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

name_type!(
    /// A service name: one DNS label, unique within the trust domain.
    ServiceName, "service name", |s| dns_label("service name", s)
);
name_type!(
    /// A tenant name: one DNS label.
    TenantName, "tenant name", |s| dns_label("tenant name", s)
);
name_type!(
    /// An API token's name: one DNS label, unique within its tenant (tokens are listed
    /// and revoked by it).
    TokenName, "token name", |s| dns_label("token name", s)
);
name_type!(
    /// A node id: 1-128 of letters, digits, '.', '_' and '-', starting with a letter or
    /// digit, never containing "..": safe as a URI path segment and as a file name.
    NodeId, "node id", |s| {
        const WHAT: &str = "node id";
        if s.is_empty() {
            return Err(NameError::Empty { what: WHAT });
        }
        if s.len() > 128 {
            return Err(NameError::TooLong { what: WHAT, max: 128 });
        }
        let first_ok = s.as_bytes()[0].is_ascii_alphanumeric();
        let chars_ok = s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !first_ok || !chars_ok || s.contains("..") {
            return Err(NameError::Invalid {
                what: WHAT,
                value: s.to_owned(),
                rule: "letters, digits, '.', '_', '-', starting with a letter or digit, no \"..\"",
            });
        }
        Ok(())
    }
);
name_type!(
    /// A trust domain: a DNS name of lowercase labels (`ferry.local`).
    TrustDomain, "trust domain", |s| {
        if s.len() > 253 {
            return Err(NameError::TooLong { what: "trust domain", max: 253 });
        }
        s.split('.').try_for_each(|label| dns_label("trust domain", label))
    }
);

/// The identity a node proves with its certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SpiffeId {
    pub trust_domain: TrustDomain,
    pub service: ServiceName,
    pub node: NodeId,
}

impl SpiffeId {
    pub fn parse(uri: &str) -> Result<Self, NameError> {
        let bad = || NameError::NotSpiffe(uri.to_owned());
        let rest = uri.strip_prefix("spiffe://").ok_or_else(bad)?;
        let mut parts = rest.split('/');
        let (Some(td), Some("service"), Some(svc), Some("node"), Some(node), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(bad());
        };
        Ok(Self {
            trust_domain: TrustDomain::parse(td).map_err(|_| bad())?,
            service: ServiceName::parse(svc).map_err(|_| bad())?,
            node: NodeId::parse(node).map_err(|_| bad())?,
        })
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "spiffe://{}/service/{}/node/{}",
            self.trust_domain, self.service, self.node
        )
    }
}

macro_rules! str_enum {
    ($(#[$doc:meta])* $name:ident, $what:literal, { $($variant:ident => $s:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $(#[serde(rename = $s)] $variant),+
        }
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s),+ }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                match s {
                    $($s => Ok($name::$variant),)+
                    _ => Err(NameError::UnknownVariant {
                        what: $what,
                        value: s.to_owned(),
                        expected: concat!($($s, " "),+),
                    }),
                }
            }
        }
    };
}

str_enum!(
    /// Key algorithm of the keys a service's nodes hold.
    KeyType, "key type", { EcdsaP256 => "ecdsa-p256", Ed25519 => "ed25519", Rsa2048 => "rsa-2048" }
);
str_enum!(
    /// Who generates the delivered certificate's key: the control plane (`central`),
    /// the node (`node-key`, by CSR; the key never leaves the node), or nobody: the
    /// customer imports certificate and key (`imported`, by API or from S3).
    KeyMode, "key mode", { Central => "central", NodeKey => "node-key", Imported => "imported" }
);
str_enum!(
    /// What a tenant's API token may do: `read` (GET routes), `deliver` (read, plus forced
    /// refreshes, rotations, metadata writes and certificate imports) or `admin`
    /// (everything its tenant can, tokens and webhooks included).
    TokenRole, "token role", { Read => "read", Deliver => "deliver", Admin => "admin" }
);

impl TokenRole {
    /// Whether a token of this role may do what `needed` may: each role includes the
    /// ones before it.
    pub fn includes(self, needed: TokenRole) -> bool {
        let rank = |r: TokenRole| match r {
            TokenRole::Read => 0,
            TokenRole::Deliver => 1,
            TokenRole::Admin => 2,
        };
        rank(self) >= rank(needed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_roles_include_the_lesser_ones() {
        use TokenRole::*;
        assert!(Admin.includes(Deliver) && Admin.includes(Read) && Deliver.includes(Read));
        assert!(!Read.includes(Deliver) && !Deliver.includes(Admin));
        assert_eq!("deliver".parse::<TokenRole>(), Ok(Deliver));
        assert!("owner".parse::<TokenRole>().is_err());
        assert!(TokenName::parse("ci-deploy").is_ok() && TokenName::parse("CI").is_err());
    }

    #[test]
    fn service_names_are_dns_labels() {
        assert!(ServiceName::parse("payments-api").is_ok());
        for bad in ["", "-a", "a-", "Upper", "a_b", "a.b", &"a".repeat(64)] {
            assert!(ServiceName::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn node_ids_refuse_traversal_and_separators() {
        assert!(NodeId::parse("ip-10-0-0-1.eu-west-1.compute.internal").is_ok());
        assert!(NodeId::parse("Node_7").is_ok());
        for bad in [
            "",
            "..",
            "a/b",
            ".hidden",
            "a..b",
            "a\0b",
            "a b",
            &"n".repeat(129),
        ] {
            assert!(NodeId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn spiffe_ids_round_trip_and_reject_extra_segments() {
        let uri = "spiffe://ferry.local/service/web/node/n-1";
        let id = SpiffeId::parse(uri).expect("valid");
        assert_eq!(id.service.as_str(), "web");
        assert_eq!(id.to_string(), uri);
        for bad in [
            "spiffe://ferry.local/service/web/node/n-1/x",
            "spiffe://ferry.local/service/web",
            "https://ferry.local/service/web/node/n",
            "spiffe://ferry.local/service/web/node/..",
        ] {
            assert!(SpiffeId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn key_types_parse_from_their_wire_names() {
        assert_eq!("rsa-2048".parse::<KeyType>().ok(), Some(KeyType::Rsa2048));
        assert!("dsa".parse::<KeyType>().is_err());
        let json = serde_json::to_string(&KeyMode::NodeKey).expect("serializes");
        assert_eq!(json, "\"node-key\"");
    }
}
