//! `ferry-agent status` read from hand-made state dirs at fixed instants.

use super::*;
use crate::state::{AgentState, StateDir};
use time::macros::datetime;

/// An agent runs and beat just now.
const LIVE: Running = Running::Yes {
    heartbeat_age: std::time::Duration::ZERO,
};

#[test]
fn missing_state_dir_is_not_enrolled_and_not_valid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let st = status_at(
        &dir.path().join("absent"),
        datetime!(2026-01-01 00:00 UTC),
        LIVE,
    )
    .expect("status");
    assert!(!st.enrolled && !st.valid);
    assert!(st.to_string().contains("not enrolled"), "{st}");
    let json = serde_json::to_value(&st).expect("serializes");
    assert_eq!(json["valid"], false);
}

#[test]
fn status_applies_the_measured_skew_and_reports_time_left() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = StateDir::new(dir.path());
    let (cert_pem, _key) = crate::testkit::self_signed_identity(
        "spiffe://ferry.local/service/web/node/n-1",
        datetime!(2026-01-01 00:00 UTC),
        datetime!(2026-01-01 01:00 UTC),
    );
    std::fs::write(state.file(CERT_FILE), cert_pem).expect("write cert");
    let saved = AgentState {
        server: "https://cp.example:8443".to_owned(),
        service: "web".parse().expect("valid"),
        node_id: "n-1".parse().expect("valid"),
        spiffe_id: "spiffe://ferry.local/service/web/node/n-1".to_owned(),
        last_contact: Some(datetime!(2026-01-01 00:10 UTC)),
        clock_skew_ms: 120_000,
        enrolled_at: None,
    };
    state.save_state(&saved).expect("save");

    // Local 00:59 is server 01:01: already expired on the clock that matters.
    let st = status_at(dir.path(), datetime!(2026-01-01 00:59 UTC), LIVE).expect("status");
    assert!(st.enrolled && !st.valid);
    assert_eq!(st.seconds_left, Some(-60));
    assert!(st.to_string().contains("EXPIRED"), "{st}");

    let st = status_at(dir.path(), datetime!(2026-01-01 00:18 UTC), LIVE).expect("status");
    assert!(st.valid);
    assert_eq!(st.seconds_left, Some(40 * 60));
    assert_eq!(st.server.as_deref(), Some("https://cp.example:8443"));
    let text = st.to_string();
    assert!(
        text.contains("40m 0s left") && text.contains("+120000 ms"),
        "{text}"
    );
    let json = serde_json::to_value(&st).expect("serializes");
    assert_eq!(
        json["spiffe_id"],
        "spiffe://ferry.local/service/web/node/n-1"
    );
    assert_eq!(json["not_after"], "2026-01-01T01:00:00Z");
}

#[test]
fn an_expired_installed_certificate_makes_the_node_unhealthy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = StateDir::new(dir.path().join("state"));
    state.create().expect("mkdir");
    let spiffe = "spiffe://ferry.local/service/web/node/n-1";
    let (identity, _) = crate::testkit::self_signed_identity(
        spiffe,
        datetime!(2026-01-01 00:00 UTC),
        datetime!(2026-01-02 00:00 UTC),
    );
    std::fs::write(state.file(CERT_FILE), identity).expect("write identity");
    let (delivered, key) = crate::testkit::self_signed_identity(
        spiffe,
        datetime!(2026-01-01 00:00 UTC),
        datetime!(2026-01-01 01:00 UTC),
    );
    let install = crate::install::InstallDir::new(dir.path().join("install"));
    let files = crate::bundle::BundleFiles {
        cert: delivered,
        key: crate::config::Secret::new(key),
        chain: String::new(),
        ca: String::new(),
        metadata_json: "{}".to_owned(),
        metadata: Vec::new(),
    };
    install.install("2", &files).expect("install");
    let record = DeliveryState {
        install_dir: Some(install.path().to_owned()),
        last_ack: Some(AckRecord {
            version: 2,
            status: ferry_shared::api::AckStatus::Installed,
            at: datetime!(2026-01-01 00:01 UTC),
        }),
        ..DeliveryState::default()
    };
    record.save(&state).expect("save");

    let st = status_at(state.path(), datetime!(2026-01-01 00:30 UTC), LIVE).expect("status");
    assert!(st.valid && st.healthy, "{st:?}");
    assert_eq!(st.installed_version, Some(2));
    assert_eq!(st.installed_seconds_left, Some(30 * 60));
    let text = st.to_string();
    assert!(
        text.contains("version 2, certificate valid until"),
        "{text}"
    );
    assert!(
        text.contains("last ack:      version 2 installed"),
        "{text}"
    );

    // Inside the service's alert_before window (10 minutes): unhealthy already.
    let mut windowed = DeliveryState::load(&state).expect("load");
    windowed.alert_before_seconds = Some(600);
    windowed.save(&state).expect("save");
    let st = status_at(state.path(), datetime!(2026-01-01 00:49 UTC), LIVE).expect("status");
    assert!(st.healthy, "11 minutes left, outside the window: {st:?}");
    let st = status_at(state.path(), datetime!(2026-01-01 00:51 UTC), LIVE).expect("status");
    assert!(
        !st.healthy,
        "9 minutes left, inside the alert_before window: exit 1"
    );

    let st = status_at(state.path(), datetime!(2026-01-01 02:00 UTC), LIVE).expect("status");
    assert!(st.valid, "the identity is still valid");
    assert!(!st.healthy, "but the installed certificate expired: exit 1");
    assert!(st.to_string().contains("certificate EXPIRED"), "{st}");
}

