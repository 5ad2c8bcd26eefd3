//! `GET /openapi.json` from a running control plane: public, OpenAPI 3, and whole (every
//! `$ref` resolves, every operation names a security scheme the document defines).
//! That the document matches the router is the control plane's own unit test
//! (`http::openapi::coverage`).

use ferry_tests::{Backend, spawn_control_plane};
use serde_json::Value;
use std::collections::BTreeSet;

const OPERATIONS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Every `$ref` string anywhere under `v`.
fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

/// The value a local reference (`#/components/schemas/X`) points at, if any.
fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    doc.pointer(pointer)
}

#[tokio::test]
async fn openapi_document_is_public_openapi_3_and_every_ref_resolves() {
    let cp = spawn_control_plane(Backend::Sqlite, |_| {}).await;
    let r = cp.api(None).get("/openapi.json").await;
    assert_eq!(r.status, 200, "served without a token: {:?}", r.body);
    assert!(
        r.content_type.starts_with("application/json"),
        "{}",
        r.content_type
    );
    let doc = r.body;

    let version = doc["openapi"].as_str().expect("an openapi field");
    assert!(version.starts_with("3."), "OpenAPI 3.x, got {version}");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());

    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() > 20, "only {} paths", paths.len());
    for must in ["/v1/services", "/v1/agent/bundle", "/openapi.json"] {
        assert!(paths.contains_key(must), "{must} is documented");
    }
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    for must in ["Problem", "Service", "Bundle", "ServiceName", "NodeId"] {
        assert!(schemas.contains_key(must), "schema {must}");
    }
    assert!(
        doc["components"]["schemas"]["ServiceName"]["pattern"].is_string(),
        "names carry their pattern"
    );

    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(all.len() > 50, "only {} references", all.len());
    let dangling: BTreeSet<&str> = all
        .into_iter()
        .filter(|r| resolve(&doc, r).is_none())
        .collect();
    assert!(
        dangling.is_empty(),
        "references that resolve to nothing: {dangling:?}"
    );

    let schemes = doc["components"]["securitySchemes"]
        .as_object()
        .expect("security schemes");
    let mut ids = BTreeSet::new();
    for (path, item) in paths {
        assert!(path.starts_with('/'), "path {path}");
        for (method, op) in item.as_object().expect("a path item") {
            if !OPERATIONS.contains(&method.as_str()) {
                continue;
            }
            let id = op["operationId"].as_str().expect("an operationId");
            assert!(ids.insert(id.to_owned()), "operationId {id} twice");
            let responses = op["responses"].as_object().expect("responses");
            assert!(
                responses.keys().any(|s| s.starts_with('2') || s == "304"),
                "{method} {path} documents a success"
            );
            for requirement in op["security"].as_array().into_iter().flatten() {
                for name in requirement.as_object().expect("a requirement").keys() {
                    assert!(schemes.contains_key(name), "{method} {path}: scheme {name}");
                }
            }
        }
    }

    // The document a token holder gets is the same one.
    let with_token = cp.admin().get("/openapi.json").await;
    assert_eq!(with_token.body, doc);
}
