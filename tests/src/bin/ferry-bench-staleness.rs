//! `ferry-bench-staleness`: the database paths of a large fleet. Seeds SERVICES services
//! and NODES nodes straight into PostgreSQL (1% stale: lagging, unseen or expiring; 1%
//! of the nodes in one big service, `svc-0`, so its node list has many pages), lets a
//! control plane run its detector, and times against the < 50 ms target:
//!
//! - a steady-state detector pass (from /metrics);
//! - one renewal scheduler pick (`store::nodes::due_for_renewal`, the real function,
//!   with every node due: the worst case);
//! - `GET /v1/status`: the first page, a later page through `next_cursor`, one service;
//! - `GET /v1/services/svc-0/nodes?limit=100`: the first page and every later page;
//! - `GET /dashboard`;
//!
//! then prints the EXPLAIN ANALYZE plans of the queries behind them and a table of every
//! figure next to its target. Each figure is also printed as `figure <key> <ms> ms`.
//! `--smoke` (50 services, 5,000 nodes) finishes in seconds and is run by the tests.

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use ferry_control_plane::store::{self, Store};
use ferry_tests::{Backend, eventually, spawn_control_plane};
use std::time::{Duration, Instant};

/// Every path's target, in milliseconds (issue 9).
const TARGET_MS: f64 = 50.0;
/// Nodes the renewal scheduler picks per transaction (`jobs::renewal::BATCH`).
const RENEWAL_BATCH: i64 = ferry_control_plane::jobs::renewal::BATCH;
/// Timed calls per figure; the median is reported.
const RUNS: usize = 7;

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

fn median(mut ms: Vec<f64>) -> f64 {
    ms.sort_by(f64::total_cmp);
    ms[ms.len() / 2]
}

/// The figures measured, in the order they are reported.
#[derive(Default)]
struct Report(Vec<(&'static str, &'static str, f64)>);

impl Report {
    fn add(&mut self, key: &'static str, what: &'static str, ms: f64) {
        println!("figure {key} {ms:.1} ms");
        self.0.push((key, what, ms));
    }

    fn table(&self) {
        println!("\n| path | measured | target | |\n|---|---|---|---|");
        for (_, what, ms) in &self.0 {
            let verdict = if *ms < TARGET_MS { "ok" } else { "OVER" };
            println!("| {what} | {ms:.1} ms | < {TARGET_MS:.0} ms | {verdict} |");
        }
    }
}

/// Times `RUNS` calls of `f` and returns the median in milliseconds.
async fn timed<F, Fut>(mut f: F) -> f64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut ms = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        f().await;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    median(ms)
}

