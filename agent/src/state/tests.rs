use super::*;
use crate::testkit::TestCa;
use ferry_shared::KeyType;
use std::os::unix::fs::PermissionsExt;
use time::Duration;

const SPIFFE: &str = "spiffe://ferry.local/service/web/node/n-1";

/// A key and a certificate for it, signed by `ca`.
fn issued(ca: &TestCa) -> (Secret, String) {
    let key = NodeKey::generate(KeyType::EcdsaP256).expect("key");
    let node = NodeId::parse("n-1").expect("valid");
    let cert = ca.sign_csr(
        &key.csr_pem(&node).expect("csr"),
        SPIFFE,
        Duration::hours(1),
    );
    (key.to_pem(), cert)
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn saved_identity_loads_back_with_a_private_key_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = StateDir::new(dir.path().join("state"));
    assert!(state.load_identity().expect("empty dir is fine").is_none());
    let ca = TestCa::new("test ca");
    let (key_pem, cert_pem) = issued(&ca);

    state
        .save_identity(&key_pem, &cert_pem, &ca.cert_pem)
        .expect("save");

    assert_eq!(mode(&state.file(KEY_FILE)), 0o600);
    assert_eq!(
        fs::read_to_string(state.file(KEY_FILE)).expect("key"),
        key_pem.expose()
    );
    assert_eq!(
        fs::read_to_string(state.file(CA_FILE)).expect("ca"),
        ca.cert_pem
    );
    assert_eq!(
        names(state.path()),
        [CA_FILE, KEY_FILE, CERT_FILE],
        "no temp files left"
    );
    let loaded = state.load_identity().expect("load").expect("enrolled");
    assert_eq!(loaded.key_pem, key_pem);
    assert_eq!(loaded.cert_pem, cert_pem);
    assert_eq!(loaded.cert.spiffe_uri.as_deref(), Some(SPIFFE));
    assert!(state.has_ca());
}

#[test]
fn a_key_file_is_private_even_while_it_is_being_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_atomic(dir.path(), "secret", b"one", 0o600).expect("write");
    write_atomic(dir.path(), "secret", b"two", 0o600).expect("overwrite");
    assert_eq!(fs::read(dir.path().join("secret")).expect("read"), b"two");
    assert_eq!(mode(&dir.path().join("secret")), 0o600);
    assert_eq!(names(dir.path()), ["secret"]);
}

#[test]
fn an_interrupted_key_switch_is_finished_when_the_certificate_landed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = StateDir::new(dir.path());
    let ca = TestCa::new("test ca");
    let (old_key, old_cert) = issued(&ca);
    state
        .save_identity(&old_key, &old_cert, &ca.cert_pem)
        .expect("save");

    // Crash after the new certificate was written, before the key rename.
    let (new_key, new_cert) = issued(&ca);
    write_atomic(
        dir.path(),
        NEXT_KEY_FILE,
        new_key.expose().as_bytes(),
        0o600,
    )
    .expect("stage");
    write_atomic(dir.path(), CERT_FILE, new_cert.as_bytes(), 0o644).expect("cert");

    let loaded = state.load_identity().expect("load").expect("enrolled");
    assert_eq!(loaded.key_pem, new_key);
    assert!(!state.file(NEXT_KEY_FILE).exists());
    assert_eq!(mode(&state.file(KEY_FILE)), 0o600);
}

#[test]
fn an_interrupted_key_switch_is_discarded_when_the_certificate_did_not_land() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = StateDir::new(dir.path());
    let ca = TestCa::new("test ca");
    let (old_key, old_cert) = issued(&ca);
    state
        .save_identity(&old_key, &old_cert, &ca.cert_pem)
        .expect("save");

    // Crash after staging the new key, before its certificate was written.
    let (new_key, _) = issued(&ca);
    write_atomic(
        dir.path(),
        NEXT_KEY_FILE,
        new_key.expose().as_bytes(),
        0o600,
    )
    .expect("stage");

    let loaded = state.load_identity().expect("load").expect("enrolled");
    assert_eq!(loaded.key_pem, old_key);
    assert!(!state.file(NEXT_KEY_FILE).exists());
}

#[test]
fn a_key_that_does_not_match_its_certificate_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = StateDir::new(dir.path());
    let ca = TestCa::new("test ca");
    let (key, _) = issued(&ca);
    let (_, cert) = issued(&ca);
    write_atomic(dir.path(), KEY_FILE, key.expose().as_bytes(), 0o600).expect("key");
    write_atomic(dir.path(), CERT_FILE, cert.as_bytes(), 0o644).expect("cert");
    let err = state.load_identity().expect_err("mismatch");
    assert!(matches!(err, StateError::KeyMismatch { .. }), "{err}");
}

#[test]
fn agent_state_round_trips_as_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = StateDir::new(dir.path());
    assert_eq!(state.load_state().expect("absent is fine"), None);
    let saved = AgentState {
        server: "https://cp.example".to_owned(),
        service: ServiceName::parse("web").expect("valid"),
        node_id: NodeId::parse("n-1").expect("valid"),
        spiffe_id: SPIFFE.to_owned(),
        last_contact: Some(time::macros::datetime!(2026-01-01 00:00:00 UTC)),
        clock_skew_ms: -1500,
        enrolled_at: Some(time::macros::datetime!(2025-12-31 23:00:00 UTC)),
    };
    state.save_state(&saved).expect("save");
    assert_eq!(state.load_state().expect("load"), Some(saved));
    let json: serde_json::Value =
        serde_json::from_slice(&fs::read(state.file(STATE_FILE)).expect("read")).expect("json");
    assert_eq!(json["last_contact"], "2026-01-01T00:00:00Z");
    assert_eq!(json["clock_skew_ms"], -1500);

    fs::write(state.file(STATE_FILE), "{").expect("corrupt");
    assert!(matches!(
        state.load_state(),
        Err(StateError::BadState { .. })
    ));
}

#[test]
fn a_key_readable_by_others_is_restricted_at_start_and_new_files_are_private() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = StateDir::new(dir.path().join("state"));
    state.create().expect("create");
    assert_eq!(mode(state.path()), DIR_MODE);
    let ca = TestCa::new("test ca");
    let (key_pem, cert_pem) = issued(&ca);
    state
        .save_identity(&key_pem, &cert_pem, &ca.cert_pem)
        .expect("save");
    for name in [KEY_FILE, CERT_FILE, CA_FILE] {
        assert_eq!(mode(&state.file(name)), FILE_MODE, "{name}");
    }

    // Someone copied the state dir with cp -r under umask 022, or chmod'ed it.
    fs::set_permissions(state.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::set_permissions(state.file(KEY_FILE), fs::Permissions::from_mode(0o644)).expect("chmod");
    state.create().expect("a start repairs, it does not refuse");
    assert_eq!(mode(state.path()), DIR_MODE);
    assert_eq!(mode(&state.file(KEY_FILE)), FILE_MODE);
    assert!(state.load_identity().expect("loads").is_some());
}
