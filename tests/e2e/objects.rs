//! Customer storage against a real S3-compatible server on loopback (moto, started by
//! the test command): an inventory that reports never-enrolled nodes and flags (or
//! revokes) unknown ones, certificates dropped into a bucket delivered to their nodes,
//! and certificates imported by hand validated before anything changes.

use ferry_control_plane::config::{S3Settings, Secret};
use ferry_tests::agent::spawn_agent;
use ferry_tests::node::{enroll, p256};
use ferry_tests::{Backend, ControlPlane, eventually, spawn_control_plane};
use rcgen::{CertificateParams, DnType, IsCa, Issuer, KeyPair};
use serde_json::{Value, json};
use std::time::Duration;

fn endpoint() -> String {
    std::env::var("FERRY_TEST_S3_ENDPOINT").unwrap_or_else(|_| {
        panic!("FERRY_TEST_S3_ENDPOINT is not set: run the tests through scripts/test.sh, which starts an S3 server")
    })
}

fn with_s3(cfg: &mut ferry_control_plane::config::Config) {
    cfg.s3 = S3Settings {
        endpoint: Some(endpoint()),
        region: Some("us-east-1".into()),
        access_key_id: Some(Secret::new("test")),
        secret_access_key: Some(Secret::new("test")),
    };
}

/// A bucket of its own for each test, written with signed requests like any client.
struct Bucket {
    name: String,
    store: object_store::aws::AmazonS3,
}

impl Bucket {
    async fn new(prefix: &str) -> Self {
        let name = format!(
            "{prefix}-{}",
            std::process::id() as u64 * 1000 + rand_suffix()
        );
        // moto creates buckets on an unsigned PUT.
        let r = reqwest::Client::new()
            .put(format!("{}/{name}", endpoint()))
            .send()
            .await
            .expect("create bucket");
        assert!(r.status().is_success(), "create bucket: {}", r.status());
        let store = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(&name)
            .with_region("us-east-1")
            .with_endpoint(endpoint())
            .with_allow_http(true)
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .build()
            .expect("S3 client");
        Self { name, store }
    }

    async fn put(&self, key: &str, body: impl Into<String>) {
        use object_store::ObjectStoreExt;
        let bytes = object_store::PutPayload::from(body.into().into_bytes());
        self.store
            .put(&object_store::path::Path::from(key), bytes)
            .await
            .unwrap_or_else(|e| panic!("put {key}: {e}"));
    }
}

fn rand_suffix() -> u64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as u64 % 1000
}

