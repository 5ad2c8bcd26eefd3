//! How each API resource looks to a human: one table row per item in lists, a
//! `key: value` block for one item. Pure functions of the shared wire types.

use crate::output::{Table, duration, fields, opt_time, time, truncate};
use ferry_shared::ServiceName;
use ferry_shared::api::{
    ApiToken, ApiTokenCreated, AuditEntry, Delivery, DeliveryState, JoinTokenCreated, Node,
    Rotation, Service, Tenant,
};

pub fn services(items: &[Service]) -> String {
    let mut t = Table::new(&[
        "name",
        "tenant",
        "cert ttl",
        "renew before",
        "key type",
        "key mode",
        "created",
    ]);
    for s in items {
        t.row(vec![
            s.name.to_string(),
            s.tenant.to_string(),
            duration(s.cert_ttl_seconds),
            duration(s.renew_before_seconds),
            s.key_type.to_string(),
            s.key_mode.to_string(),
            time(s.created_at),
        ]);
    }
    t.render()
}

pub fn service(s: &Service) -> String {
    let secs = |n: u64| format!("{n} ({})", duration(n));
    fields(&[
        ("name", s.name.to_string()),
        ("tenant", s.tenant.to_string()),
        ("cert ttl", secs(s.cert_ttl_seconds)),
        ("renew before", secs(s.renew_before_seconds)),
        ("key type", s.key_type.to_string()),
        ("key mode", s.key_mode.to_string()),
        ("stale after", secs(s.stale_after_seconds)),
        ("grace", secs(s.grace_seconds)),
        ("alert before", secs(s.alert_before_seconds)),
        ("created", time(s.created_at)),
        ("updated", time(s.updated_at)),
    ])
}

pub fn nodes(items: &[Node]) -> String {
    let mut t = Table::new(&[
        "node",
        "state",
        "desired",
        "acked",
        "last seen",
        "cert not after",
        "identity not after",
    ]);
    for n in items {
        t.row(vec![
            n.node_id.to_string(),
            n.state.clone(),
            n.desired_version.to_string(),
            n.acked_version.to_string(),
            opt_time(n.last_seen),
            opt_time(n.cert_not_after),
            time(n.identity_not_after),
        ]);
    }
    t.render()
}

/// One node; the delivery details the agent reports are left out while unknown.
pub fn node(n: &Node) -> String {
    let mut pairs = vec![
        ("service", n.service.to_string()),
        ("node", n.node_id.to_string()),
        ("spiffe id", n.spiffe_id.clone()),
        ("state", n.state.clone()),
        ("desired version", n.desired_version.to_string()),
        ("acked version", n.acked_version.to_string()),
    ];
    let optional = [
        ("desired hash", n.desired_hash.clone()),
        ("acked hash", n.acked_hash.clone()),
        ("last seen", n.last_seen.map(time)),
        ("cert not after", n.cert_not_after.map(time)),
        ("renew at", n.renew_at.map(time)),
        ("identity not after", Some(time(n.identity_not_after))),
        ("enrolled", Some(time(n.enrolled_at))),
        ("clock skew", n.clock_skew_ms.map(skew)),
        ("last error", n.last_error.clone()),
        ("hook exit code", n.hook_exit_code.map(|c| c.to_string())),
        ("agent version", n.agent_version.clone()),
    ];
    pairs.extend(
        optional
            .into_iter()
            .filter_map(|(key, value)| Some((key, value?))),
    );
    fields(&pairs)
}

/// Node clock minus server clock: `+1500 ms (node ahead)`.
fn skew(ms: i64) -> String {
    match ms.signum() {
        1 => format!("+{ms} ms (node ahead)"),
        -1 => format!("{ms} ms (node behind)"),
        _ => "0 ms".to_owned(),
    }
}

pub fn delivery(d: &Delivery) -> String {
    let state = match d.state {
        DeliveryState::Pending => "pending",
        DeliveryState::Delivered => "delivered",
        DeliveryState::Failed => "failed",
        DeliveryState::Superseded => "superseded",
    };
    fields(&[
        ("delivery", d.delivery_id.clone()),
        ("service", d.service.to_string()),
        ("node", d.node_id.to_string()),
        ("state", state.to_owned()),
        (
            "version",
            d.version.map(|v| v.to_string()).unwrap_or_default(),
        ),
        ("rotation", d.rotation_id.clone().unwrap_or_default()),
        ("error", d.error.clone().unwrap_or_default()),
        ("created", time(d.created_at)),
        ("issued", opt_time(d.issued_at)),
        ("finished", opt_time(d.finished_at)),
    ])
}