/// Node `g` belongs to service `g % services`, except the first 1%, which make `svc-0`
/// big. Every 100th node is stale, rotating over the three reasons; everyone else
/// acked, seen recently, with a certificate valid for hours and a renewal 30-40 minutes
/// away. The 100,000 past deliveries spread over the last 24 hours (about 4,200 in the
/// last hour). A bulk load: the node-count triggers are skipped (as `pg_restore` would)
/// and the counters set once from the rows, then VACUUM leaves the steady state
/// autovacuum keeps in production.
fn seed(c: &mut PgConnection, services: u64, nodes: u64, now: i64) {
    let big = nodes / 100;
    c.batch_execute(&format!(
        "SET session_replication_role = replica;
         INSERT INTO services (name, tenant, cert_ttl_seconds, renew_before_seconds, key_type, key_mode,
             stale_after_seconds, grace_seconds, alert_before_seconds, created_at, updated_at)
         SELECT 'svc-' || g, 'default', 3600, 1200, 'ecdsa-p256', 'central', 165, 120, 600, {now}, {now}
         FROM generate_series(0, {services} - 1) g;
         INSERT INTO nodes (service, node_id, state, identity_serial, identity_not_after, enrolled_at, last_seen,
             desired_version, acked_version, cert_not_after, desired_at, unseen_at, renew_at)
         SELECT CASE WHEN g < {big} THEN 'svc-0' ELSE 'svc-' || (g % {services}) END,
             'node-' || g, 'active', md5(g::text), {now} + 86400000, {now}, {now},
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
}

#[tokio::main]
async fn main() {
    let smoke = std::env::args().any(|a| a == "--smoke");
    let services = arg("--services", if smoke { 50 } else { 10_000 });
    let nodes = arg("--nodes", if smoke { 5_000 } else { 1_000_000 });
    println!("staleness: {nodes} nodes over {services} services, 1% stale, PostgreSQL");
    let cp = spawn_control_plane(Backend::Postgres, |cfg| {
        cfg.jobs.staleness_tick = Duration::from_secs(2)
    })
    .await;
    let url = cp.db.url.clone().expect("postgres");
    let mut c = PgConnection::establish(&url).expect("connect");
    let now = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let started = Instant::now();
    seed(&mut c, services, nodes, now);
    println!("seeded in {:.1} s", started.elapsed().as_secs_f64());
    let mut report = Report::default();

    // The first pass fires ~1% of the fleet; the next ones are steady state.
    let api = cp.admin();
    let scrape = || {
        let (client, url, token) = (
            api.client.clone(),
            format!("{}/metrics", cp.url),
            cp.admin_token.clone(),
        );
        async move {
            let r = client.get(url).bearer_auth(token).send().await.ok()?;
            r.text().await.ok()
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
    // What autovacuum does within a minute of such a burst of alerts in production:
    // the alert indexes become index-only (no heap fetches) again.
    c.batch_execute("VACUUM ANALYZE alerts, alert_events")
        .expect("vacuum");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let text = scrape().await.expect("metrics");
    let pass = metric(&text, "ferry_job_last_pass_seconds{job=\"staleness\"}").expect("pass time");
    println!("firing alerts after the first pass: {firing}");
    report.add(
        "detector.pass",
        "detector pass (steady state)",
        pass * 1000.0,
    );

    // The renewal scheduler's claim at a time when every node is due: the index must
    // still stop at one batch. Each claim moves its 200 nodes' `renew_at` past the
    // pretend time, so the next call claims the next 200.
    let db = Store::open(Some(&url), std::path::Path::new("unused.sqlite"), 2).expect("store");
    let all_due = now + 1_800_000 + 600_000;
    let pick = timed(|| {
        let db = db.clone();
        async move {
            let due = db
                .write(move |c| {
                    Ok::<_, store::StoreError>(store::nodes::claim_due(
                        c,
                        all_due,
                        RENEWAL_BATCH,
                        all_due + 10_000,
                    )?)
                })
                .await
                .expect("pick");
            assert_eq!(due.len() as i64, RENEWAL_BATCH.min(nodes as i64));
        }
    })
    .await;
    report.add(
        "renewal.pick",
        "renewal scheduler claim (every node due)",
        pick,
    );

    let get = |path: String| {
        let api = &api;
        async move {
            let r = api.get(&path).await;
            assert_eq!(r.status, 200, "{path}: {}", r.body);
            r.body
        }
    };
    let first = get("/v1/status".into()).await;
    let fleet_nodes = first["fleet"]["nodes"].as_i64().expect("fleet nodes");
    assert_eq!(
        fleet_nodes, nodes as i64,
        "the fleet line counts every node"
    );
    let status = timed(|| async {
        get("/v1/status".into()).await;
    })
    .await;
    report.add("status.first", "GET /v1/status (first page of 100)", status);
    let cursor = first["next_cursor"].as_str().map(str::to_owned);
    if let Some(cursor) = cursor {
        let path = format!("/v1/status?cursor={cursor}");
        let later = timed(|| async {
            get(path.clone()).await;
        })
        .await;
        report.add("status.later", "GET /v1/status (second page)", later);
    }
    let one = timed(|| async {
        get("/v1/status?service=svc-42".into()).await;
    })
    .await;
    report.add("status.service", "GET /v1/status?service=svc-42", one);

    // The big service's node list: the first page, then every later page in turn.
    let nodes_path = "/v1/services/svc-0/nodes?limit=100";
    let node_first = timed(|| async {
        get(nodes_path.into()).await;
    })
    .await;
    report.add(
        "nodes.first",
        "GET .../svc-0/nodes?limit=100 (first page)",
        node_first,
    );
    let mut later = Vec::new();
    let mut cursor = get(nodes_path.into()).await["next_cursor"]
        .as_str()
        .map(str::to_owned);
    while let Some(c) = cursor {
        let t = Instant::now();
        let page = get(format!("{nodes_path}&cursor={c}")).await;
        later.push(t.elapsed().as_secs_f64() * 1000.0);
        cursor = page["next_cursor"].as_str().map(str::to_owned);
    }
    println!("node pages after the first: {}", later.len());
    if !later.is_empty() {
        let worst = later.iter().copied().fold(0.0, f64::max);
        report.add(
            "nodes.later",
            "GET .../svc-0/nodes (later pages, median)",
            median(later),
        );
        report.add(
            "nodes.later.max",
            "GET .../svc-0/nodes (later pages, slowest)",
            worst,
        );
    }

    let dashboard = dashboard_ms(&cp).await;
    report.add("dashboard", "GET /dashboard", dashboard);

    // The fleet line's statement exactly as the store sends it, binds and all.
    let fleet = store::status::postgres_statement();
    c.batch_execute(&format!("PREPARE fleet(bigint, bigint) AS {fleet}"))
        .expect("prepare");
    let (day, hour) = (now + 86_400_000, now - 3_600_000);
    let mut plans = vec![(
        "status: fleet line (one statement)",
        format!("EXECUTE fleet({day}, {hour})"),
    )];
    println!("\nstatus: fleet line statement: {fleet}");
    // The detector's statement, as the store sends it, with the pass's own binds.
    let share = ferry_control_plane::jobs::JobSettings::default().stale_share;
    let before: i64 = diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
        "CAST(COALESCE(MAX(alert_before_seconds), 0) * 1000 AS BIGINT) FROM services",
    ))
    .get_result(&mut c)
    .expect("largest alert_before");
    let detector = store::staleness::postgres_statement();
    c.batch_execute(&format!(
        "PREPARE detector(bigint, bigint, double precision) AS {detector}"
    ))
    .expect("prepare");
    let horizon = now + before;
    plans.push((
        "staleness detector: what to fire and to resolve (one statement)",
        format!("EXECUTE detector({now}, {horizon}, {share})"),
    ));
    let page_names: Vec<String> = (0..100).map(|i| format!("'svc-{i}'")).collect();
    plans.extend(queries(now, all_due, &page_names.join(",")));
    for (what, sql) in plans {
        println!("\nEXPLAIN ({what}): {sql}");
        #[derive(QueryableByName)]
        struct Plan {
            #[diesel(sql_type = diesel::sql_types::Text, column_name = "QUERY PLAN")]
            line: String,
        }
        let rows: Vec<Plan> = diesel::sql_query(format!("EXPLAIN (ANALYZE, COSTS OFF) {sql}"))
            .load(&mut c)
            .expect("explain");
        for r in rows {
            println!("  {}", r.line);
        }
    }
    report.table();
    let mut cp = cp;
    cp.stop().await;
}

/// The median time of `GET /dashboard` with a signed-in admin session.
async fn dashboard_ms(cp: &ferry_tests::ControlPlane) -> f64 {
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
        .and_then(|c| c.split(';').next())
        .map(str::to_owned)
        .expect("session cookie");
    timed(|| async {
        let r = client
            .get(format!("{}/dashboard", cp.url))
            .header("cookie", &cookie)
            .send()
            .await
            .expect("page");
        assert_eq!(r.status(), 200);
        let _ = r.text().await;
    })
    .await
}

/// The queries behind the figures, as the store sends them (literals for binds); `page`
/// is the quoted names of 100 services (one page's worth).
fn queries(now: i64, all_due: i64, page: &str) -> Vec<(&'static str, String)> {
    let (day, hour) = (now + 86_400_000, now - 3_600_000);
    vec![
        ("detector: lagging", format!("SELECT n.service, n.node_id FROM nodes n JOIN services s ON s.name = n.service WHERE n.acked_version < n.desired_version AND n.desired_at < {now}")),
        ("detector: unseen", format!("SELECT service, node_id FROM nodes WHERE unseen_at < {now}")),
        ("detector: expiring", format!("SELECT n.service, n.node_id FROM nodes n JOIN services s ON s.name = n.service WHERE n.cert_not_after < {now} + 600000")),
        ("renewal: pick (every node due; the select inside the claim)", format!("SELECT service, node_id FROM nodes WHERE renew_at <= {all_due} ORDER BY renew_at LIMIT {RENEWAL_BATCH} FOR UPDATE SKIP LOCKED")),
        ("status page: services", "SELECT name, node_count, cert_ttl_seconds, renew_before_seconds FROM services WHERE name > '' ORDER BY name LIMIT 101".to_owned()),
        ("status page: unsettled nodes", format!("SELECT service, node_id FROM nodes WHERE (acked_version < desired_version OR cert_not_after IS NULL) AND service = ANY(ARRAY[{page}])")),
        ("status page: firing alerts", format!("SELECT service, node_id, reason FROM alerts WHERE state = 'firing' AND service = ANY(ARRAY[{page}])")),
        ("status page: no certificate yet", format!("SELECT service, count(*) FROM nodes WHERE cert_not_after IS NULL AND service = ANY(ARRAY[{page}]) GROUP BY service")),
        ("status page: valid beyond 24 h", format!("SELECT service, count(*) FROM nodes WHERE cert_not_after >= {day} AND service = ANY(ARRAY[{page}]) GROUP BY service")),
        ("status page: deliveries in the last hour", format!("SELECT service, count(*) FROM deliveries WHERE created_at > {hour} AND service = ANY(ARRAY[{page}]) GROUP BY service")),
        ("node page: first page", "SELECT * FROM nodes WHERE service = 'svc-0' AND node_id > '' ORDER BY node_id LIMIT 101".to_owned()),
        ("node page: a later page", "SELECT * FROM nodes WHERE service = 'svc-0' AND node_id > 'node-5000' ORDER BY node_id LIMIT 101".to_owned()),
        ("metrics: soonest expiry per service", "SELECT s.name, (SELECT min(n.cert_not_after) FROM nodes n WHERE n.service = s.name) FROM services s".to_owned()),
        ("dashboard: recent deliveries", "SELECT * FROM deliveries ORDER BY created_at DESC LIMIT 20".to_owned()),
    ]
}
