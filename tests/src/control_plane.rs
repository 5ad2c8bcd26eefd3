//! `spawn_control_plane`: a real control plane in-process on port 0 with its own data
//! directory and database, plus a small typed API client for the tests.

use crate::db::{Backend, TestDb};
use ferry_control_plane::config::Config;
use ferry_control_plane::startup::App;
use serde_json::Value;
use std::net::SocketAddr;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct ControlPlane {
    pub addr: SocketAddr,
    /// `https://localhost:<port>` (the server certificate names localhost and 127.0.0.1).
    pub url: String,
    pub cfg: Config,
    pub db: std::sync::Arc<TestDb>,
    pub admin_token: String,
    /// The control-plane CA: what clients verify the control plane with.
    pub ca_pem: String,
    /// Its fingerprint, the pin agents and ferryctl are given.
    pub ca_fingerprint: String,
    /// The root: the trust anchors delivered to nodes (verifies node certificates).
    pub trust_pem: String,
    pub data_dir: std::sync::Arc<tempfile::TempDir>,
    /// Counters of the running instance (replaced on restart).
    pub stats: std::sync::Arc<ferry_control_plane::http::Stats>,
    /// The running instance's store (replaced on restart).
    pub store: ferry_control_plane::store::Store,
    running: Option<(watch::Sender<bool>, JoinHandle<()>)>,
}

/// Starts a control plane on `backend`; `tweak` adjusts the config before it starts.
pub async fn spawn_control_plane(
    backend: Backend,
    tweak: impl FnOnce(&mut Config),
) -> ControlPlane {
    let data_dir = tempfile::tempdir().expect("tempdir");
    let db = TestDb::new(backend, data_dir.path());
    spawn_on(db, data_dir, tweak).await
}

/// Starts a control plane on a new database of `cluster` (a PostgreSQL server of the
/// test's own, which the test may restart).
pub async fn spawn_control_plane_on(
    cluster: &crate::pg_cluster::PgCluster,
    tweak: impl FnOnce(&mut Config),
) -> ControlPlane {
    let data_dir = tempfile::tempdir().expect("tempdir");
    let db = TestDb::on_server(cluster.admin_url());
    spawn_on(db, data_dir, tweak).await
}

async fn spawn_on(
    db: TestDb,
    data_dir: tempfile::TempDir,
    tweak: impl FnOnce(&mut Config),
) -> ControlPlane {
    crate::init();
    let mut cfg = Config::new(data_dir.path());
    cfg.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    cfg.database_url = db.url.clone().map(ferry_control_plane::config::Secret::new);
    cfg.db_pool_size = 8;
    // Test receivers (sources, webhooks, moto) listen on loopback; tests of the
    // outbound policy turn this off again.
    cfg.outbound.allow_loopback = true;
    tweak(&mut cfg);
    let app = App::build(cfg.clone()).await.expect("control plane starts");
    let admin_token = app
        .new_admin_token
        .clone()
        .expect("first start creates the admin token");
    let (addr, ca_pem, ca_fingerprint, trust_pem) = (
        app.local_addr(),
        app.control_plane_ca_pem(),
        app.ca_fingerprint(),
        app.trust_bundle_pem(),
    );
    let mut cp = ControlPlane {
        addr,
        url: format!("https://localhost:{}", addr.port()),
        cfg,
        db: std::sync::Arc::new(db),
        admin_token,
        ca_pem,
        ca_fingerprint,
        trust_pem,
        data_dir: std::sync::Arc::new(data_dir),
        stats: app.stats(),
        store: app.store(),
        running: None,
    };
    cp.cfg.listen = addr; // restarts come back on the same port
    cp.running = Some(run(app));
    cp
}

fn run(app: App) -> (watch::Sender<bool>, JoinHandle<()>) {
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        app.serve(rx).await.expect("control plane serves");
    });
    (tx, task)
}

impl ControlPlane {
    /// Stops accepting and drops every open connection.
    pub async fn stop(&mut self) {
        if let Some((tx, task)) = self.running.take() {
            let _ = tx.send(true);
            let _ = task.await;
        }
    }

    /// Starts again on the same port, data directory and database.
    pub async fn restart(&mut self) {
        self.stop().await;
        let app = App::build(self.cfg.clone())
            .await
            .expect("control plane restarts");
        assert!(
            app.new_admin_token.is_none(),
            "a restart must not create a second admin token"
        );
        self.stats = app.stats();
        self.store = app.store();
        self.running = Some(run(app));
    }

    /// Another replica on the same database and master key, on its own port.
    pub async fn replica(&self) -> ControlPlane {
        let mut cfg = self.cfg.clone();
        cfg.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        let app = App::build(cfg.clone()).await.expect("replica starts");
        assert!(
            app.new_admin_token.is_none(),
            "replicas reuse the first start's admin token"
        );
        assert_eq!(
            app.ca_fingerprint(),
            self.ca_fingerprint,
            "replicas share one CA"
        );
        let addr = app.local_addr();
        cfg.listen = addr;
        ControlPlane {
            addr,
            url: format!("https://localhost:{}", addr.port()),
            cfg,
            db: self.db.clone(),
            admin_token: self.admin_token.clone(),
            ca_pem: self.ca_pem.clone(),
            ca_fingerprint: self.ca_fingerprint.clone(),
            trust_pem: self.trust_pem.clone(),
            data_dir: self.data_dir.clone(),
            stats: app.stats(),
            store: app.store(),
            running: Some(run(app)),
        }
    }

