//! packaging/monitoring: every metric that the alert rules, their promtool unit tests and
//! the Grafana dashboard name is one that `/metrics` really exports, selected by labels it
//! really carries. A renamed metric or label makes this fail instead of leaving an alert
//! that can never fire or a panel that stays empty.

mod promql;

use ferry_tests::agent::spawn_agent;
use ferry_tests::{Backend, eventually, spawn_control_plane};
use promql::{Exported, Selector, selectors};
use serde::Deserialize;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../packaging/monitoring");

fn read(file: &str) -> String {
    std::fs::read_to_string(format!("{DIR}/{file}")).unwrap_or_else(|e| panic!("{file}: {e}"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    groups: Vec<RuleGroup>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleGroup {
    name: String,
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    alert: String,
    expr: String,
    #[serde(rename = "for")]
    _for: Option<String>,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct PromtoolTests {
    tests: Vec<PromtoolTest>,
}

#[derive(Deserialize)]
struct PromtoolTest {
    input_series: Vec<InputSeries>,
}

#[derive(Deserialize)]
struct InputSeries {
    series: String,
}

fn rule_exprs() -> Vec<String> {
    let rules: RuleFile =
        serde_norway::from_str(&read("ferry-alerts.rules.yml")).expect("rules file parses");
    let mut exprs = Vec::new();
    for g in rules.groups {
        assert!(!g.rules.is_empty(), "group {} has no rules", g.name);
        for r in g.rules {
            let severity = r.labels.get("severity").map(String::as_str);
            assert!(
                matches!(severity, Some("warning" | "critical")),
                "{}: severity {severity:?}",
                r.alert
            );
            for a in ["summary", "description"] {
                assert!(r.annotations.contains_key(a), "{}: no {a}", r.alert);
            }
            exprs.push(r.expr);
        }
    }
    exprs
}

fn promtool_series() -> Vec<String> {
    let tests: PromtoolTests =
        serde_norway::from_str(&read("ferry-alerts.test.yml")).expect("promtool tests parse");
    tests
        .tests
        .into_iter()
        .flat_map(|t| t.input_series.into_iter().map(|s| s.series))
        .collect()
}

/// Every `expr` of the dashboard, plus the selectors inside its variables'
/// `label_values(selector, label)` definitions.
fn dashboard_exprs() -> Vec<String> {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v.as_str()) {
                        ("expr", Some(e)) => out.push(e.to_owned()),
                        ("definition", Some(d)) => {
                            let inner = d
                                .strip_prefix("label_values(")
                                .and_then(|r| r.rsplit_once(','))
                                .map(|(sel, _)| sel.to_owned());
                            out.push(inner.unwrap_or_else(|| panic!("variable query {d}")));
                        }
                        _ => walk(v, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let dash: serde_json::Value =
        serde_json::from_str(&read("ferry-grafana-dashboard.json")).expect("dashboard is JSON");
    assert_eq!(
        dash["__inputs"][0]["name"], "DS_PROMETHEUS",
        "the datasource is an import input"
    );
    let mut ids = BTreeSet::new();
    for p in dash["panels"].as_array().expect("panels") {
        assert!(
            ids.insert(p["id"].as_u64().expect("id")),
            "duplicate panel id"
        );
        if p["type"] != "row" {
            assert_eq!(p["datasource"]["uid"], "${DS_PROMETHEUS}", "{}", p["title"]);
        }
    }
    let mut out = Vec::new();
    walk(&dash, &mut out);
    out
}

fn names(exprs: &[String]) -> BTreeSet<String> {
    exprs
        .iter()
        .flat_map(|e| selectors(e))
        .map(|s| s.name)
        .collect()
}

#[tokio::test]
async fn monitoring_files_use_only_exported_metrics_and_labels() {
    let rules = rule_exprs();
    let dashboard = dashboard_exprs();
    let series = promtool_series();
    // The extraction must find what the files are about, not silently nothing.
    assert!(names(&rules).len() >= 8, "rules: {:?}", names(&rules));
    assert!(
        names(&dashboard).len() >= 12,
        "dashboard: {:?}",
        names(&dashboard)
    );
    assert!(
        names(&series).len() >= 8,
        "promtool tests: {:?}",
        names(&series)
    );

    // Enough activity that every family the files use has samples: two enrolled nodes,
    // a delivered refresh, and one node gone silent so an alert fires.
    let cp = spawn_control_plane(Backend::Postgres, |cfg| {
        cfg.presence_linger = Duration::from_secs(1);
        cfg.max_poll_wait = Duration::from_secs(5);
        cfg.jobs.staleness_tick = Duration::from_millis(300);
    })
    .await;
    cp.create_service(
        "web",
        json!({ "cert_ttl_seconds": 600, "stale_after_seconds": 10 }),
    )
    .await;
    let (token, _) = cp.join_token("web", 2, 600).await;
    let quick = |cfg: &mut ferry_agent::AgentConfig| cfg.poll_wait = Duration::from_secs(2);
    let _n1 = spawn_agent(&cp, "web", "n1", &token, quick).await;
    let mut quiet = spawn_agent(&cp, "web", "quiet", &token, quick).await;
    eventually("both nodes installed", Duration::from_secs(30), || async {
        (cp.admin().get("/v1/status").await.body["services"][0]["ok"] == 2).then_some(())
    })
    .await;
    let r = cp
        .admin()
        .post("/v1/services/web/nodes/n1/refresh", json!({}))
        .await;
    let id = r.body["delivery_id"]
        .as_str()
        .expect("delivery id")
        .to_owned();
    eventually("delivered", Duration::from_secs(30), || async {
        (cp.admin().get(&format!("/v1/deliveries/{id}")).await.body["state"] == "delivered")
            .then_some(())
    })
    .await;
    quiet.stop().await;

    let client = cp.admin().client;
    let text = eventually(
        "an alert fires for the silent node",
        Duration::from_secs(40),
        || {
            let req = client
                .get(format!("{}/metrics", cp.url))
                .bearer_auth(&cp.admin_token);
            async move {
                let text = req.send().await.ok()?.text().await.ok()?;
                text.contains("ferry_alerts{state=\"firing\"}")
                    .then_some(text)
            }
        },
    )
    .await;
    let exported = Exported::parse(&text);
    assert!(exported.families.len() >= 10, "{text}");

    let mut problems = Vec::new();
    for (file, exprs, queries) in [
        ("ferry-alerts.rules.yml", &rules, true),
        ("ferry-grafana-dashboard.json", &dashboard, true),
        ("ferry-alerts.test.yml", &series, false),
    ] {
        let sels: Vec<Selector> = exprs.iter().flat_map(|e| selectors(e)).collect();
        problems.extend(exported.problems(file, &sels, queries));
    }
    problems.dedup();
    assert!(
        problems.is_empty(),
        "packaging/monitoring names series /metrics does not export:\n  {}\n\n/metrics:\n{text}",
        problems.join("\n  ")
    );
}
