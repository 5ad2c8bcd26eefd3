//! Spec-driven testing of the whole HTTP API: schemathesis (installed by
//! `scripts/schemathesis.sh`) reads `/openapi.json` from a running control plane that
//! holds real data and sends generated requests, valid and invalid, to every operation.
//! No answer may be a 5xx, every error must be RFC 7807 problem+json (the `problem_json`
//! check in `schemathesis/hooks.py`), and every answer must match the status codes,
//! content types, headers and schemas the document declares. After it, one focused
//! assertion per bug it found.

use ferry_tests::control_plane::Resp;
use ferry_tests::node::{enroll, mtls_client, p256};
use ferry_tests::{Backend, ControlPlane, spawn_control_plane};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Generated test cases per operation in the fuzzing phase, on PostgreSQL (the
/// production store) and on SQLite (a shorter second pass: the HTTP layer is the same).
/// The run is bounded by these, not by a time budget, and runs on one worker, so a
/// seed sends the same generated requests in the same order every time.
const MAX_EXAMPLES_POSTGRES: u32 = 30;
const MAX_EXAMPLES_SQLITE: u32 = 15;
/// Fixed, so a failure reproduces (`st run ... --seed`) and a passing run does not flake.
const SEED: &str = "7240511";
/// A run that is not done by then is stuck: killed, and the test fails.
const RUN_TIMEOUT: Duration = Duration::from_secs(240);

/// schemathesis's `st` command, from `scripts/schemathesis.sh`.
fn st_command() -> PathBuf {
    let path = std::env::var_os("FERRY_SCHEMATHESIS").unwrap_or_else(|| {
        panic!("FERRY_SCHEMATHESIS is not set: run the tests through scripts/test.sh, which installs schemathesis")
    });
    PathBuf::from(path)
}

fn expect(r: Resp, status: u16) -> Value {
    assert_eq!(r.status, status, "setup call: {}", r.body);
    r.body
}

/// What the run needs besides the document: real names for `hooks.py` to put into
/// generated paths, and a node identity for the agent routes.
struct Fixtures {
    values: Value,
    /// The enrolled node `web/n1`: its identity certificate (PEM) and key.
    certificate: String,
    key: rcgen::KeyPair,
}

/// Two services in two tenants, an enrolled node, metadata at both levels, a delivery,
/// a rotation, an inventory, a webhook and a dynamic source. The URLs point at a closed
/// loopback port: the jobs that read them fail at once and reach nothing outside.
async fn populate(cp: &ControlPlane) -> Fixtures {
    let admin = cp.admin();
    expect(
        admin.post("/v1/tenants", json!({ "name": "acme" })).await,
        201,
    );
    expect(admin.post("/v1/tenants/acme/tokens", json!({})).await, 201);
    cp.create_service("web", json!({})).await;
    cp.create_service("edge", json!({ "tenant": "acme", "key_mode": "node-key" }))
        .await;
    let (token, _) = cp.join_token("web", 5, 3600).await;
    let key = p256();
    let enrolled = expect(enroll(cp, "web", "n1", &token, &key).await, 200);
    let certificate = enrolled["certificate"]
        .as_str()
        .expect("identity certificate");
    let metadata = [
        (
            "/v1/services/web/metadata/region",
            json!({ "value": "eu-west" }),
        ),
        (
            "/v1/services/web/nodes/n1/metadata/rack",
            json!({ "value": { "row": 4 }, "ttl_seconds": 86_400 }),
        ),
    ];
    for (path, body) in metadata {
        expect(admin.put(path, body).await, 200);
    }
    let closed = "http://127.0.0.1:1";
    let settings = [
        (
            "/v1/services/web/inventory",
            json!({ "url": format!("{closed}/inventory") }),
        ),
        (
            "/v1/services/web/webhook",
            json!({ "url": format!("{closed}/hook") }),
        ),
        (
            "/v1/services/web/sources/zone",
            json!({ "url": format!("{closed}/zone"), "interval_seconds": 3600 }),
        ),
    ];
    for (path, body) in settings {
        let r = admin.put(path, body).await;
        assert!(r.status == 200 || r.status == 201, "{path}: {}", r.body);
    }
    let delivery = expect(
        admin
            .post("/v1/services/web/nodes/n1/refresh", json!({}))
            .await,
        202,
    );
    let rotation = expect(
        admin
            .post("/v1/services/web/rotate", json!({ "max_in_flight": 1 }))
            .await,
        202,
    );
    Fixtures {
        values: json!({
            "svc": ["web", "edge"],
            "tenant": ["acme", "default"],
            "node": ["n1"],
            "key": ["region", "rack"],
            "name": ["zone"],
            "id": [delivery["delivery_id"], rotation["rotation_id"]],
        }),
        certificate: certificate.to_owned(),
        key,
    }
}

/// Runs schemathesis against `cp`: (passed, its report).
async fn run_schemathesis(
    cp: &ControlPlane,
    fixtures: &Fixtures,
    max_examples: u32,
    dir: &Path,
) -> (bool, String) {
    let (ca, identity) = (dir.join("ca.pem"), dir.join("identity.pem"));
    std::fs::write(&ca, &cp.ca_pem).expect("write the CA PEM");
    let identity_pem = format!("{}{}", fixtures.certificate, fixtures.key.serialize_pem());
    std::fs::write(&identity, identity_pem).expect("write the identity PEM");
    let hooks = Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e/schemathesis/hooks.py");
    let mut st = tokio::process::Command::new(st_command());
    st.arg("run")
        .arg(format!("{}/openapi.json", cp.url))
        // Every built-in check but one, plus ours. `positive_data_acceptance` wants a
        // 2xx for any schema-valid request; most valid names exist nowhere (404).
        .args(["--checks", "all,problem_json"])
        .args(["--exclude-checks", "positive_data_acceptance"])
        .arg("--header")
        .arg(format!("Authorization: Bearer {}", cp.admin_token))
        .arg("--tls-verify")
        .arg(&ca)
        .arg("--request-cert")
        .arg(&identity)
        .args(["--seed", SEED, "--max-examples", &max_examples.to_string()])
        .args(["--workers", "1", "--request-timeout", "10"])
        // Network-level failures only (one TLS EOF was seen once and never again): a
        // request that crashes the server fails every retry and is still reported.
        .args(["--request-retries", "2"])
        .args(["--generation-database", "none", "--no-color"])
        .args(["--output-truncate", "false"])
        .env("SCHEMATHESIS_HOOKS", &hooks)
        .env("PYTHONDONTWRITEBYTECODE", "1") // no __pycache__ next to hooks.py
        .env("FERRY_SCHEMATHESIS_VALUES", fixtures.values.to_string())
        .current_dir(dir)
        .kill_on_drop(true);
    let output = tokio::time::timeout(RUN_TIMEOUT, st.output())
        .await
        .unwrap_or_else(|_| panic!("schemathesis did not finish within {RUN_TIMEOUT:?}"))
        .expect("schemathesis starts (FERRY_SCHEMATHESIS is its `st` command)");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), report)
}