pub fn rotation(r: &Rotation) -> String {
    fields(&[
        ("rotation", r.rotation_id.clone()),
        ("service", r.service.to_string()),
        ("state", r.state.clone()),
        ("delivered", format!("{}/{}", r.delivered, r.total)),
        ("failed", r.failed.to_string()),
        ("in flight", r.in_flight.to_string()),
        ("queued", r.queued.to_string()),
        ("max in flight", r.max_in_flight.to_string()),
        ("created", time(r.created_at)),
        ("finished", opt_time(r.finished_at)),
    ])
}

pub fn tenants(items: &[Tenant]) -> String {
    let mut t = Table::new(&["name", "created"]);
    for tenant in items {
        t.row(vec![tenant.name.to_string(), time(tenant.created_at)]);
    }
    t.render()
}

pub fn api_tokens(items: &[ApiToken]) -> String {
    let mut t = Table::new(&["name", "role", "created", "expires", "description"]);
    for tok in items {
        let expires = match tok.expires_at {
            None => "never".to_owned(),
            Some(at) if tok.expired => format!("{} (expired)", time(at)),
            Some(at) => time(at),
        };
        t.row(vec![
            tok.name.to_string(),
            tok.role.to_string(),
            time(tok.created_at),
            expires,
            truncate(&tok.description, 40),
        ]);
    }
    t.render()
}

pub fn audit(items: &[AuditEntry]) -> String {
    let mut t = Table::new(&["id", "at", "actor", "tenant", "action", "target", "detail"]);
    for e in items {
        let detail = match &e.detail {
            serde_json::Value::Null => String::new(),
            serde_json::Value::Object(m) if m.is_empty() => String::new(),
            other => truncate(&other.to_string(), 60),
        };
        t.row(vec![
            e.id.to_string(),
            time(e.at),
            e.actor.clone(),
            e.tenant.clone().unwrap_or_default(),
            e.action.clone(),
            e.target.clone(),
            detail,
        ]);
    }
    t.render()
}

/// The new join token, its pin, and the command that runs the agent on a node (enrolling
/// on its first start, then delivering).
pub fn join_token(created: &JoinTokenCreated, service: &ServiceName, server: &str) -> String {
    let mut out = fields(&[
        ("token", created.token.clone()),
        ("ca fingerprint", created.ca_fingerprint.clone()),
        ("expires", time(created.expires_at)),
        ("max uses", created.max_uses.to_string()),
    ]);
    out.push_str(
        "\nRun the agent on a node (the token is shown only once; with the packaged unit put \
         it in /etc/ferry/join-token instead):\n",
    );
    out.push_str(&format!(
        "  FERRY_JOIN_TOKEN={} ferry-agent run --server {server} --service {service} \
         --node-id <NODE_ID> --ca-fingerprint {} --install-dir /var/lib/ferry-agent/certs\n",
        created.token, created.ca_fingerprint
    ));
    out
}

