//! The OpenAPI document and the router, held to each other (tests only).
//!
//! axum cannot list a router's routes, so the two directions are checked by two means:
//!
//! - router -> document: `router.rs` is read as text (`include_str!`) and every
//!   `.route(PATH, get(..).post(..)...)` call is parsed into (method, path) pairs; each
//!   must be documented. The parser is strict: anything it does not understand (`any`,
//!   `on`, `nest`, `merge`, a path that is neither a literal nor a `routes::` constant)
//!   fails the test instead of being skipped, so a new route cannot slip past it.
//! - document -> router: the real router (built by `App::build` over SQLite) is sent one
//!   request per documented path and method, without credentials, and must not answer
//!   with its own "no such route" 404 or its 405. Every method the document does *not*
//!   list for a documented path must get the router's 405, which also catches a method
//!   added to an existing path without documentation, whatever the parser reads.
//!
//! The parsed routes are probed the same way, so the parser cannot drift from what
//! axum really serves.

use super::{ApiDoc, BEARER, MUTUAL_TLS};
use crate::config::Config;
use crate::startup::App;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use std::collections::{BTreeMap, BTreeSet};
use tower::ServiceExt;
use utoipa::OpenApi;

/// Routes left out of the document on purpose: the dashboard's HTML pages are a
/// browser UI with its own session cookie, not part of the JSON API.
const UNDOCUMENTED_PREFIXES: &[&str] = &["/dashboard"];

/// The methods probed on every documented path (HEAD follows GET in axum by itself).
const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];

type Route = (String, String);

const ROUTER_SRC: &str = include_str!("../router.rs");
const ROUTE_CONSTANTS_SRC: &str = include_str!("../../../../shared/src/api.rs");

/// (METHOD, path) of every operation in the document.
fn documented() -> BTreeSet<Route> {
    let doc = serde_json::to_value(ApiDoc::openapi()).expect("the document serializes");
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths is an object") {
        for method in item.as_object().expect("a path item is an object").keys() {
            if ["parameters", "summary", "description", "servers"].contains(&method.as_str()) {
                continue;
            }
            out.insert((method.to_uppercase(), path.clone()));
        }
    }
    out
}

/// `pub const NAME: &str = "...";` of `ferry_shared::api::routes`.
fn route_constants() -> BTreeMap<String, String> {
    ROUTE_CONSTANTS_SRC
        .lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("pub const ")?;
            let (name, value) = rest.split_once(": &str = \"")?;
            Some((name.to_owned(), value.strip_suffix("\";")?.to_owned()))
        })
        .collect()
}

