//! A PostgreSQL cluster of a test's own (initdb into a tempdir, a free loopback port),
//! for scenarios that stop or restart the database server itself, which the shared
//! cluster of the test command must never see. Run as the unprivileged `postgres`
//! user when the tests run as root (PostgreSQL refuses root), as scripts/pg.sh does.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct PgCluster {
    dir: tempfile::TempDir,
    pub port: u16,
    as_postgres: bool,
}

impl PgCluster {
    /// Initializes and starts a cluster; panics with one line if PostgreSQL is missing.
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ferry-pg-own.")
            .tempdir()
            .expect("tempdir");
        let as_postgres = is_root();
        if as_postgres {
            chown_postgres(dir.path());
        }
        let port = free_port();
        let cluster = Self {
            dir,
            port,
            as_postgres,
        };
        cluster.run(
            "initdb",
            &[
                "-D",
                &cluster.data().to_string_lossy(),
                "--auth=trust",
                "--username=postgres",
                "-E",
                "UTF8",
            ],
        );
        cluster.pg_ctl(&["start"]);
        cluster
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server abruptly (as a crash or an OOM kill would) and starts it again
    /// on the same port: every open connection is cut, no transaction is lost.
    pub fn restart_immediate(&self) {
        self.pg_ctl(&["stop", "-m", "immediate"]);
        self.pg_ctl(&["start"]);
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn pg_ctl(&self, action: &[&str]) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let data = self.data().to_string_lossy().into_owned();
        let log = self.dir.path().join("log").to_string_lossy().into_owned();
        let mut args = vec!["-D", &data, "-l", &log, "-w"];
        args.extend_from_slice(action);
        if action[0] == "start" {
            args.extend_from_slice(&["-o", &opts]);
        }
        self.run("pg_ctl", &args);
    }

    fn run(&self, program: &str, args: &[&str]) {
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", program]);
            c
        } else {
            Command::new(program)
        };
        let out = cmd
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e} (PostgreSQL server binaries on PATH?)"));
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.data().to_string_lossy().into_owned();
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", "pg_ctl"]);
            c
        } else {
            Command::new("pg_ctl")
        };
        let _ = cmd.args(["-D", &data, "-m", "immediate", "stop"]).output();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

fn chown_postgres(dir: &Path) {
    let ok = Command::new("chown")
        .arg("postgres")
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "chown postgres {}: is there a postgres user?",
        dir.display()
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}
