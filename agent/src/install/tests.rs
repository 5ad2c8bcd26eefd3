//! The install dir: files and modes, the content hash over the files, crash leftovers,
//! readers during installs, SIGKILL at random moments, pruning, targets.

use super::*;
use crate::config::{Owner, Secret};
use ferry_shared::hash::bundle_content_hash;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

fn files(n: i64) -> BundleFiles {
    BundleFiles {
        cert: format!("-----BEGIN CERTIFICATE-----\ncert {n}\n-----END CERTIFICATE-----\n"),
        key: Secret::new(format!(
            "-----BEGIN PRIVATE KEY-----\nkey {n}\n-----END PRIVATE KEY-----\n"
        )),
        chain: String::new(),
        ca: "-----BEGIN CERTIFICATE-----\nca\n-----END CERTIFICATE-----\n".to_owned(),
        metadata_json: format!(r#"{{"n":{n}}}"#),
        metadata: vec![("n".to_owned(), n.to_string().into_bytes())],
    }
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).expect("read")
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The hash of a version directory's files, as `bundle_content_hash` computes it.
fn hash_of_dir(dir: &Path, with_key: bool) -> String {
    let key = read(&dir.join("key.pem"));
    bundle_content_hash(
        &read(&dir.join("cert.pem")),
        &read(&dir.join("chain.pem")),
        with_key.then_some(key.as_str()),
        &read(&dir.join("ca.pem")),
        &read(&dir.join("metadata.json")),
    )
}

#[test]
fn an_install_writes_every_file_and_switches_current() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = InstallDir::new(tmp.path().join("install"));
    assert_eq!(installed(dir.path()), None);
    let f = files(1);

    let path = dir.install("1", &f).expect("install");

    assert_eq!(path, dir.path().join("versions/1"));
    assert_eq!(installed(dir.path()), Some((1, path.clone())));
    assert_eq!(
        fs::read_link(dir.path().join(CURRENT)).expect("symlink"),
        Path::new("versions/1"),
        "relative, so the install dir can move"
    );
    assert_eq!(
        entries(&path),
        [
            "bundle.pem",
            "ca.pem",
            "cert.pem",
            "chain.pem",
            "key.pem",
            "metadata",
            "metadata.json"
        ]
    );
    assert_eq!(read(&path.join("cert.pem")), f.cert);
    assert_eq!(read(&path.join("key.pem")), f.key.expose());
    assert_eq!(
        read(&path.join("bundle.pem")),
        format!("{}{}", f.key.expose(), f.cert)
    );
    assert_eq!(read(&path.join("metadata/n")), "1");
    for (file, want) in [
        ("key.pem", 0o600),
        ("bundle.pem", 0o600),
        ("cert.pem", 0o644),
        ("ca.pem", 0o644),
    ] {
        assert_eq!(mode(&path.join(file)), want, "{file}");
    }
    assert_eq!(
        entries(dir.path()),
        [CURRENT, VERSIONS],
        "no temp entries left"
    );
}

#[test]
fn the_files_hash_back_to_the_content_hash() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = InstallDir::new(tmp.path());
    let f = files(7);
    let path = dir.install("7", &f).expect("install");
    // Central mode: the key is part of the hash.
    let central = bundle_content_hash(
        &f.cert,
        &f.chain,
        Some(f.key.expose()),
        &f.ca,
        &f.metadata_json,
    );
    assert_eq!(hash_of_dir(&path, true), central);
    // Node-key mode: the server hashes without the key, which never left the node.
    let node_key = bundle_content_hash(&f.cert, &f.chain, None, &f.ca, &f.metadata_json);
    assert_eq!(hash_of_dir(&path, false), node_key);
}

