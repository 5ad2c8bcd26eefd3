//! The admin dashboard in a real browser: a seeded fleet (two services, one stale node
//! with a firing alert, a delivered forced refresh, a rotation stuck on the stale node)
//! is read back from the DOM that Debian's Chromium rendered, and the sign-in is checked
//! from outside (redirect without a session, tenant tokens refused, cookie flags).

use ferry_tests::agent::spawn_agent;
use ferry_tests::{Backend, ControlPlane, eventually, spawn_control_plane};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;

fn fast(cfg: &mut ferry_control_plane::config::Config) {
    cfg.presence_linger = Duration::from_secs(1);
    cfg.max_poll_wait = Duration::from_secs(5);
    cfg.jobs.staleness_tick = Duration::from_millis(300);
}

/// A client that trusts the control plane's CA and does not follow redirects.
fn no_redirects(cp: &ControlPlane) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(cp.ca_pem.as_bytes()).expect("CA PEM");
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

async fn sign_in(
    client: &reqwest::Client,
    cp: &ControlPlane,
    token: &str,
    origin: Option<&str>,
) -> reqwest::Response {
    let mut req = client
        .post(format!("{}/dashboard/login", cp.url))
        .form(&[("token", token)]);
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    req.send().await.expect("sign-in request")
}

/// Seeds the fleet; returns the running agents (dropping them stops them).
async fn seed(cp: &ControlPlane) -> Vec<ferry_tests::agent::InProcessAgent> {
    let svc = json!({ "cert_ttl_seconds": 600, "stale_after_seconds": 10 });
    cp.create_service("web", svc.clone()).await;
    cp.create_service("api", svc).await;
    let (web, _) = cp.join_token("web", 2, 600).await;
    let (api, _) = cp.join_token("api", 1, 600).await;
    let quick = |cfg: &mut ferry_agent::AgentConfig| cfg.poll_wait = Duration::from_secs(2);
    let w1 = spawn_agent(cp, "web", "w1", &web, quick).await;
    let mut w2 = spawn_agent(cp, "web", "w2", &web, quick).await;
    let a1 = spawn_agent(cp, "api", "a1", &api, quick).await;
    eventually("all three installed", Duration::from_secs(30), || async {
        let s = cp.admin().get("/v1/status").await.body;
        (s["fleet"]["ok"] == 3).then_some(())
    })
    .await;

    let r = cp
        .admin()
        .post("/v1/services/api/nodes/a1/refresh", json!({}))
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let id = r.body["delivery_id"]
        .as_str()
        .expect("delivery id")
        .to_owned();
    eventually(
        "the refresh is delivered",
        Duration::from_secs(20),
        || async {
            let d = cp.admin().get(&format!("/v1/deliveries/{id}")).await.body;
            (d["state"] == "delivered").then_some(())
        },
    )
    .await;

    w2.stop().await;
    eventually("w2 is alerted stale", Duration::from_secs(25), || async {
        let a = cp.admin().get("/v1/alerts?state=firing").await.body;
        let items = a["items"].as_array().cloned().unwrap_or_default();
        items
            .iter()
            .any(|a| a["node_id"] == "w2" && a["reason"] == "unseen")
            .then_some(())
    })
    .await;

    // A rotation that w1 finishes and the silent w2 never will: it stays running at 1/2.
    let r = cp
        .admin()
        .post("/v1/services/web/rotate", json!({ "max_in_flight": 2 }))
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let path = format!(
        "/v1/services/web/rotations/{}",
        r.body["rotation_id"].as_str().expect("rotation id")
    );
    eventually("w1 acks the rotation", Duration::from_secs(20), || async {
        let rot = cp.admin().get(&path).await.body;
        (rot["delivered"] == 1 && rot["state"] == "running").then_some(())
    })
    .await;
    eventually("the fleet settles", Duration::from_secs(20), || async {
        let f = cp.admin().get("/v1/status").await.body["fleet"].clone();
        (f["ok"] == 2 && f["stale"] == 1 && f["pending"] == 0).then_some(())
    })
    .await;
    vec![w1, a1]
}

/// Where the screenshot is kept after the test: `target/test-artifacts/`.
fn artifacts_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target
    let target = exe.ancestors().nth(3).expect("target directory");
    target.join("test-artifacts")
}