async fn api_answers_as_its_openapi_document_says(backend: Backend, max_examples: u32) {
    let cp = spawn_control_plane(backend, |_| {}).await;
    let fixtures = populate(&cp).await;
    let dir = tempfile::tempdir().expect("tempdir");

    let started = Instant::now();
    let (passed, report) = run_schemathesis(&cp, &fixtures, max_examples, dir.path()).await;

    println!(
        "schemathesis ({backend:?}) took {:.1?}\n{report}",
        started.elapsed()
    );
    assert!(
        passed,
        "schemathesis found problems ({backend:?}); its report is above"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_answers_as_its_openapi_document_says_postgres() {
    api_answers_as_its_openapi_document_says(Backend::Postgres, MAX_EXAMPLES_POSTGRES).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_answers_as_its_openapi_document_says_sqlite() {
    api_answers_as_its_openapi_document_says(Backend::Sqlite, MAX_EXAMPLES_SQLITE).await;
}

// ---- What schemathesis found, one focused assertion each ----

/// axum's `Query` and `Path` rejections were plain text: a query string that does not
/// parse, an unknown parameter, a path segment that is not UTF-8 once decoded.
#[tokio::test]
async fn query_and_path_errors_are_problem_json() {
    let cp = spawn_control_plane(Backend::Sqlite, |_| {}).await;
    cp.create_service("web", json!({})).await;
    let admin = cp.admin();

    let cases = [
        ("/v1/services?limit=abc", "invalid-query"),
        ("/v1/services?limit=1&unknown=42", "invalid-query"),
        ("/v1/alerts?limit=1.5", "invalid-query"),
        ("/v1/services/%FF", "invalid-path"),
        ("/v1/services/web/metadata/%C0", "invalid-path"),
        ("/v1/deliveries/%FF%FE", "invalid-path"),
    ];
    for (path, slug) in cases {
        let r = admin.get(path).await;
        assert_eq!(r.assert_problem(400), slug, "{path}: {}", r.body);
    }
    let agent = cp.api(None).get("/v1/agent/bundle?wait=x").await;
    agent.assert_problem(401); // identity first: no certificate, no parsing
}

/// serde's derived structs also read a JSON array of their fields in order, so
/// `[null, null]` created a join token and `["x"]` set a metadata value.
#[tokio::test]
async fn a_body_that_is_not_a_json_object_is_refused_and_changes_nothing() {
    let cp = spawn_control_plane(Backend::Sqlite, |_| {}).await;
    cp.create_service("web", json!({})).await;
    let admin = cp.admin();
    expect(
        admin
            .put("/v1/services/web/metadata/region", json!({ "value": "eu" }))
            .await,
        200,
    );
    let before = cp.db.row_counts();

    let token = admin
        .post("/v1/services/web/join-tokens", json!([null, null]))
        .await;
    let metadata = admin
        .put("/v1/services/web/metadata/region", json!(["changed"]))
        .await;
    let service = admin.post("/v1/services", json!(["other"])).await;

    for r in [&token, &metadata, &service] {
        assert_eq!(r.assert_problem(422), "invalid-body", "{}", r.body);
    }
    assert_eq!(cp.db.row_counts(), before, "nothing was written");
    let region = admin.get("/v1/services/web/metadata/region").await;
    assert_eq!(region.body["value"], "eu");
}

/// Mistakes in the document itself.
#[tokio::test]
async fn the_document_describes_what_the_server_accepts() {
    let cp = spawn_control_plane(Backend::Sqlite, |_| {}).await;
    let doc = cp.api(None).get("/openapi.json").await.body;

    // `allOf` of the closed `ServiceSettings` and `{name, tenant}` allowed no body at
    // all; it is one closed object with every field.
    let create = &doc["components"]["schemas"]["CreateServiceRequest"];
    assert!(create.get("allOf").is_none(), "{create}");
    assert_eq!(create["additionalProperties"], false);
    for field in ["name", "tenant", "cert_ttl_seconds", "san_template"] {
        assert!(create["properties"][field].is_object(), "{field}: {create}");
    }

    // Every operation that reads a body or parameters documents the 400 it gives for
    // bad ones, and one that reads a JSON body the 422 for the wrong shape.
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let has_parameters = op["parameters"].as_array().is_some_and(|p| !p.is_empty());
            let has_body = op.get("requestBody").is_some();
            let responses = &op["responses"];
            if has_parameters || has_body {
                assert!(responses.get("400").is_some(), "{method} {path}: 400");
            }
            if has_body {
                assert!(responses.get("422").is_some(), "{method} {path}: 422");
            }
        }
    }

    // `wait` is any u64 (capped by the server), not at most i64::MAX.
    let parameters = doc["paths"]["/v1/agent/bundle"]["get"]["parameters"]
        .as_array()
        .expect("long-poll parameters");
    let wait = parameters
        .iter()
        .find(|p| p["name"] == "wait")
        .expect("wait");
    assert_eq!(wait["schema"]["maximum"], json!(u64::MAX));
}

/// PostgreSQL text cannot hold NUL: text that carried one into a query was a 500
/// (token descriptions, source and inventory URLs, an ack's error and agent version, a
/// delivery or rotation id, a source name, a decoded cursor). Now a 4xx that writes
/// nothing, except the ack, whose informational text has the NUL replaced so the ack
/// still counts.
#[tokio::test]
async fn nul_in_text_is_refused_before_postgresql_sees_it() {
    let cp = spawn_control_plane(Backend::Postgres, |_| {}).await;
    let fixtures = populate(&cp).await;
    let admin = cp.admin();
    let before = cp.db.row_counts();

    let stored = [
        admin
            .post("/v1/tenants/acme/tokens", json!({ "description": "a\0b" }))
            .await,
        admin
            .put(
                "/v1/services/web/inventory",
                json!({ "url": "http://127.0.0.1:1/a\0b" }),
            )
            .await,
        admin
            .put(
                "/v1/services/web/sources/other",
                json!({ "url": "http://127.0.0.1:1/a\0b", "interval_seconds": 60 }),
            )
            .await,
    ];
    let cursor = "YQBi"; // base64url of "a\0b"
    let malformed = [
        admin.get(&format!("/v1/services?cursor={cursor}")).await,
        admin.get(&format!("/v1/tenants?cursor={cursor}")).await,
        admin.get("/v1/alerts?service=web%00").await,
    ];
    let nonexistent = [
        admin.get("/v1/deliveries/a%00b").await,
        admin.get("/v1/services/web/rotations/a%00b").await,
        admin.get("/v1/services/web/sources/a%00b").await,
        admin.delete("/v1/services/web/sources/a%00b").await,
    ];

    for r in &stored {
        r.assert_problem(422);
    }
    for r in &malformed {
        r.assert_problem(400);
    }
    for r in &nonexistent {
        r.assert_problem(404);
    }
    assert_eq!(cp.db.row_counts(), before, "nothing was written");

    let node = mtls_client(&cp, &fixtures.certificate, &fixtures.key);
    let ack = node
        .post(format!("{}/v1/agent/ack", cp.url))
        .json(&json!({
            "version": 1,
            "content_hash": format!("sha256:{}", "0".repeat(64)),
            "status": "failed",
            "error": "hook said \0",
            "agent_version": "1.0\0",
        }))
        .send()
        .await
        .expect("ack");
    assert_eq!(ack.status(), 204, "{:?}", ack.text().await);
    let shown = admin.get("/v1/services/web/nodes/n1").await;
    assert_eq!(shown.body["last_error"], "hook said \u{fffd}");
    assert_eq!(shown.body["agent_version"], "1.0\u{fffd}");
}