#[test]
fn startup_removes_what_a_crash_left_and_keeps_current() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = InstallDir::new(tmp.path());
    let good = dir.install("3", &files(3)).expect("install");
    // A crash while writing version 4: half a directory, and a symlink about to be switched.
    let half = dir.path().join("versions/4.tmp-4242");
    fs::create_dir(&half).expect("mkdir");
    fs::write(half.join("cert.pem"), "-----BEGIN CERT").expect("half-written");
    std::os::unix::fs::symlink("versions/4.tmp-4242", dir.path().join("current.tmp-4242"))
        .expect("symlink");
    // A crash after the directory was renamed but before `current` switched.
    fs::create_dir(dir.path().join("versions/4")).expect("mkdir");

    dir.prepare().expect("cleanup");

    assert_eq!(entries(dir.path()), [CURRENT, VERSIONS]);
    assert_eq!(entries(&dir.path().join(VERSIONS)), ["3", "4"]);
    assert_eq!(installed(dir.path()), Some((3, good.clone())));
    assert_eq!(hash_of_dir(&good, true), {
        let f = files(3);
        bundle_content_hash(
            &f.cert,
            &f.chain,
            Some(f.key.expose()),
            &f.ca,
            &f.metadata_json,
        )
    });
    // The next install of 4 replaces the stray directory.
    dir.install("4", &files(4))
        .expect("install over the stray dir");
    assert_eq!(read(&dir.path().join("current/cert.pem")), files(4).cert);
}

#[test]
fn a_reader_never_sees_a_partial_version() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = InstallDir::new(tmp.path());
    dir.install("1", &files(1)).expect("first");
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (root, done) = (dir.path().to_owned(), done.clone());
        std::thread::spawn(move || {
            let mut checks = 0;
            while !done.load(Ordering::SeqCst) {
                // Resolve `current` once, then read through the resolved directory.
                let Ok(link) = fs::read_link(root.join(CURRENT)) else {
                    panic!("current vanished");
                };
                let v = root.join(link);
                let Ok(cert) = fs::read_to_string(v.join("cert.pem")) else {
                    continue; // pruned between resolving and reading: an old version
                };
                let n = parse_version_dir(&v.file_name().expect("name").to_string_lossy())
                    .expect("version dir");
                assert_eq!(cert, files(n).cert);
                if let Ok(meta) = fs::read_to_string(v.join("metadata.json")) {
                    assert_eq!(meta, files(n).metadata_json);
                }
                checks += 1;
            }
            checks
        })
    };
    for n in 2..=40 {
        dir.install(&n.to_string(), &files(n)).expect("install");
    }
    done.store(true, Ordering::SeqCst);
    assert!(reader.join().expect("reader saw only complete versions") > 0);
    assert_eq!(installed(dir.path()).map(|(v, _)| v), Some(40));
}

#[test]
fn only_the_newest_versions_are_kept() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = InstallDir::new(tmp.path());
    for n in 1..=5 {
        dir.install(&dir.next_dir_name(n), &files(n))
            .expect("install");
    }
    assert_eq!(entries(&dir.path().join(VERSIONS)), ["3", "4", "5"]);

    // After a re-enrollment the numbering restarts: versions of the old epoch go.
    dir.install(&dir.next_dir_name(1), &files(1))
        .expect("new epoch");
    assert_eq!(entries(&dir.path().join(VERSIONS)), ["1"]);

    // The same number as `current`, with other content, gets a directory of its own.
    assert_eq!(dir.next_dir_name(1), "1-1");
    let path = dir.install("1-1", &files(2)).expect("same number");
    assert_eq!(installed(dir.path()), Some((1, path)));
    assert_eq!(read(&dir.path().join("current/cert.pem")), files(2).cert);
    assert_eq!(dir.next_dir_name(1), "1");
    assert!(
        dir.install("1.tmp-3", &files(3)).is_err(),
        "not a version name"
    );
}

#[test]
fn version_dir_names_parse_strictly() {
    assert_eq!(parse_version_dir("12"), Some(12));
    assert_eq!(parse_version_dir("12-1"), Some(12));
    for bad in ["", "0", "-1", "12.tmp-99", "x", "12-", "12-x", "current"] {
        assert_eq!(parse_version_dir(bad), None, "{bad:?}");
    }
}