async fn firing(cp: &ControlPlane, reason: &str) -> Vec<String> {
    let a = cp.admin().get("/v1/alerts?state=firing").await.body;
    let mut nodes: Vec<String> = a["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|a| a["reason"] == reason)
        .filter_map(|a| a["node_id"].as_str().map(str::to_owned))
        .collect();
    nodes.sort();
    nodes
}

#[tokio::test]
async fn the_inventory_reports_never_enrolled_nodes_and_flags_unknown_ones() {
    let cp = spawn_control_plane(Backend::Postgres, with_s3).await;
    cp.create_service("web", json!({})).await;
    let (token, _) = cp.join_token("web", 3, 600).await;
    for node in ["n1", "rogue"] {
        let r = enroll(&cp, "web", node, &token, &p256()).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let bucket = Bucket::new("inventory").await;
    bucket.put("web.json", r#"["n1", "n2"]"#).await;

    let url = format!("s3://{}/web.json", bucket.name);
    let r = cp
        .admin()
        .put(
            "/v1/services/web/inventory",
            json!({ "url": url, "interval_seconds": 1, "grace_seconds": 0 }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    let inv = eventually("the first sync", Duration::from_secs(15), || async {
        let v = cp.admin().get("/v1/services/web/inventory").await.body;
        v["source"]["synced_at"].is_string().then_some(v)
    })
    .await;
    assert_eq!(inv["listed"], 2);
    assert_eq!(inv["never_enrolled"], json!(["n2"]));
    assert_eq!(inv["not_in_inventory"], json!(["rogue"]));
    eventually("both are alerted", Duration::from_secs(10), || async {
        (firing(&cp, "never-enrolled").await == ["n2"]
            && firing(&cp, "not-in-inventory").await == ["rogue"])
        .then_some(())
    })
    .await;
    let status = cp.admin().get("/v1/status").await.body;
    assert_eq!(status["services"][0]["never_enrolled"], 1, "{status}");
    assert_eq!(
        status["fleet"]["never_enrolled"], 1,
        "the fleet line agrees"
    );
    assert_eq!(
        status["services"][0]["stale"], 0,
        "inventory alerts are not staleness"
    );

    // n2 enrolls and the inventory (now a newline list) lists the rogue too.
    let r = enroll(&cp, "web", "n2", &token, &p256()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    bucket
        .put("web.json", "# fleet of web\nn1\nn2\nrogue\n")
        .await;
    eventually("both alerts resolve", Duration::from_secs(15), || async {
        (firing(&cp, "never-enrolled").await.is_empty()
            && firing(&cp, "not-in-inventory").await.is_empty())
        .then_some(())
    })
    .await;

    // With the revoke policy an unlisted node loses its enrollment.
    bucket.put("web.json", "n1\nn2\n").await;
    let r = cp
        .admin()
        .put(
            "/v1/services/web/inventory",
            json!({ "url": url, "interval_seconds": 1, "policy": "revoke" }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    eventually("the rogue is revoked", Duration::from_secs(15), || async {
        (cp.admin().get("/v1/services/web/nodes/rogue").await.status == 404).then_some(())
    })
    .await;
    assert_eq!(
        cp.admin().get("/v1/services/web/nodes/n1").await.status,
        200
    );

    // A broken inventory keeps the last good one and says why.
    bucket.put("web.json", "n1\nnot a node id!\n").await;
    let err = eventually("the error is shown", Duration::from_secs(15), || async {
        let v = cp.admin().get("/v1/services/web/inventory").await.body;
        v["source"]["last_error"].as_str().map(str::to_owned)
    })
    .await;
    assert!(err.contains("inventory entry 2"), "{err}");
    assert_eq!(
        cp.admin().get("/v1/services/web/nodes/n2").await.status,
        200
    );
}

/// A customer CA and a leaf for `node`: (PEM chain leaf + root, key PEM).
fn customer_cert(root: &(rcgen::Certificate, KeyPair), node: &str, days: i64) -> (String, String) {
    let issuer = Issuer::from_ca_cert_pem(&root.0.pem(), &root.1).expect("root issuer");
    let key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::new(vec![format!("{node}.customer.example")]).expect("params");
    p.distinguished_name.push(DnType::CommonName, node);
    p.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    p.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(days);
    let leaf = p.signed_by(&key, &issuer).expect("leaf");
    (
        format!("{}{}", leaf.pem(), root.0.pem()),
        key.serialize_pem(),
    )
}

fn customer_root() -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    p.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(DnType::CommonName, "Customer Root");
    (p.self_signed(&key).expect("root"), key)
}

#[tokio::test]
async fn a_certificate_put_into_the_bucket_is_delivered_to_its_node_and_acked() {
    let cp = spawn_control_plane(Backend::Postgres, with_s3).await;
    cp.create_service("imp", json!({ "key_mode": "imported" }))
        .await;
    let (token, _) = cp.join_token("imp", 1, 600).await;
    let agent = spawn_agent(&cp, "imp", "n1", &token, |cfg| {
        cfg.poll_wait = Duration::from_secs(5);
    })
    .await;
    let bucket = Bucket::new("certs").await;
    let r = cp
        .admin()
        .put(
            "/v1/services/imp/certificate-source",
            json!({ "url": format!("s3://{}/nodes/", bucket.name), "interval_seconds": 1 }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    let root = customer_root();
    for round in 0..2 {
        let (chain, key) = customer_cert(&root, "n1", 30 + round);
        bucket.put("nodes/n1.pem", chain.clone()).await;
        bucket.put("nodes/n1.key", key).await;
        let leaf = chain
            .split_inclusive("-----END CERTIFICATE-----\n")
            .next()
            .map(str::to_owned);
        let installed = eventually("the node installs it", Duration::from_secs(20), || async {
            agent
                .installed()
                .filter(|i| Some(&i.cert_pem) == leaf.as_ref())
        })
        .await;
        let view: Value = eventually("the node acks it", Duration::from_secs(20), || async {
            let v = cp
                .admin()
                .get("/v1/services/imp/nodes/n1/bundle")
                .await
                .body;
            (v["in_sync"] == true).then_some(v)
        })
        .await;
        assert_eq!(view["desired"]["content_hash"], json!(installed.hash));
        assert_eq!(view["desired"]["key_mode"], "imported");
    }
    let src = cp
        .admin()
        .get("/v1/services/imp/certificate-source")
        .await
        .body;
    assert!(src["last_error"].is_null(), "{src}");
}

#[tokio::test]
async fn imported_certificates_are_checked_and_a_refusal_changes_nothing() {
    let cp = spawn_control_plane(Backend::Sqlite, |_| {}).await;
    cp.create_service("imp", json!({ "key_mode": "imported" }))
        .await;
    cp.create_service("own", json!({})).await;
    let (imp, _) = cp.join_token("imp", 1, 600).await;
    let (own, _) = cp.join_token("own", 1, 600).await;
    assert_eq!(enroll(&cp, "imp", "n1", &imp, &p256()).await.status, 200);
    assert_eq!(enroll(&cp, "own", "o1", &own, &p256()).await.status, 200);
    let root = customer_root();
    let (chain, key) = customer_cert(&root, "n1", 30);
    let (_, other_key) = customer_cert(&root, "n1", 30);
    let leaf_only = chain
        .split_inclusive("-----END CERTIFICATE-----\n")
        .next()
        .unwrap_or("")
        .to_owned();
    let before = cp.db.row_counts();
    let put = |svc: &'static str, node: &'static str, cert: String, key: String| {
        let api = cp.admin();
        async move {
            api.put(
                &format!("/v1/services/{svc}/nodes/{node}/certificate"),
                json!({ "certificate": cert, "private_key": key }),
            )
            .await
        }
    };
    for (cert, k, why) in [
        (chain.clone(), other_key.clone(), "does not belong"),
        (leaf_only, key.clone(), "self-signed root"),
        ("garbage".to_owned(), key.clone(), "no PEM certificate"),
        (chain.clone(), "garbage".to_owned(), "does not parse"),
    ] {
        let r = put("imp", "n1", cert, k).await;
        assert_eq!(r.status, 422, "{}", r.body);
        assert!(
            r.body["detail"].as_str().unwrap_or("").contains(why),
            "{}",
            r.body
        );
        assert!(
            !r.body.to_string().contains("PRIVATE KEY"),
            "no key echoed: {}",
            r.body
        );
    }
    let r = put("own", "o1", chain.clone(), key.clone()).await;
    assert_eq!(r.status, 409, "a service that issues its own: {}", r.body);
    assert_eq!(cp.db.row_counts(), before, "refusals change nothing");

    let r = put("imp", "n1", chain, key).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body["version"].as_i64().is_some_and(|v| v >= 1),
        "{}",
        r.body
    );
}