/// The text with `//` comments removed (outside string literals).
fn strip_comments(src: &str) -> String {
    src.lines()
        .map(|line| {
            let mut in_str = false;
            let bytes = line.as_bytes();
            for i in 0..bytes.len() {
                match bytes[i] {
                    b'"' if i == 0 || bytes[i - 1] != b'\\' => in_str = !in_str,
                    b'/' if !in_str && bytes.get(i + 1) == Some(&b'/') => return &line[..i],
                    _ => {}
                }
            }
            line
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Splits `s` at `sep` where it is outside parentheses and string literals.
fn split_top(s: &str, sep: char) -> Vec<&str> {
    let (mut depth, mut in_str, mut start, mut parts) = (0i32, false, 0, Vec::new());
    for (i, c) in s.char_indices() {
        match c {
            '"' => in_str = !in_str,
            '(' | '[' | '{' if !in_str => depth += 1,
            ')' | ']' | '}' if !in_str => depth -= 1,
            c if c == sep && depth == 0 && !in_str => {
                parts.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// The text between the `(` at `open` and its matching `)`.
fn parenthesized(s: &str, open: usize) -> &str {
    let inner = &s[open + 1..];
    let (mut depth, mut in_str) = (1, false);
    for (i, c) in inner.char_indices() {
        match c {
            '"' => in_str = !in_str,
            '(' if !in_str => depth += 1,
            ')' if !in_str => {
                depth -= 1;
                if depth == 0 {
                    return &inner[..i];
                }
            }
            _ => {}
        }
    }
    panic!("router.rs: unbalanced parentheses after byte {open}");
}

/// (METHOD, path) of every `.route(..)` call in router.rs.
fn routed() -> BTreeSet<Route> {
    let out = routes_in(ROUTER_SRC);
    assert!(out.len() > 10, "router.rs parsed to only {out:?}");
    out
}

/// (METHOD, path) of every `.route(..)` call in `src`.
fn routes_in(src: &str) -> BTreeSet<Route> {
    let src = strip_comments(src);
    for unsupported in [".nest(", ".merge(", ".route_service(", ".nest_service("] {
        assert!(
            !src.contains(unsupported),
            "router.rs uses `{unsupported}`: teach the OpenAPI coverage parser about it"
        );
    }
    let constants = route_constants();
    let mut out = BTreeSet::new();
    for (at, _) in src.match_indices(".route(") {
        let args = parenthesized(&src, at + ".route".len());
        let parts: Vec<&str> = split_top(args, ',')
            .into_iter()
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        let [path, methods] = parts[..] else {
            panic!("router.rs: cannot read the route `{args}`");
        };
        let path = if let Some(lit) = path.strip_prefix('"') {
            lit.strip_suffix('"')
                .expect("a plain string literal")
                .to_owned()
        } else {
            let name = path.rsplit("routes::").next().unwrap_or(path);
            constants.get(name).cloned().unwrap_or_else(|| {
                panic!("router.rs: path `{path}` is neither a literal nor a routes:: constant")
            })
        };
        for call in split_top(methods, '.') {
            let call = call.trim();
            let name = call.split('(').next().unwrap_or(call);
            let method = name.rsplit("::").next().unwrap_or(name).to_uppercase();
            assert!(
                METHODS.contains(&method.as_str()) && call.ends_with(')'),
                "router.rs: cannot read `{call}` in the route for {path}: use \
                 get/post/put/patch/delete(handler) chains, or teach this parser"
            );
            out.insert((method, path.clone()));
        }
    }
    out
}

fn undocumented_on_purpose(path: &str) -> bool {
    UNDOCUMENTED_PREFIXES.iter().any(|p| path.starts_with(p))
}

/// What the router itself answers for `method path` (placeholders filled in), if it
/// refuses the request before any handler: "no such route" or "method not allowed".
async fn router_refusal(router: &axum::Router, method: &str, path: &str) -> Option<&'static str> {
    let uri: String = path
        .split('/')
        .map(|seg| {
            seg.strip_prefix('{')
                .and_then(|s| s.strip_suffix('}'))
                .map_or(seg, |name| name.trim_start_matches('*'))
        })
        .collect::<Vec<_>>()
        .join("/");
    let req = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).expect("a method"))
        .uri(&uri)
        .body(Body::empty())
        .expect("a request");
    let resp = router.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("a body");
    match status {
        StatusCode::METHOD_NOT_ALLOWED => Some("method not allowed"),
        StatusCode::NOT_FOUND if String::from_utf8_lossy(&body).contains("no such route") => {
            Some("no such route")
        }
        _ => None,
    }
}

#[test]
fn openapi_coverage_parser_reads_chains_and_refuses_the_rest() {
    let src = r#"Router::new()
        // .route("/commented-out", get(x::y))
        .route(routes::HEALTHZ, get(system::healthz))
        .route(
            "/v1/a/{b}",
            get(a::get).patch(a::update)
                .delete(a::delete),
        )
        .route("/v1/c", axum::routing::put(c::put)) // "quoted // comment"
        .fallback(|| async { "no such route" })"#;
    let route = |m: &str, p: &str| (m.to_owned(), p.to_owned());
    let expected = BTreeSet::from([
        route("GET", "/healthz"),
        route("GET", "/v1/a/{b}"),
        route("PATCH", "/v1/a/{b}"),
        route("DELETE", "/v1/a/{b}"),
        route("PUT", "/v1/c"),
    ]);
    assert_eq!(routes_in(src), expected);
    for unreadable in [
        r#".route("/x", any(h))"#,
        r#".route("/x", on(MethodFilter::GET, h))"#,
        r#".route(PATH, get(h))"#,
        r#".nest("/x", other)"#,
    ] {
        let refused = std::panic::catch_unwind(|| routes_in(unreadable));
        assert!(refused.is_err(), "{unreadable} was read");
    }
}

#[test]
fn openapi_documents_every_route_in_router_rs() {
    let documented = documented();
    let missing: Vec<_> = routed()
        .into_iter()
        .filter(|(_, path)| !undocumented_on_purpose(path))
        .filter(|r| !documented.contains(r))
        .collect();
    assert!(
        missing.is_empty(),
        "routes in router.rs without #[utoipa::path] in http/openapi.rs: {missing:?}"
    );
}

#[tokio::test]
async fn openapi_operations_are_exactly_what_the_router_serves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = Config::new(dir.path());
    cfg.listen = "127.0.0.1:0".parse().expect("an address");
    let app = App::build(cfg).await.expect("the app builds over SQLite");
    let router = app.router();
    let documented = documented();
    let mut errors = Vec::new();
    for (method, path) in documented.iter().chain(&routed()) {
        if let Some(why) = router_refusal(&router, method, path).await {
            errors.push(format!("{method} {path}: the router answers {why}"));
        }
    }
    let paths: BTreeSet<&String> = documented.iter().map(|(_, p)| p).collect();
    for path in paths {
        for method in METHODS {
            let route = (method.to_string(), path.clone());
            // A path the router does not know at all is reported above.
            if !documented.contains(&route) && router_refusal(&router, method, path).await.is_none()
            {
                errors.push(format!("{method} {path}: routed but not documented"));
            }
        }
    }
    assert!(
        errors.is_empty(),
        "document and router disagree:\n{}",
        errors.join("\n")
    );
}

#[test]
fn openapi_operations_have_unique_ids_and_known_security() {
    let doc = serde_json::to_value(ApiDoc::openapi()).expect("the document serializes");
    let schemes = doc["components"]["securitySchemes"]
        .as_object()
        .expect("security schemes");
    assert!(schemes.contains_key(BEARER) && schemes.contains_key(MUTUAL_TLS));
    let mut ids = BTreeSet::new();
    for (method, path) in documented() {
        let op = &doc["paths"][&path][method.to_lowercase()];
        let id = op["operationId"].as_str().unwrap_or_default().to_owned();
        assert!(ids.insert(id.clone()), "operationId {id:?} is used twice");
        let security: Vec<&str> = op["security"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|req| req.as_object())
            .flat_map(|req| req.keys().map(String::as_str))
            .collect();
        let expected = match path.as_str() {
            "/v1/agent/enroll" => vec![],
            p if p.starts_with("/v1/agent/") => vec![MUTUAL_TLS],
            "/v1/trust-bundle" | "/v1/control-plane-ca" => vec![],
            p if p.starts_with("/v1/") => vec![BEARER],
            "/metrics" => vec![BEARER],
            _ => vec![],
        };
        assert_eq!(security, expected, "security of {method} {path}");
        if expected == [BEARER] {
            let m = Method::from_bytes(method.as_bytes()).expect("a method");
            let listed = crate::http::roles::ROUTES
                .iter()
                .find(|(rm, rp, _)| *rm == m && *rp == path);
            let Some((_, _, needs)) = listed else {
                panic!("{method} {path} is not in roles::ROUTES");
            };
            assert_eq!(
                op["security"][0][BEARER],
                serde_json::json!([needs.scope()]),
                "the role {method} {path} needs, in its scope"
            );
        }
    }
    for (m, p, _) in crate::http::roles::ROUTES {
        assert!(
            documented().contains(&(m.to_string(), (*p).to_owned())),
            "roles::ROUTES lists {m} {p}, which is not documented"
        );
    }
}