#[test]
fn targets_are_replaced_atomically_with_their_mode_and_owner() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = InstallDir::new(tmp.path().join("install"));
    let out = tmp.path().join("app");
    fs::create_dir(&out).expect("mkdir");
    let me = fs::metadata(&out).expect("metadata");
    let targets = vec![
        Target {
            file: TargetFile::Key,
            path: out.join("tls.key"),
            mode: 0o640,
            owner: Some(Owner {
                uid: me.uid(),
                gid: me.gid(),
            }),
        },
        Target {
            file: TargetFile::Bundle,
            path: out.join("all.pem"),
            mode: 0o600,
            owner: None,
        },
        Target {
            file: TargetFile::Metadata,
            path: out.join("meta.json"),
            mode: 0o664,
            owner: None,
        },
    ];
    // A temp file left by an interrupted write, and an unrelated file.
    fs::write(out.join(".tls.key.ferry-tmp-999"), "partial").expect("leftover");
    fs::write(out.join("keep.txt"), "mine").expect("unrelated");
    clean_target_temps(&targets).expect("clean");

    for n in [1, 2] {
        let v = dir.install(&n.to_string(), &files(n)).expect("install");
        write_targets(&v, &targets).expect("targets");
        assert_eq!(read(&out.join("tls.key")), files(n).key.expose());
        assert_eq!(read(&out.join("meta.json")), files(n).metadata_json);
    }
    assert_eq!(mode(&out.join("tls.key")), 0o640);
    assert_eq!(mode(&out.join("all.pem")), 0o600);
    assert_eq!(
        mode(&out.join("meta.json")),
        0o664,
        "exact mode despite the umask"
    );
    assert_eq!(
        entries(&out),
        ["all.pem", "keep.txt", "meta.json", "tls.key"]
    );
}

/// Set only for the child processes of `sigkill_at_random_moments_leaves_a_complete_current`.
const CRASH_DIR_ENV: &str = "FERRY_TEST_CRASH_DIR";

/// Installs version after version: without end into `$FERRY_TEST_CRASH_DIR` in the child
/// process that the SIGKILL test kills, else five versions into a tempdir.
#[test]
fn install_loop() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (root, count) = match std::env::var_os(CRASH_DIR_ENV) {
        Some(dir) => (PathBuf::from(dir), i64::MAX / 2),
        None => (tmp.path().to_owned(), 5),
    };
    let dir = InstallDir::new(root);
    dir.prepare().expect("prepare");
    let first = installed(dir.path()).map_or(1, |(v, _)| v + 1);
    for n in first..first + count {
        dir.install(&n.to_string(), &files(n)).expect("install");
        assert_eq!(installed(dir.path()).map(|(v, _)| v), Some(n));
    }
}

#[test]
fn sigkill_at_random_moments_leaves_a_complete_current() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("test binary");
    let mut seen = Vec::new();
    for round in 0..20u64 {
        let mut child = std::process::Command::new(&exe)
            .args([
                "--exact",
                "install::tests::install_loop",
                "--test-threads=1",
            ])
            .env(CRASH_DIR_ENV, tmp.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn the installing child");
        // Kill points spread over the child's life (a prime step to vary the phase).
        std::thread::sleep(std::time::Duration::from_millis(40 + round * 37 % 90));
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");

        let dir = InstallDir::new(tmp.path());
        dir.prepare().expect("startup cleanup");
        let Some((n, path)) = installed(dir.path()) else {
            continue; // killed before the first install finished
        };
        let f = files(n);
        assert_eq!(read(&path.join("cert.pem")), f.cert, "round {round}");
        assert_eq!(read(&path.join("key.pem")), f.key.expose(), "round {round}");
        assert_eq!(
            read(&path.join("bundle.pem")),
            f.bundle_pem().expose(),
            "round {round}"
        );
        assert_eq!(
            read(&path.join("metadata.json")),
            f.metadata_json,
            "round {round}"
        );
        assert_eq!(read(&path.join("ca.pem")), f.ca, "round {round}");
        assert!(path.join("chain.pem").is_file(), "round {round}");
        let leftovers: Vec<String> = entries(dir.path())
            .into_iter()
            .chain(entries(&dir.path().join(VERSIONS)))
            .filter(|e| e.contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "round {round}: {leftovers:?}");
        seen.push(n);
    }
    assert!(
        seen.len() >= 10,
        "too few rounds got to install anything: {seen:?}"
    );
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "versions went down: {seen:?}"
    );
}
