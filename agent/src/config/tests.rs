use super::*;

const PIN: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn minimal() -> RawConfig {
    RawConfig {
        server: Some("https://cp.example:8443".to_owned()),
        service: Some("web".to_owned()),
        node_id: Some("n-1".to_owned()),
        ca_fingerprint: Some(PIN.to_owned()),
        ..RawConfig::default()
    }
}

fn parse(text: &str) -> Result<RawConfig, ConfigError> {
    RawConfig::from_toml(text, Path::new("agent.toml"))
}

#[test]
fn every_documented_key_is_accepted() {
    let text = format!(
        r#"
server = "https://cp.example:8443/"
service = "web"
node_id = "ip-10-0-0-1.eu-west-1"
join_token_file = "/run/ferry/token"
ca_fingerprint = "{PIN}"
state_dir = "/var/lib/x"
install_dir = "/etc/ssl/ferry"
reload_command = "systemctl reload nginx"
key_type = "rsa-2048"
"#
    );
    let cfg = parse(&text).expect("parses").validate().expect("valid");
    assert_eq!(cfg.server.as_str(), "https://cp.example:8443/");
    assert_eq!(cfg.node_id.as_str(), "ip-10-0-0-1.eu-west-1");
    assert_eq!(
        cfg.join_token,
        Some(JoinTokenSource::File("/run/ferry/token".into()))
    );
    assert_eq!(cfg.install_dir, Some(PathBuf::from("/etc/ssl/ferry")));
    assert_eq!(
        cfg.reload_command.as_deref(),
        Some("systemctl reload nginx")
    );
    assert_eq!(cfg.key_type, KeyType::Rsa2048);
}

#[test]
fn unknown_keys_are_refused_with_their_line() {
    let err = parse("server = \"https://a\"\nnode = \"n-1\"\n").expect_err("typo refused");
    let msg = err.to_string();
    assert!(
        msg.starts_with("invalid config file agent.toml: line 2: unknown field `node`"),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "one line: {msg:?}");
}

#[test]
fn defaults_apply_to_unset_settings() {
    let cfg = minimal().validate().expect("valid");
    assert_eq!(cfg.key_type, KeyType::EcdsaP256);
    assert_eq!(cfg.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
    assert_eq!(cfg.join_token, None);
    assert_eq!((cfg.install_dir, cfg.reload_command), (None, None));
    assert_eq!(cfg.retry, RetryPolicy::default());
}

#[test]
fn fingerprints_must_be_sha256_hex_and_are_normalized() {
    let upper = format!("sha256:{}", PIN[7..].to_uppercase());
    let cfg = RawConfig {
        ca_fingerprint: Some(upper),
        ..minimal()
    }
    .validate()
    .expect("valid");
    assert_eq!(cfg.ca, Some(CaPin::Fingerprint(PIN.to_owned())));
    for bad in [
        "0123abcd",
        "sha1:0123",
        &PIN[..PIN.len() - 1],
        &format!("{PIN}00"),
    ] {
        let err = RawConfig {
            ca_fingerprint: Some(bad.to_owned()),
            ..minimal()
        }
        .validate()
        .expect_err("bad pin refused");
        assert!(
            err.to_string().starts_with("invalid ca_fingerprint:"),
            "{err}"
        );
    }
}

#[test]
fn the_server_must_be_https() {
    for bad in [
        "http://cp.example",
        "cp.example:8443",
        "https://cp.example/?x=1",
    ] {
        let err = RawConfig {
            server: Some(bad.to_owned()),
            ..minimal()
        }
        .validate()
        .expect_err(bad);
        assert!(err.to_string().starts_with("invalid server:"), "{err}");
    }
}

#[test]
fn names_are_validated_with_the_shared_rules() {
    let err = RawConfig {
        service: Some("Web!".to_owned()),
        ..minimal()
    }
    .validate()
    .expect_err("bad");
    assert!(err.to_string().starts_with("invalid service:"), "{err}");
    let err = RawConfig {
        node_id: Some("../etc".to_owned()),
        ..minimal()
    }
    .validate()
    .expect_err("bad");
    assert!(err.to_string().starts_with("invalid node_id:"), "{err}");
    let err = RawConfig {
        key_type: Some("dsa".to_owned()),
        ..minimal()
    }
    .validate()
    .expect_err("bad");
    assert!(err.to_string().starts_with("invalid key_type:"), "{err}");
    let err = RawConfig {
        node_id: None,
        ..minimal()
    }
    .validate()
    .expect_err("missing");
    assert_eq!(
        err.to_string(),
        "missing setting `node_id` (--node-id or `node_id` in the config file)"
    );
}

#[test]
fn exactly_one_ca_source_unless_the_state_dir_has_one() {
    let both = RawConfig {
        ca_file: Some("/ca.pem".into()),
        ..minimal()
    };
    assert!(matches!(
        both.validate(),
        Err(ConfigError::Conflict("ca_fingerprint", "ca_file"))
    ));

    let dir = tempfile::tempdir().expect("tempdir");
    let none = RawConfig {
        ca_fingerprint: None,
        state_dir: Some(dir.path().into()),
        ..minimal()
    };
    assert!(matches!(none.clone().validate(), Err(ConfigError::NoCa(_))));

    std::fs::write(dir.path().join("ca.pem"), "pem").expect("write");
    assert_eq!(none.validate().expect("state dir has ca.pem").ca, None);
}

#[test]
fn both_join_token_sources_in_one_layer_conflict_but_a_flag_replaces_the_file() {
    let both = RawConfig {
        join_token: Some(Secret::new("t")),
        join_token_file: Some("/t".into()),
        ..minimal()
    };
    assert!(matches!(
        both.validate(),
        Err(ConfigError::Conflict("join_token", "join_token_file"))
    ));

    let file = RawConfig {
        join_token_file: Some("/t".into()),
        ..minimal()
    };
    let flags = RawConfig {
        join_token: Some(Secret::new("from-env")),
        ..RawConfig::default()
    };
    let cfg = file.overlay(flags).validate().expect("valid");
    assert_eq!(
        cfg.join_token,
        Some(JoinTokenSource::Inline(Secret::new("from-env")))
    );
    assert_eq!(
        cfg.ca,
        Some(CaPin::Fingerprint(PIN.to_owned())),
        "unset flags keep file values"
    );
}

#[test]
fn the_join_token_never_shows_in_debug_output() {
    let raw = RawConfig {
        join_token: Some(Secret::new("s3cr3t-token")),
        ..minimal()
    };
    assert!(!format!("{raw:?}").contains("s3cr3t"));
    let cfg = raw.validate().expect("valid");
    let debug = format!("{cfg:?}");
    assert!(
        !debug.contains("s3cr3t") && debug.contains("[redacted]"),
        "{debug}"
    );
}

#[test]
fn join_token_files_are_read_when_needed_and_trimmed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("token");
    let source = JoinTokenSource::File(path.clone());
    assert!(matches!(source.read(), Err(ConfigError::Read { .. })));
    std::fs::write(&path, "  abc123\n").expect("write");
    assert_eq!(source.read().expect("token").expose(), "abc123");
    std::fs::write(&path, "\n").expect("write");
    assert!(
        source
            .read()
            .expect_err("empty")
            .to_string()
            .contains("is empty")
    );
}