/// Runs tests/browser/dashboard.mjs and returns the JSON it printed.
async fn browse(cp: &ControlPlane, shot: &std::path::Path, profile: &std::path::Path) -> Value {
    let browser_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run `npm ci` in {}",
        browser_dir.display()
    );
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "Debian's chromium package is not installed (scripts/test.sh installs it)"
    );
    let out = tokio::process::Command::new("node")
        .arg(browser_dir.join("dashboard.mjs"))
        .arg(&cp.url)
        .arg(shot)
        .arg(profile)
        .env("FERRY_ADMIN_TOKEN", &cp.admin_token)
        .current_dir(&browser_dir)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(90), out)
        .await
        .expect("the browser script finishes within 90 s")
        .expect("node runs (install Debian's nodejs)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "browser script failed: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "browser printed no JSON ({e}): {}\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[tokio::test]
async fn chromium_renders_the_seeded_fleet_after_sign_in() {
    let cp = spawn_control_plane(Backend::Postgres, fast).await;
    let _agents = seed(&cp).await;
    let client = no_redirects(&cp);

    let r = client
        .get(format!("{}/dashboard", cp.url))
        .send()
        .await
        .expect("GET /dashboard");
    assert_eq!(r.status(), 303, "no session: redirect to sign in");
    assert_eq!(r.headers()["location"], "/dashboard/login");
    let forged = client
        .get(format!("{}/dashboard", cp.url))
        .header("cookie", "ferry_session=bootstrap-admin.9999999999.00ff")
        .send()
        .await
        .expect("GET /dashboard");
    assert_eq!(forged.status(), 303, "a forged cookie is no session");

    let tenant = cp
        .admin()
        .post("/v1/tenants/default/tokens", json!({ "description": "t" }))
        .await;
    assert_eq!(tenant.status, 201, "{}", tenant.body);
    let tenant_token = tenant.body["token"].as_str().expect("tenant token");
    let r = sign_in(&client, &cp, tenant_token, None).await;
    assert_eq!(r.status(), 401, "a tenant token cannot sign in");
    assert!(r.headers().get("set-cookie").is_none());
    assert!(
        r.text().await.expect("body").contains("<form"),
        "the form again"
    );

    let r = sign_in(&client, &cp, &cp.admin_token, Some("https://evil.example")).await;
    assert_eq!(r.status(), 403, "a cross-origin sign-in is refused");
    assert!(r.headers().get("set-cookie").is_none());

    let r = sign_in(&client, &cp, &cp.admin_token, Some(&cp.url)).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/dashboard");
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .expect("ASCII")
        .to_owned();
    for flag in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/dashboard"] {
        assert!(cookie.contains(flag), "{flag} missing from {cookie}");
    }
    assert!(
        !cookie.contains(&cp.admin_token),
        "the cookie never holds the token"
    );
    let session = cookie.split(';').next().expect("name=value").to_owned();
    let page = client
        .get(format!("{}/dashboard", cp.url))
        .header("cookie", &session)
        .send()
        .await
        .expect("GET /dashboard");
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .is_ok_and(|c| c.starts_with("text/html"))
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let shot = dir.path().join("dashboard.png");
    let status = cp.admin().get("/v1/status").await.body;
    let dom = browse(&cp, &shot, &dir.path().join("profile")).await;
    let png = std::fs::read(&shot).expect("the screenshot was written");
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let artifacts = artifacts_dir();
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    std::fs::write(artifacts.join("dashboard.png"), &png).expect("artifact copy");

    assert_eq!(dom["before_sign_in_url"], "/dashboard/login", "{dom}");
    assert_eq!(dom["login_form"], true);
    assert_eq!(
        dom["wrong_token_error"], true,
        "a wrong token shows an error"
    );
    assert_eq!(dom["after_sign_in_url"], "/dashboard");
    assert_eq!(dom["after_sign_out_url"], "/dashboard/login", "signed out");
    assert_eq!(dom["refresh"], "10", "the page refreshes itself");
    let fleet = &dom["fleet"];
    assert_eq!(
        (
            &fleet["services"],
            &fleet["nodes"],
            &fleet["ok"],
            &fleet["stale"],
            &fleet["pending"]
        ),
        (&json!(2), &json!(3), &json!(2), &json!(1), &json!(0)),
        "{dom}"
    );
    assert!(fleet["firing"].as_i64() >= Some(1), "{dom}");
    for f in ["nodes", "ok", "pending", "stale", "firing_alerts"] {
        let key = if f == "firing_alerts" { "firing" } else { f };
        assert_eq!(
            fleet[key], status["fleet"][f],
            "fleet {f} matches /v1/status"
        );
    }
    let (web, api) = (&dom["services"]["web"], &dom["services"]["api"]);
    assert_eq!(
        (&web["nodes"], &web["stale"], &web["ok"]),
        (&json!(2), &json!(1), &json!(1))
    );
    assert_eq!(
        (&api["nodes"], &api["stale"], &api["ok"]),
        (&json!(1), &json!(0), &json!(1))
    );
    let web_status = status["services"]
        .as_array()
        .and_then(|v| v.iter().find(|s| s["service"] == "web"))
        .expect("web in /v1/status");
    assert_eq!(web["outage_budget"], web_status["outage_budget_seconds"]);
    let alerts = dom["alerts"].as_array().expect("alerts");
    assert!(
        alerts.contains(&json!({ "service": "web", "node": "w2", "reason": "unseen" })),
        "the stale node's alert is listed: {alerts:?}"
    );
    let deliveries = dom["deliveries"].as_array().expect("deliveries");
    assert!(
        deliveries.contains(&json!({ "service": "api", "node": "a1", "state": "delivered" })),
        "the forced refresh is listed: {deliveries:?}"
    );
    assert_eq!(
        dom["rotations"],
        json!([{ "service": "web", "done": 1, "total": 2 }]),
        "rotation progress"
    );
    assert_eq!(
        dom["cookie"],
        json!([{ "httpOnly": true, "secure": true, "sameSite": "Strict", "path": "/dashboard" }]),
        "the browser stored the session cookie with its flags"
    );
}
