//! Scoped API tokens and the limit on failed bearer tokens: each role is allowed and
//! refused where `roles.rs` says (403 problem+json), expiry (401), list and revoke by
//! name through `ferryctl` and the API, audit rows, tokens made before roles still
//! working as `admin`, and an address that keeps presenting bad tokens refused with
//! 429 before any database work until its window ends.

use ferry_tests::control_plane::Resp;
use ferry_tests::ferryctl::{Ferryctl, json_of};
use ferry_tests::node::{enroll, p256};
use ferry_tests::{Backend, ControlPlane, eventually, spawn_control_plane};
use serde_json::{Value, json};
use std::net::IpAddr;
use std::time::Duration;

/// Another loopback address, so a test can be "someone else" on the same machine.
const OTHER_ADDRESS: [u8; 4] = [127, 0, 0, 2];

/// A token of tenant `acme` with `body`'s settings (role, name, expiry).
async fn token(cp: &ControlPlane, body: Value) -> Value {
    let r = cp.admin().post("/v1/tenants/acme/tokens", body).await;
    assert_eq!(r.status, 201, "create token: {}", r.body);
    r.body
}

/// Tenant `acme` with service `edge` and an enrolled node `n1`.
async fn tenant_with_a_node(cp: &ControlPlane) {
    let r = cp
        .admin()
        .post("/v1/tenants", json!({ "name": "acme" }))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    cp.create_service("edge", json!({ "tenant": "acme" })).await;
    let (join, _) = cp.join_token("edge", 1, 3600).await;
    let enrolled = enroll(cp, "edge", "n1", &join, &p256()).await;
    assert_eq!(enrolled.status, 200, "{}", enrolled.body);
}

fn secret(created: &Value) -> String {
    created["token"].as_str().expect("token").to_owned()
}

fn refused_by_role(r: &Resp, what: &str) {
    assert_eq!(r.assert_problem(403), "forbidden", "{what}");
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("role"),
        "{what}: the refusal names the role: {}",
        r.body
    );
}

#[tokio::test]
async fn each_role_is_allowed_its_routes_and_refused_the_others() {
    let cp = spawn_control_plane(Backend::Postgres, |_| {}).await;
    tenant_with_a_node(&cp).await;
    let read = cp.api(Some(&secret(
        &token(&cp, json!({ "role": "read", "name": "dash" })).await,
    )));
    let deliver = cp.api(Some(&secret(
        &token(&cp, json!({ "role": "deliver", "name": "ci" })).await,
    )));
    let admin = cp.api(Some(&secret(
        &token(&cp, json!({ "role": "admin", "name": "ops" })).await,
    )));
    let region = json!({ "value": "eu-west" });

    // read: GET routes only.
    assert_eq!(read.get("/v1/services").await.status, 200);
    assert_eq!(read.get("/v1/services/edge/nodes/n1").await.status, 200);
    assert_eq!(read.get("/v1/status").await.status, 200);
    refused_by_role(
        &read
            .put("/v1/services/edge/metadata/region", region.clone())
            .await,
        "read writes metadata",
    );
    refused_by_role(
        &read
            .post("/v1/services/edge/nodes/n1/refresh", json!({}))
            .await,
        "read refreshes",
    );
    refused_by_role(
        &read.get("/v1/tenants/acme/tokens").await,
        "read lists tokens",
    );

    // deliver: read, plus refreshes, rotations and metadata writes.
    assert_eq!(deliver.get("/v1/services/edge").await.status, 200);
    let put = deliver
        .put("/v1/services/edge/metadata/region", region)
        .await;
    assert_eq!(put.status, 200, "{}", put.body);
    let refresh = deliver
        .post("/v1/services/edge/nodes/n1/refresh", json!({}))
        .await;
    assert!((200..300).contains(&refresh.status), "{}", refresh.body);
    let rotate = deliver.post("/v1/services/edge/rotate", json!({})).await;
    assert!((200..300).contains(&rotate.status), "{}", rotate.body);
    refused_by_role(
        &deliver
            .post("/v1/services/edge/join-tokens", json!({}))
            .await,
        "deliver makes join tokens",
    );
    refused_by_role(
        &deliver.delete("/v1/services/edge/webhook").await,
        "deliver drops the webhook",
    );
    refused_by_role(
        &deliver.post("/v1/tenants/acme/tokens", json!({})).await,
        "deliver makes tokens",
    );

    // admin: everything the tenant can, but not the deployment's routes.
    let join = admin.post("/v1/services/edge/join-tokens", json!({})).await;
    assert_eq!(join.status, 201, "{}", join.body);
    assert_eq!(
        admin
            .post("/v1/tenants/acme/tokens", json!({}))
            .await
            .status,
        201
    );
    assert_eq!(admin.get("/v1/tenants/acme/tokens").await.status, 200);
    assert_eq!(
        admin.get("/v1/audit").await.assert_problem(403),
        "forbidden"
    );
    assert_eq!(
        admin
            .post("/v1/tenants", json!({ "name": "evil" }))
            .await
            .assert_problem(403),
        "forbidden"
    );

    // The document says which role each route needs, as the bearer scope.
    let doc = cp.api(None).get("/openapi.json").await.body;
    let scope =
        |path: &str, method: &str| doc["paths"][path][method]["security"][0]["bearer"].clone();
    assert_eq!(
        scope("/v1/services/{svc}/nodes/{node}/refresh", "post"),
        json!(["deliver"])
    );
    assert_eq!(scope("/v1/services", "get"), json!(["read"]));
    assert_eq!(scope("/v1/services/{svc}/webhook", "put"), json!(["admin"]));
}