#[test]
fn delivery_settings_parse_from_the_file() {
    let text = format!(
        r#"
server = "https://cp.example:8443"
service = "web"
node_id = "n-1"
ca_fingerprint = "{PIN}"
install_dir = "/etc/ssl/ferry"
reload_command = "systemctl reload nginx"
reload_timeout_seconds = 5
poll_wait_seconds = 20

[[target]]
file = "key"
path = "/etc/nginx/tls/key.pem"
mode = "0640"
owner = "0:33"

[[target]]
file = "bundle"
path = "/etc/haproxy/node.pem"
"#
    );
    let cfg = parse(&text).expect("parses").validate().expect("valid");
    assert_eq!(cfg.reload_timeout, Duration::from_secs(5));
    assert_eq!(cfg.poll_wait, Duration::from_secs(20));
    assert_eq!(cfg.targets.len(), 2);
    assert_eq!(cfg.targets[0].file, TargetFile::Key);
    assert_eq!(cfg.targets[0].mode, 0o640);
    assert_eq!(cfg.targets[0].owner, Some(Owner { uid: 0, gid: 33 }));
    assert_eq!(cfg.targets[1].mode, 0o600);

    let defaults = minimal().validate().expect("valid");
    assert_eq!(defaults.reload_timeout, DEFAULT_RELOAD_TIMEOUT);
    assert_eq!(defaults.poll_wait, Duration::from_secs(55));
    assert!(defaults.targets.is_empty());
}

#[test]
fn bad_delivery_settings_are_refused_in_one_line() {
    let unknown_file =
        parse("[[target]]\nfile = \"password\"\npath = \"/x\"\n").expect_err("unknown file kind");
    assert!(
        unknown_file.to_string().contains("line 2")
            && unknown_file.to_string().contains("password"),
        "{unknown_file}"
    );
    let no_install_dir = RawConfig {
        target: vec![RawTarget {
            file: TargetFile::Cert,
            path: "/etc/app/cert.pem".into(),
            mode: None,
            owner: None,
        }],
        ..minimal()
    };
    let err = no_install_dir
        .validate()
        .expect_err("targets need an install dir");
    assert!(err.to_string().contains("install_dir"), "{err}");
    let zero = RawConfig {
        reload_timeout_seconds: Some(0),
        ..minimal()
    };
    assert!(zero.validate().is_err());
    for wait in [0, 56] {
        let err = RawConfig {
            poll_wait_seconds: Some(wait),
            ..minimal()
        }
        .validate()
        .expect_err("poll wait out of range");
        assert!(err.to_string().contains("poll_wait_seconds"), "{err}");
    }
}
