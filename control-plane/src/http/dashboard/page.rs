//! The dashboard's HTML, written by hand: every value from the store goes through
//! [`esc`]; styles are inline; nothing is loaded from elsewhere. Key numbers carry
//! stable `id`s and `data-*` attributes so tests and scripts can read them.

use crate::http::alerts::ServiceStatus;
use crate::store::alerts::AlertRow;
use crate::store::dashboard::RotationProgress;
use crate::store::deliveries::DeliveryRow;
use axum::http::StatusCode;
use std::fmt::Write;

/// Everything the dashboard shows, read once per request.
pub struct View {
    pub now_ms: i64,
    pub fleet: ServiceStatus,
    pub services: Vec<ServiceStatus>,
    pub alerts: Vec<AlertRow>,
    pub deliveries: Vec<DeliveryRow>,
    pub rotations: Vec<RotationProgress>,
}

/// Escapes text for HTML element content and double-quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Rows of the services table; the rest are counted below it.
const SERVICE_ROWS: usize = 200;

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}\
header{display:flex;justify-content:space-between;align-items:center;padding:10px 24px;background:#1d2330;color:#fff}\
header form{margin:0}main{padding:16px 24px;max-width:1200px}h1{font-size:18px;margin:0}\
h2{font-size:15px;margin:24px 0 8px}table{border-collapse:collapse;width:100%;background:#fff}\
th,td{padding:5px 10px;border-bottom:1px solid #e3e6eb;text-align:left}th{background:#eef0f4;font-weight:600}\
td.n{text-align:right;font-variant-numeric:tabular-nums}.cards{display:flex;gap:12px;flex-wrap:wrap}\
.card{background:#fff;border:1px solid #e3e6eb;border-radius:6px;padding:10px 16px;min-width:110px}\
.card span{display:block;font-size:24px;font-weight:600}.bad{color:#b3261e}.warn{color:#9a6700}.good{color:#1a7f37}\
.empty{color:#6b7280;font-style:italic}button{cursor:pointer}.err{color:#b3261e}\
.box{max-width:380px;margin:80px auto;background:#fff;padding:24px;border:1px solid #e3e6eb;border-radius:6px}\
input[type=password]{width:100%;box-sizing:border-box;padding:6px;margin:8px 0}";

fn layout(title: &str, refresh: bool, body: &str) -> String {
    let meta = if refresh {
        r#"<meta http-equiv="refresh" content="10">"#
    } else {
        ""
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">{meta}\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{}</title>\
         <style>{STYLE}</style></head><body>{body}</body></html>",
        esc(title)
    )
}

/// The sign-in form, with `error` above it after a refused attempt.
pub fn login(error: Option<&str>) -> String {
    let error = error
        .map(|e| format!(r#"<p class="err" id="login-error">{}</p>"#, esc(e)))
        .unwrap_or_default();
    let body = format!(
        r#"<div class="box"><h1>Ferry dashboard</h1>{error}
<form method="post" action="/dashboard/login" id="login">
<label for="token">Admin token</label>
<input type="password" id="token" name="token" autocomplete="off" required autofocus>
<button type="submit">Sign in</button></form></div>"#
    );
    layout("Sign in · Ferry", false, &body)
}

/// An error page.
pub fn error(status: StatusCode, detail: &str) -> String {
    let title = status.canonical_reason().unwrap_or("Error");
    let body = format!(
        r#"<div class="box"><h1>{} {}</h1><p id="error-detail">{}</p><p><a href="/dashboard">Dashboard</a></p></div>"#,
        status.as_u16(),
        esc(title),
        esc(detail)
    );
    layout(title, false, &body)
}

/// `2026-11-24 10:31:05Z` from unix milliseconds.
fn when(ms: i64) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]Z");
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_else(|| ms.to_string())
}

/// `3d 4h`, `6m 40s`: the two largest units.
fn span(seconds: i64) -> String {
    let s = seconds.max(0);
    let (d, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{sec}s"),
        (0, 0, _) => format!("{m}m {sec}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

fn card(out: &mut String, id: &str, label: &str, value: i64, class: &str) {
    let _ = write!(
        out,
        r#"<div class="card">{label}<span id="{id}" class="{class}">{value}</span></div>"#
    );
}

/// `bad` when non-zero, for numbers that need attention.
fn alarm(n: i64) -> &'static str {
    if n > 0 { "bad" } else { "" }
}

fn summary(out: &mut String, v: &View) {
    let f = &v.fleet;
    out.push_str(r#"<section class="cards" id="fleet">"#);
    card(
        out,
        "fleet-services",
        "services",
        v.services.len() as i64,
        "",
    );
    card(out, "fleet-nodes", "nodes", f.nodes, "");
    card(out, "fleet-ok", "ok", f.ok, "good");
    card(
        out,
        "fleet-pending",
        "pending",
        f.pending,
        if f.pending > 0 { "warn" } else { "" },
    );
    card(out, "fleet-stale", "stale", f.stale, alarm(f.stale));
    card(
        out,
        "fleet-never-enrolled",
        "never enrolled",
        f.never_enrolled,
        if f.never_enrolled > 0 { "warn" } else { "" },
    );
    // With hour-long certificates every node's expires within 24 h: informative only.
    card(out, "fleet-expiring", "expiring 24 h", f.expiring_24h, "");
    card(
        out,
        "fleet-expiring-alert",
        "inside alert_before",
        f.expiring_alert_before,
        alarm(f.expiring_alert_before),
    );
    card(
        out,
        "fleet-firing",
        "firing alerts",
        f.firing_alerts,
        alarm(f.firing_alerts),
    );
    card(
        out,
        "fleet-deliveries",
        "deliveries 1 h",
        f.deliveries_last_hour,
        "",
    );
    out.push_str("</section>");
}

fn services(out: &mut String, v: &View) {
    out.push_str(
        r#"<h2>Services</h2><table id="services"><thead><tr><th>service</th><th>nodes</th><th>ok</th><th>pending</th><th>stale</th><th>expiring 24 h</th><th>inside alert_before</th><th>firing alerts</th><th>outage budget</th></tr></thead><tbody>"#,
    );
    // Services that need attention first; a fleet of thousands shows its worst rows.
    let mut ordered: Vec<&ServiceStatus> = v.services.iter().collect();
    ordered.sort_by_key(|s| {
        (
            std::cmp::Reverse((s.stale, s.expiring_alert_before, s.pending, s.firing_alerts)),
            s.service.as_str(),
        )
    });
    for s in ordered.iter().take(SERVICE_ROWS) {
        let name = esc(&s.service);
        let _ = write!(out, r#"<tr data-service-row="{name}"><td>{name}</td>"#);
        for (field, n, class) in [
            ("nodes", s.nodes, ""),
            ("ok", s.ok, "good"),
            (
                "pending",
                s.pending,
                if s.pending > 0 { "warn" } else { "" },
            ),
            ("stale", s.stale, alarm(s.stale)),
            ("expiring_24h", s.expiring_24h, ""),
            (
                "expiring_alert_before",
                s.expiring_alert_before,
                alarm(s.expiring_alert_before),
            ),
            ("firing_alerts", s.firing_alerts, alarm(s.firing_alerts)),
        ] {
            let _ = write!(
                out,
                r#"<td class="n {class}" data-service="{name}" data-field="{field}">{n}</td>"#
            );
        }
        let _ = write!(
            out,
            r#"<td class="n" data-service="{name}" data-field="outage_budget" data-seconds="{}">{}</td></tr>"#,
            s.outage_budget_seconds,
            span(s.outage_budget_seconds)
        );
    }
    if v.services.is_empty() {
        out.push_str(r#"<tr><td colspan="9" class="empty">No services yet.</td></tr>"#);
    }
    if let Some(more) = v
        .services
        .len()
        .checked_sub(SERVICE_ROWS)
        .filter(|n| *n > 0)
    {
        let _ = write!(
            out,
            r#"<tr><td colspan="9" class="empty" id="services-more">{more} more services, none worse than the last row (see GET /v1/status).</td></tr>"#
        );
    }
    out.push_str("</tbody></table>");
}

fn alerts(out: &mut String, v: &View) {
    out.push_str(
        r#"<h2>Firing alerts</h2><table id="alerts"><thead><tr><th>service</th><th>node</th><th>reason</th><th>detail</th><th>firing for</th></tr></thead><tbody>"#,
    );
    for a in &v.alerts {
        let node = if a.node_id.is_empty() {
            "(service)".to_owned()
        } else {
            esc(&a.node_id)
        };
        let _ = write!(
            out,
            r#"<tr data-alert="{}" data-service="{}" data-node="{}" data-reason="{}"><td>{}</td><td>{node}</td><td class="bad">{}</td><td>{}</td><td title="{}">{}</td></tr>"#,
            esc(&a.id),
            esc(&a.service),
            esc(&a.node_id),
            esc(&a.reason),
            esc(&a.service),
            esc(&a.reason),
            esc(&a.detail),
            when(a.fired_at),
            span((v.now_ms - a.fired_at) / 1000)
        );
    }
    if v.alerts.is_empty() {
        out.push_str(r#"<tr><td colspan="5" class="empty good">Nothing is firing.</td></tr>"#);
    }
    out.push_str("</tbody></table>");
}

fn rotations(out: &mut String, v: &View) {
    out.push_str(
        r#"<h2>Running rotations</h2><table id="rotations"><thead><tr><th>service</th><th>rotation</th><th>progress</th><th>pending</th><th>queued</th><th>failed</th><th>started</th></tr></thead><tbody>"#,
    );
    for p in &v.rotations {
        let r = &p.rotation;
        let _ = write!(
            out,
            r#"<tr data-rotation="{id}" data-service="{svc}"><td>{svc}</td><td>{id}</td><td><progress max="{total}" value="{done}"></progress> <span data-field="done">{done}</span>/<span data-field="total">{total}</span></td><td class="n">{}</td><td class="n">{}</td><td class="n {}">{}</td><td>{}</td></tr>"#,
            p.pending,
            p.queued,
            alarm(p.failed),
            p.failed,
            when(r.created_at),
            id = esc(&r.id),
            svc = esc(&r.service),
            total = r.total,
            done = p.finished(),
        );
    }
    if v.rotations.is_empty() {
        out.push_str(r#"<tr><td colspan="7" class="empty">No rotation is running.</td></tr>"#);
    }
    out.push_str("</tbody></table>");
}

fn deliveries(out: &mut String, v: &View) {
    out.push_str(
        r#"<h2>Recent deliveries</h2><table id="deliveries"><thead><tr><th>created</th><th>service</th><th>node</th><th>kind</th><th>state</th><th>version</th><th>error</th></tr></thead><tbody>"#,
    );
    for d in &v.deliveries {
        let kind = if d.rotation_id.is_some() {
            "rotation"
        } else {
            "refresh"
        };
        let class = match d.state.as_str() {
            "delivered" => "good",
            "failed" => "bad",
            _ => "warn",
        };
        let _ = write!(
            out,
            r#"<tr data-delivery="{}" data-service="{}" data-node="{}" data-state="{}"><td>{}</td><td>{}</td><td>{}</td><td>{kind}</td><td class="{class}">{}</td><td class="n">{}</td><td>{}</td></tr>"#,
            esc(&d.id),
            esc(&d.service),
            esc(&d.node_id),
            esc(&d.state),
            when(d.created_at),
            esc(&d.service),
            esc(&d.node_id),
            esc(&d.state),
            d.version.map(|v| v.to_string()).unwrap_or_default(),
            esc(d.error.as_deref().unwrap_or("")),
        );
    }
    if v.deliveries.is_empty() {
        out.push_str(r#"<tr><td colspan="7" class="empty">No deliveries yet.</td></tr>"#);
    }
    out.push_str("</tbody></table>");
}

/// The dashboard page; the browser reloads it every 10 s.
pub fn dashboard(v: &View) -> String {
    let mut body = format!(
        r#"<header><h1>Ferry fleet</h1><div><span id="generated-at">{}</span>
<form method="post" action="/dashboard/logout" style="display:inline"><button type="submit" id="logout">Sign out</button></form></div></header><main>"#,
        when(v.now_ms)
    );
    summary(&mut body, v);
    services(&mut body, v);
    alerts(&mut body, v);
    rotations(&mut body, v);
    deliveries(&mut body, v);
    body.push_str("</main>");
    layout("Ferry dashboard", true, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_values_is_escaped() {
        assert_eq!(
            esc(r#"<script>"a"&'b'"#),
            "&lt;script&gt;&quot;a&quot;&amp;&#39;b&#39;"
        );
    }

    #[test]
    fn spans_show_two_units() {
        assert_eq!(span(400), "6m 40s");
        assert_eq!(span(90_000), "1d 1h");
        assert_eq!(span(-5), "0s");
    }
}