#[test]
fn durations_read_naturally() {
    assert_eq!(human(5), "5s");
    assert_eq!(human(65), "1m 5s");
    assert_eq!(human(3725), "1h 2m 5s");
}

/// A state dir with a valid identity and a delivery record that polls every 55 s and
/// last reached the control plane at 00:10.
fn polling_node(dir: &Path) -> StateDir {
    let state = StateDir::new(dir);
    let (identity, _) = crate::testkit::self_signed_identity(
        "spiffe://ferry.local/service/web/node/n-1",
        datetime!(2026-01-01 00:00 UTC),
        datetime!(2026-01-02 00:00 UTC),
    );
    std::fs::write(state.file(CERT_FILE), identity.clone()).expect("write identity");
    let (_, key) = crate::testkit::self_signed_identity(
        "spiffe://ferry.local/service/web/node/n-1",
        datetime!(2026-01-01 00:00 UTC),
        datetime!(2026-01-02 00:00 UTC),
    );
    let install = crate::install::InstallDir::new(dir.join("install"));
    let files = crate::bundle::BundleFiles {
        cert: identity,
        key: crate::config::Secret::new(key),
        chain: String::new(),
        ca: String::new(),
        metadata_json: "{}".to_owned(),
        metadata: Vec::new(),
    };
    install.install("1", &files).expect("install");
    DeliveryState {
        install_dir: Some(dir.join("install")),
        last_contact: Some(datetime!(2026-01-01 00:10 UTC)),
        poll_wait_seconds: Some(55),
        ..DeliveryState::default()
    }
    .save(&state)
    .expect("save");
    state
}

#[test]
fn each_way_of_being_broken_is_a_problem_with_its_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = polling_node(dir.path());
    let at = datetime!(2026-01-01 00:11 UTC);
    let st = status_at(state.path(), at, LIVE).expect("status");
    assert!(st.healthy && st.live, "{:?}", st.problems);
    assert!(st.to_string().ends_with("health:        ok"), "{st}");

    // Not running at all; running but wedged.
    let st = status_at(state.path(), at, Running::No).expect("status");
    assert!(!st.healthy && !st.live);
    assert!(st.problems[0].contains("not running"), "{:?}", st.problems);
    let wedged = Running::Yes {
        heartbeat_age: std::time::Duration::from_secs(300),
    };
    let st = status_at(state.path(), at, wedged).expect("status");
    assert!(st.running && !st.live && !st.healthy);
    assert!(st.problems[0].contains("wedged"), "{:?}", st.problems);

    // 195 s is three 55 s polls plus 30 s: 00:13:15 is still fine, 00:13:16 is not.
    let st = status_at(state.path(), datetime!(2026-01-01 00:13:15 UTC), LIVE).expect("status");
    assert!(st.healthy, "{:?}", st.problems);
    let st = status_at(state.path(), datetime!(2026-01-01 00:13:16 UTC), LIVE).expect("status");
    assert_eq!(st.problems.len(), 1, "{:?}", st.problems);
    assert!(
        st.problems[0].contains("last reached at 2026-01-01T00:10:00Z"),
        "{:?}",
        st.problems
    );
    assert!(st.live, "unreachable is not dead: a restart would not help");

    // The last bundle's reload hook failed.
    let mut record = DeliveryState::load(&state).expect("load");
    record.last_ack = Some(AckRecord {
        version: 3,
        status: ferry_shared::api::AckStatus::Failed,
        at,
    });
    record.last_error = Some("reload hook exited with status 3".to_owned());
    record.save(&state).expect("save");
    let st = status_at(state.path(), at, LIVE).expect("status");
    assert_eq!(
        st.problems,
        ["the last bundle (version 3) failed: reload hook exited with status 3"]
    );

    // Revoked: said first after the process checks, and contact no longer matters.
    state
        .mark_revoked("node is revoked or unknown")
        .expect("mark");
    let st = status_at(state.path(), datetime!(2026-01-01 05:00 UTC), LIVE).expect("status");
    assert!(st.revoked.is_some() && !st.healthy);
    assert!(
        st.problems[0].contains("revoked this node"),
        "{:?}",
        st.problems
    );
    assert!(
        !st.problems.iter().any(|p| p.contains("last reached")),
        "{:?}",
        st.problems
    );
    let json = serde_json::to_value(&st).expect("serializes");
    assert_eq!(json["revoked"]["reason"], "node is revoked or unknown");
    assert_eq!(json["healthy"], false);
}
