//! `ferry-bench-staleness`: the staleness detector, the status summary and the
//! dashboard over a large fleet. Seeds SERVICES services and NODES nodes straight into
//! PostgreSQL (1% stale: lagging, unseen or expiring), lets a control plane run its
//! detector, and prints the time of a steady-state detector pass (from /metrics), of
//! `GET /v1/status` and of `GET /dashboard`, plus the EXPLAIN plans of their queries.

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use ferry_tests::{Backend, eventually, spawn_control_plane};
use std::time::{Duration, Instant};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2)
        .find(|w| w[0] == name)
        .and_then(|w| w[1].parse().ok())
        .unwrap_or(default)
}

fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::main]
async fn main() {
    let services = arg("--services", 10_000);
    let nodes = arg("--nodes", 1_000_000);
    println!("staleness: {nodes} nodes over {services} services, 1% stale, PostgreSQL");
    let cp = spawn_control_plane(Backend::Postgres, |cfg| {
        cfg.jobs.staleness_tick = Duration::from_secs(2)
    })
    .await;
    let url = cp.db.url.clone().expect("postgres");
    let mut c = PgConnection::establish(&url).expect("connect");
    let now = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let started = Instant::now();
    // Node i belongs to service i % services. Every 100th node is stale, rotating over
    // the three reasons; everyone else acked, seen recently, with a certificate valid
    // for hours. The 100,000 past deliveries spread over the last 24 hours (about
    // 4,200 in the last hour).
    // A bulk load: the node-count triggers are skipped (as `pg_restore` would) and the
    // counters set once from the rows, then VACUUM leaves the steady state autovacuum
    // keeps in production.
    c.batch_execute(&format!(
        "SET session_replication_role = replica;
         INSERT INTO services (name, tenant, cert_ttl_seconds, renew_before_seconds, key_type, key_mode,
             stale_after_seconds, grace_seconds, alert_before_seconds, created_at, updated_at)
         SELECT 'svc-' || g, 'default', 3600, 1200, 'ecdsa-p256', 'central', 165, 120, 600, {now}, {now}
         FROM generate_series(0, {services} - 1) g;
         INSERT INTO nodes (service, node_id, state, identity_serial, identity_not_after, enrolled_at, last_seen,
             desired_version, acked_version, cert_not_after, desired_at, unseen_at, renew_at)
         SELECT 'svc-' || (g % {services}), 'node-' || g, 'active', md5(g::text), {now} + 86400000, {now}, {now},
             CASE WHEN g % 300 = 0 THEN 3 ELSE 2 END,
             2,
             CASE WHEN g % 300 = 200 THEN {now} + 60000 ELSE {now} + 3000000 END,
             {now} - 600000,
             CASE WHEN g % 300 = 100 THEN {now} - 1000 ELSE {now} + 165000 END,
             {now} + 1800000 + (g % 600000)
         FROM generate_series(0, {nodes} - 1) g;
         INSERT INTO deliveries (id, service, node_id, state, version, created_at, issued_at, finished_at)
         SELECT 'd-' || g, 'svc-' || (g % {services}), 'node-' || g, 'delivered', 2, {now} - g * 864, {now} - g * 864, {now} - g * 864 + 8
         FROM generate_series(0, 99999) g;
         SET session_replication_role = DEFAULT;
         UPDATE services SET node_count = c.n
         FROM (SELECT service, count(*) AS n FROM nodes GROUP BY service) c WHERE c.service = services.name;"
    ))
    .expect("seed");
    c.batch_execute("VACUUM ANALYZE").expect("vacuum");
    println!("seeded in {:.1} s", started.elapsed().as_secs_f64());

    // The first pass fires ~1% of the fleet; the next ones are steady state.
    let api = cp.admin();
    let scrape = || {
        let (client, url, token) = (
            api.client.clone(),
            format!("{}/metrics", cp.url),
            cp.admin_token.clone(),
        );
        async move {
            client
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()
        }
    };
    let firing = eventually(
        "the first detector pass",
        Duration::from_secs(600),
        || async {
            metric(&scrape().await?, "ferry_alerts{state=\"firing\"}").filter(|n| *n > 0.0)
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let text = scrape().await.expect("metrics");
    let pass = metric(&text, "ferry_job_last_pass_seconds{job=\"staleness\"}").expect("pass time");
    println!("firing alerts after the first pass: {firing}");
    println!(
        "detector pass (steady state, from /metrics): {:.1} ms",
        pass * 1000.0
    );

    let mut status_ms = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        assert_eq!(api.get("/v1/status").await.status, 200);
        status_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    status_ms.sort_by(f64::total_cmp);
    println!("GET /v1/status: median {:.1} ms (5 runs)", status_ms[2]);

    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(cp.ca_pem.as_bytes()).expect("pem")])
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let login = client
        .post(format!("{}/dashboard/login", cp.url))
        .form(&[("token", cp.admin_token.as_str())])
        .send()
        .await
        .expect("login");
    let cookie = login
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .map(|c| c.split(';').next().unwrap_or("").to_owned());
    let cookie = cookie.expect("session cookie");
    let mut page_ms = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let r = client
            .get(format!("{}/dashboard", cp.url))
            .header("cookie", &cookie)
            .send()
            .await
            .expect("page");
        assert_eq!(r.status(), 200);
        let _ = r.text().await;
        page_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    page_ms.sort_by(f64::total_cmp);
    println!("GET /dashboard: median {:.1} ms (5 runs)", page_ms[2]);

    let plans = [
        (
            "detector: lagging",
            format!(
                "SELECT n.service, n.node_id FROM nodes n JOIN services s ON s.name = n.service WHERE n.acked_version < n.desired_version AND n.desired_at < {now}"
            ),
        ),
        (
            "detector: unseen",
            format!("SELECT service, node_id FROM nodes WHERE unseen_at < {now}"),
        ),
        (
            "detector: expiring",
            format!(
                "SELECT n.service, n.node_id FROM nodes n JOIN services s ON s.name = n.service WHERE n.cert_not_after < {now} + 600000"
            ),
        ),
        (
            "status: node counters",
            "SELECT name, node_count, cert_ttl_seconds, renew_before_seconds FROM services ORDER BY name".to_owned(),
        ),
        (
            "status: pending",
            "SELECT service, node_id FROM nodes WHERE acked_version < desired_version".to_owned(),
        ),
        (
            "status: no certificate yet",
            "SELECT service, node_id FROM nodes WHERE cert_not_after IS NULL".to_owned(),
        ),
        (
            "status: valid beyond 24 h",
            format!("SELECT service, count(*) FROM nodes WHERE cert_not_after >= {now} + 86400000 GROUP BY service"),
        ),
        (
            "status: deliveries in the last hour",
            format!("SELECT service, count(*) FROM deliveries WHERE created_at > {now} - 3600000 GROUP BY service"),
        ),
        (
            "status: firing alerts",
            "SELECT * FROM alerts WHERE state = 'firing'".to_owned(),
        ),
        (
            "metrics: soonest expiry per service",
            "SELECT s.name, (SELECT min(n.cert_not_after) FROM nodes n WHERE n.service = s.name) FROM services s".to_owned(),
        ),
        (
            "dashboard: recent deliveries",
            "SELECT * FROM deliveries ORDER BY created_at DESC LIMIT 20".to_owned(),
        ),
    ];
    #[derive(QueryableByName)]
    struct Plan {
        #[diesel(sql_type = diesel::sql_types::Text, column_name = "QUERY PLAN")]
        line: String,
    }
    for (what, sql) in plans {
        println!("\nEXPLAIN ({what}): {sql}");
        let rows: Vec<Plan> = diesel::sql_query(format!("EXPLAIN (ANALYZE, COSTS OFF) {sql}"))
            .load(&mut c)
            .expect("explain");
        for r in rows {
            println!("  {}", r.line);
        }
    }
    let mut cp = cp;
    cp.stop().await;
}