#[tokio::test]
async fn an_expired_token_is_refused_with_401_and_listed_as_expired() {
    let cp = spawn_control_plane(Backend::Sqlite, |_| {}).await;
    tenant_with_a_node(&cp).await;
    let created = token(
        &cp,
        json!({ "role": "read", "name": "brief", "expires_in_seconds": 1 }),
    )
    .await;
    let brief = cp.api(Some(&secret(&created)));
    assert!(created["expires_at"].is_string(), "{created}");
    assert_eq!(
        brief.get("/v1/services").await.status,
        200,
        "valid until it expires"
    );

    eventually("the token expires", Duration::from_secs(5), || async {
        (brief.get("/v1/services").await.status == 401).then_some(())
    })
    .await;

    let r = brief.get("/v1/services").await;
    assert_eq!(r.assert_problem(401), "unauthorized");
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("expired"),
        "{}",
        r.body
    );
    let listed = cp.admin().get("/v1/tenants/acme/tokens").await;
    let entry = listed.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|t| t["name"] == "brief")
        .cloned()
        .expect("listed");
    assert_eq!(entry["expired"], true, "{entry}");
}

#[tokio::test]
async fn tokens_are_listed_and_revoked_by_name_through_ferryctl_and_the_api_and_audited() {
    let cp = spawn_control_plane(Backend::Postgres, |_| {}).await;
    tenant_with_a_node(&cp).await;
    let cli = Ferryctl::new(&cp);

    let out = cli
        .words("--json token create --tenant acme --name ci --role deliver --expires-in 24h --description pipeline")
        .await;
    assert!(out.status.success(), "{out:?}");
    let created = json_of(&out);
    assert_eq!(
        (created["name"].as_str(), created["role"].as_str()),
        (Some("ci"), Some("deliver"))
    );
    let ci = secret(&created);
    let again = cli.words("token create --tenant acme --name ci").await;
    assert_eq!(again.status.code(), Some(1), "a taken name: {again:?}");
    let tenant_admin = cp.api(Some(&secret(&token(&cp, json!({ "name": "ops" })).await)));

    // Listed by name, with role and expiry, through ferryctl and the tenant's admin token.
    let listed = json_of(&cli.words("--json token list --tenant acme").await);
    let names: Vec<&str> = listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, ["ci", "ops"]);
    assert_eq!(listed["items"][0]["role"], "deliver");
    assert!(listed["items"][0]["expires_at"].is_string());
    assert!(
        !listed.to_string().contains(&ci),
        "a listing never holds a secret"
    );
    assert_eq!(
        tenant_admin.get("/v1/tenants/acme/tokens").await.body["items"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    assert_eq!(
        tenant_admin
            .get("/v1/tenants/default/tokens")
            .await
            .assert_problem(404),
        "not-found",
        "another tenant's tokens are not visible"
    );

    // Revoked by name: refused from the next request on.
    assert_eq!(cp.api(Some(&ci)).get("/v1/services").await.status, 200);
    let revoke = cli.words("token revoke --tenant acme ci").await;
    assert!(revoke.status.success(), "{revoke:?}");
    assert_eq!(
        cp.api(Some(&ci))
            .get("/v1/services")
            .await
            .assert_problem(401),
        "unauthorized"
    );
    assert_eq!(
        cli.words("token revoke --tenant acme ci")
            .await
            .status
            .code(),
        Some(1),
        "already revoked"
    );
    let by_api = tenant_admin.delete("/v1/tenants/acme/tokens/ops").await;
    assert_eq!(by_api.status, 204, "{}", by_api.body);

    // Every change is audited, by name, and no secret is in the log.
    let audit = cp.admin().get("/v1/audit?limit=100").await.body;
    let rows: Vec<(String, String)> = audit["items"]
        .as_array()
        .expect("audit items")
        .iter()
        .filter(|e| {
            e["action"]
                .as_str()
                .is_some_and(|a| a.starts_with("token."))
        })
        .map(|e| {
            (
                e["action"].as_str().unwrap_or_default().to_owned(),
                e["detail"]["name"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    for expected in [
        ("token.create", "ci"),
        ("token.create", "ops"),
        ("token.revoke", "ci"),
        ("token.revoke", "ops"),
    ] {
        assert!(
            rows.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "{expected:?} in {rows:?}"
        );
    }
    assert!(
        !audit.to_string().contains(&ci),
        "no secret in the audit log"
    );
}

#[tokio::test]
async fn tokens_made_before_roles_keep_working_as_admin() {
    let cp = spawn_control_plane(Backend::Postgres, |_| {}).await;
    tenant_with_a_node(&cp).await;
    let legacy = "fyt_made-before-roles";
    let hash = ferry_shared::hash::sha256_hex(legacy.as_bytes());
    // The table as it was before the migration, a token written then, the migration.
    run_sql(
        &cp,
        include_str!("../../migrations/postgres/2026-12-04-000016_token_roles/down.sql"),
    );
    cp.db.execute(&format!(
        "INSERT INTO api_tokens (id, tenant, token_hash, description, created_at) \
         VALUES ('old1', 'acme', '{hash}', 'from before', 0)"
    ));
    run_sql(
        &cp,
        include_str!("../../migrations/postgres/2026-12-04-000016_token_roles/up.sql"),
    );

    let old = cp.api(Some(legacy));
    let join = old.post("/v1/services/edge/join-tokens", json!({})).await;

    assert_eq!(join.status, 201, "an admin route: {}", join.body);
    let listed = old.get("/v1/tenants/acme/tokens").await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(listed.body["items"][0]["name"], "old1", "named by its id");
    assert_eq!(listed.body["items"][0]["role"], "admin");
    let boot = cp.admin().get("/v1/audit").await;
    assert_eq!(
        boot.status, 200,
        "the deployment's admin token keeps every right"
    );
}

/// Runs a migration script one statement at a time (comments removed first: they may
/// hold a ';').
fn run_sql(cp: &ControlPlane, script: &str) {
    let code: String = script
        .lines()
        .map(|l| l.split("--").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    for statement in code.split(';').filter(|s| !s.trim().is_empty()) {
        cp.db.execute(statement);
    }
}

/// A client trusting the control plane's CA, connecting from `local` if given.
fn client(cp: &ControlPlane, local: Option<IpAddr>) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(cp.ca_pem.as_bytes()).expect("CA PEM");
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .local_address(local)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// `GET /v1/services` with `token`: (status, retry-after, body).
async fn list_services(
    client: &reqwest::Client,
    cp: &ControlPlane,
    token: &str,
) -> (u16, Option<u64>, Value) {
    let resp = client
        .get(format!("{}/v1/services", cp.url))
        .bearer_auth(token)
        .send()
        .await
        .expect("reaches the control plane");
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    (
        resp.status().as_u16(),
        retry_after,
        resp.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn wrong_tokens_from_one_address_are_refused_with_429_until_the_window_ends() {
    let window = Duration::from_secs(4);
    let cp = spawn_control_plane(Backend::Postgres, |cfg| {
        cfg.limits.auth_max_failures = 10;
        cfg.limits.auth_failure_window = window;
        // Quiet jobs: the statement counter then sees the requests alone.
        let hour = Duration::from_secs(3600);
        cfg.jobs.renewal_tick = hour;
        cfg.jobs.rotation_tick = hour;
        cfg.jobs.staleness_tick = hour;
        cfg.jobs.expiry_tick = hour;
        cfg.presence_flush = hour;
        cfg.jobs.objects_tick = hour;
    })
    .await;
    let guesser = client(&cp, None);

    // 60 wrong tokens: the first 10 are ordinary 401s, the rest 429 with retry-after.
    let mut statuses = Vec::new();
    for i in 0..60 {
        let (status, retry_after, body) =
            list_services(&guesser, &cp, &format!("fyt_guess-{i}")).await;
        if status == 429 {
            assert_eq!(body["status"], 429, "problem+json: {body}");
            let secs = retry_after.expect("retry-after header");
            assert!((1..=window.as_secs()).contains(&secs), "retry-after {secs}");
        }
        statuses.push(status);
    }
    assert!(statuses[..10].iter().all(|&s| s == 401), "{statuses:?}");
    assert!(statuses[10..].iter().all(|&s| s == 429), "{statuses:?}");

    // While limited, the right token from that address waits too, and costs no query.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = cp.store.statements();
    for _ in 0..20 {
        assert_eq!(list_services(&guesser, &cp, &cp.admin_token).await.0, 429);
    }
    let statements = cp.store.statements() - before;
    assert!(
        statements < 5,
        "{statements} statements for 20 refused requests"
    );

    // Another address is not affected.
    let neighbour = client(&cp, Some(IpAddr::from(OTHER_ADDRESS)));
    assert_eq!(list_services(&neighbour, &cp, &cp.admin_token).await.0, 200);

    // One audit row for the address, however many refusals; no token in it.
    let log = neighbour
        .get(format!("{}/v1/audit?limit=100", cp.url))
        .bearer_auth(&cp.admin_token)
        .send()
        .await
        .expect("audit")
        .json::<Value>()
        .await
        .expect("audit body");
    let refusals: Vec<&Value> = log["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|e| e["action"] == "auth.refused")
        .collect();
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert_eq!(refusals[0]["actor"], "address:127.0.0.1");
    assert_eq!(refusals[0]["detail"]["failures"], 10);
    assert!(
        !log.to_string().contains("fyt_guess"),
        "no token in the audit log"
    );

    // The window ends: the address is served again.
    tokio::time::sleep(window).await;
    assert_eq!(list_services(&guesser, &cp, &cp.admin_token).await.0, 200);
}

#[tokio::test]
async fn loopback_is_limited_by_default_and_exempt_only_when_the_operator_says_so() {
    let limited =
        spawn_control_plane(Backend::Sqlite, |cfg| cfg.limits.auth_max_failures = 3).await;
    let exempt = spawn_control_plane(Backend::Sqlite, |cfg| {
        cfg.limits.auth_max_failures = 3;
        cfg.limits.exempt_loopback_auth = true;
    })
    .await;

    let mut seen = Vec::new();
    for cp in [&limited, &exempt] {
        let c = client(cp, None);
        for i in 0..5 {
            list_services(&c, cp, &format!("fyt_guess-{i}")).await;
        }
        seen.push(list_services(&c, cp, &cp.admin_token).await.0);
    }

    assert_eq!(seen, [429, 200], "limited by default, served when exempt");
}

/// `POST /dashboard/login` with `token`, from the control plane's own origin: the status.
async fn sign_in(client: &reqwest::Client, cp: &ControlPlane, token: &str) -> u16 {
    client
        .post(format!("{}/dashboard/login", cp.url))
        .header("origin", &cp.url)
        .form(&[("token", token)])
        .send()
        .await
        .expect("sign-in reaches the control plane")
        .status()
        .as_u16()
}

#[tokio::test]
async fn the_dashboard_sign_in_shares_the_failed_token_limit() {
    let cp = spawn_control_plane(Backend::Sqlite, |cfg| cfg.limits.auth_max_failures = 3).await;
    let c = client(&cp, None);

    let wrong: Vec<u16> = {
        let mut v = Vec::new();
        for i in 0..3 {
            v.push(sign_in(&c, &cp, &format!("fya_guess-{i}")).await);
        }
        v
    };
    let right = sign_in(&c, &cp, &cp.admin_token).await;
    let api = list_services(&c, &cp, &cp.admin_token).await.0;

    assert_eq!(wrong, [401, 401, 401]);
    assert_eq!(
        (right, api),
        (429, 429),
        "the sign-in form and the API share one count"
    );
}