    /// An API client with the admin token.
    pub fn admin(&self) -> Api {
        self.api(Some(&self.admin_token))
    }

    /// One unlabelled sample of `/metrics` (panics when it is not exported).
    pub async fn metric(&self, name: &str) -> f64 {
        let text = self
            .admin()
            .client
            .get(format!("{}/metrics", self.url))
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("{name} exported"))
            .parse()
            .expect("a number")
    }

    pub fn api(&self, token: Option<&str>) -> Api {
        let ca = reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).expect("CA PEM");
        let client = reqwest::Client::builder()
            .tls_certs_only([ca])
            .build()
            .expect("client");
        Api {
            client,
            base: self.url.clone(),
            token: token.map(str::to_owned),
        }
    }

    /// Creates tenant `name` and returns an API client with a new (admin-role) token of it.
    pub async fn tenant(&self, name: &str) -> Api {
        let created = self
            .admin()
            .post("/v1/tenants", serde_json::json!({ "name": name }))
            .await;
        assert_eq!(
            created.status, 201,
            "create tenant {name}: {}",
            created.body
        );
        let t = self
            .admin()
            .post(&format!("/v1/tenants/{name}/tokens"), serde_json::json!({}))
            .await;
        assert_eq!(t.status, 201, "tenant token of {name}: {}", t.body);
        self.api(Some(t.body["token"].as_str().expect("tenant token")))
    }

    /// Creates a service (as admin, default tenant) with `settings` merged into the body.
    pub async fn create_service(&self, name: &str, settings: Value) -> Value {
        let mut body = serde_json::json!({ "name": name });
        if let (Some(b), Some(s)) = (body.as_object_mut(), settings.as_object()) {
            b.extend(s.clone());
        }
        let r = self.admin().post("/v1/services", body).await;
        assert_eq!(r.status, 201, "create service {name}: {}", r.body);
        r.body
    }

    /// A join token for `service`: (token, ca_fingerprint).
    pub async fn join_token(
        &self,
        service: &str,
        max_uses: u32,
        ttl_seconds: u64,
    ) -> (String, String) {
        let r = self
            .admin()
            .post(
                &format!("/v1/services/{service}/join-tokens"),
                serde_json::json!({ "max_uses": max_uses, "ttl_seconds": ttl_seconds }),
            )
            .await;
        assert_eq!(r.status, 201, "join token: {}", r.body);
        (
            r.body["token"].as_str().expect("token").to_owned(),
            r.body["ca_fingerprint"].as_str().expect("fp").to_owned(),
        )
    }

    /// A one-use join token for `service` that may replace an enrolled node (a new key
    /// under an existing node id).
    pub async fn replacing_join_token(&self, service: &str) -> String {
        let r = self
            .admin()
            .post(
                &format!("/v1/services/{service}/join-tokens"),
                serde_json::json!({ "max_uses": 1, "ttl_seconds": 600, "replaces_nodes": true }),
            )
            .await;
        assert_eq!(r.status, 201, "join token: {}", r.body);
        r.body["token"].as_str().expect("token").to_owned()
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if let Some((tx, task)) = self.running.take() {
            let _ = tx.send(true);
            task.abort();
        }
    }
}

/// A response: status, content type and JSON body (`Null` when empty or not JSON).
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub content_type: String,
    pub body: Value,
}

impl Resp {
    /// Asserts a client error rendered as RFC 7807 problem+json, returning its slug.
    pub fn assert_problem(&self, status: u16) -> String {
        assert_eq!(self.status, status, "unexpected status, body {}", self.body);
        assert_eq!(
            self.content_type, "application/problem+json",
            "body {}",
            self.body
        );
        assert_eq!(self.body["status"], status, "problem status field");
        let kind = self.body["type"].as_str().expect("problem type");
        kind.rsplit('/').next().unwrap_or(kind).to_owned()
    }
}

pub struct Api {
    pub client: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Api {
    async fn send(&self, req: reqwest::RequestBuilder) -> Resp {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let resp = req.send().await.expect("request reaches the control plane");
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = resp.bytes().await.expect("body");
        Resp {
            status,
            content_type,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(self.client.get(format!("{}{path}", self.base)))
            .await
    }
    pub async fn delete(&self, path: &str) -> Resp {
        self.send(self.client.delete(format!("{}{path}", self.base)))
            .await
    }
    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.send(self.client.post(format!("{}{path}", self.base)).json(&body))
            .await
    }
    pub async fn put(&self, path: &str, body: Value) -> Resp {
        self.send(self.client.put(format!("{}{path}", self.base)).json(&body))
            .await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Resp {
        self.send(
            self.client
                .patch(format!("{}{path}", self.base))
                .json(&body),
        )
        .await
    }
    /// POST with a raw body (for oversized or malformed input).
    pub async fn post_raw(&self, path: &str, body: Vec<u8>) -> Resp {
        self.send(
            self.client
                .post(format!("{}{path}", self.base))
                .header("content-type", "application/json")
                .body(body),
        )
        .await
    }
}