pub fn api_token(created: &ApiTokenCreated) -> String {
    let mut out = fields(&[
        ("id", created.id.clone()),
        (
            "tenant",
            created
                .tenant
                .as_ref()
                .map(|t| t.to_string())
                .unwrap_or_default(),
        ),
        ("name", created.name.to_string()),
        ("role", created.role.to_string()),
        (
            "expires",
            created
                .expires_at
                .map(time)
                .unwrap_or_else(|| "never".into()),
        ),
        ("token", created.token.clone()),
    ]);
    out.push_str("\nStore the token now: it is shown only once.\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_shared::{KeyMode, KeyType};
    use time::macros::datetime;

    #[test]
    fn service_rows_show_names_and_durations() {
        let s = Service {
            name: ServiceName::parse("web").expect("valid"),
            tenant: ferry_shared::TenantName::parse("acme").expect("valid"),
            cert_ttl_seconds: 3600,
            renew_before_seconds: 1200,
            key_type: KeyType::EcdsaP256,
            key_mode: KeyMode::Central,
            stale_after_seconds: 600,
            grace_seconds: 300,
            alert_before_seconds: 900,
            san_template: "{node}.{service}.{trust_domain}".into(),
            dns_suffixes: Vec::new(),
            ip_ranges: Vec::new(),
            wildcard_names: false,
            created_at: datetime!(2026-01-02 03:04:05 UTC),
            updated_at: datetime!(2026-01-02 03:04:05 UTC),
        };
        let table = services(std::slice::from_ref(&s));
        let row = table.lines().nth(1).expect("one row");
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            cells,
            [
                "web",
                "acme",
                "1h",
                "20m",
                "ecdsa-p256",
                "central",
                "2026-01-02T03:04:05Z"
            ]
        );
        assert!(
            service(&s).contains("cert ttl:     3600 (1h)\n"),
            "{}",
            service(&s)
        );
    }

    fn node_fixture() -> Node {
        Node {
            service: ServiceName::parse("web").expect("valid"),
            node_id: ferry_shared::NodeId::parse("n-1").expect("valid"),
            spiffe_id: "spiffe://ferry/web/n-1".into(),
            state: "active".into(),
            desired_version: 3,
            acked_version: 2,
            last_seen: None,
            cert_not_after: Some(datetime!(2026-02-01 00:00:00 UTC)),
            identity_not_after: datetime!(2026-03-01 00:00:00 UTC),
            enrolled_at: datetime!(2026-01-01 00:00:00 UTC),
            desired_hash: Some("sha256:aa".into()),
            acked_hash: None,
            renew_at: Some(datetime!(2026-01-20 00:00:00 UTC)),
            clock_skew_ms: Some(-250),
            last_error: Some("reload hook exited 3:\nnginx: bad config".into()),
            hook_exit_code: Some(3),
            agent_version: None,
        }
    }

    #[test]
    fn node_show_lists_known_delivery_details_and_skips_unknown_ones() {
        let text = node(&node_fixture());
        for line in [
            "desired hash:       sha256:aa\n",
            "renew at:           2026-01-20T00:00:00Z\n",
            "clock skew:         -250 ms (node behind)\n",
            "last error:         reload hook exited 3:\\nnginx: bad config\n",
            "hook exit code:     3\n",
        ] {
            assert!(text.contains(line), "{line:?} not in\n{text}");
        }
        for absent in ["acked hash", "agent version", "last seen"] {
            assert!(!text.contains(absent), "{absent} in\n{text}");
        }
        assert_eq!(skew(1500), "+1500 ms (node ahead)");
        assert_eq!(skew(0), "0 ms");
    }

    #[test]
    fn node_rows_show_acked_version_and_cert_expiry() {
        let table = nodes(&[node_fixture()]);
        let mut lines = table.lines();
        let header = lines.next().expect("header");
        assert!(
            header.contains("ACKED") && header.contains("CERT NOT AFTER"),
            "{header}"
        );
        let cells: Vec<&str> = lines.next().expect("row").split_whitespace().collect();
        assert_eq!(cells[..4], ["n-1", "active", "3", "2"]);
        assert_eq!(cells[5], "2026-02-01T00:00:00Z");
    }

    #[test]
    fn deliveries_and_rotations_show_as_blocks() {
        let d = Delivery {
            delivery_id: "d1".into(),
            service: ServiceName::parse("web").expect("valid"),
            node_id: ferry_shared::NodeId::parse("n-1").expect("valid"),
            state: DeliveryState::Failed,
            version: None,
            rotation_id: None,
            error: Some("hook exited 3".into()),
            created_at: datetime!(2026-01-01 00:00:00 UTC),
            issued_at: None,
            finished_at: None,
        };
        let text = delivery(&d);
        assert!(text.starts_with("delivery: d1\n"), "{text}");
        assert!(text.contains("state:    failed\nversion:  -\n"), "{text}");
        assert!(text.contains("error:    hook exited 3\n"), "{text}");

        let r = Rotation {
            rotation_id: "r1".into(),
            service: ServiceName::parse("web").expect("valid"),
            state: "running".into(),
            max_in_flight: 10,
            total: 100,
            delivered: 50,
            failed: 0,
            in_flight: 10,
            queued: 40,
            created_at: datetime!(2026-01-01 00:00:00 UTC),
            finished_at: None,
        };
        let text = rotation(&r);
        assert!(text.contains("delivered:     50/100\n"), "{text}");
        assert!(text.ends_with("finished:      -\n"), "{text}");
    }

    #[test]
    fn join_token_output_has_a_pasteable_enroll_line() {
        let created = JoinTokenCreated {
            token: "jt_abc".into(),
            ca_fingerprint: format!("sha256:{}", "0f".repeat(32)),
            expires_at: datetime!(2026-01-02 03:04:05 UTC),
            max_uses: 3,
        };
        let svc = ServiceName::parse("web").expect("valid");
        let text = join_token(&created, &svc, "https://cp:8443");
        assert!(text.contains("token:          jt_abc\n"), "{text}");
        assert!(
            text.contains("expires:        2026-01-02T03:04:05Z\n"),
            "{text}"
        );
        let run = text
            .lines()
            .find(|l| l.contains("ferry-agent run"))
            .expect("line");
        assert_eq!(
            run.trim(),
            format!(
                "FERRY_JOIN_TOKEN=jt_abc ferry-agent run --server https://cp:8443 --service web \
                 --node-id <NODE_ID> --ca-fingerprint {} --install-dir /var/lib/ferry-agent/certs",
                created.ca_fingerprint
            )
        );
    }
}
