//! The customer API of the source scenarios: a small axum server on 127.0.0.1, port 0,
//! whose answers (value, failures, ETags) the test changes while it runs, and which
//! records every request's headers.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

/// What the customer API answers, changed by the test while it runs.
#[derive(Default)]
pub struct Api {
    pub value: Value,
    /// Answers 500 while set.
    pub failing: bool,
    /// Sends an ETag (a hash of the body) and answers 304 to a matching
    /// `If-None-Match`.
    pub etags: bool,
    /// (path, request headers) of every request.
    pub seen: Vec<(String, HeaderMap)>,
    pub not_modified: usize,
}

pub type Shared = Arc<Mutex<Api>>;

fn answer(api: &mut Api, path: String, headers: HeaderMap, body: Value) -> Response {
    api.seen.push((path, headers.clone()));
    if api.failing {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let etag = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        body.to_string().hash(&mut h);
        format!("\"{:x}\"", h.finish())
    };
    if api.etags {
        if headers.get("if-none-match").and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
            api.not_modified += 1;
            return StatusCode::NOT_MODIFIED.into_response();
        }
        return ([("etag", etag)], axum::Json(body)).into_response();
    }
    axum::Json(body).into_response()
}

/// The customer API on 127.0.0.1, port 0: `/value` answers the current value,
/// `/nodes/{node}` a value naming the node.
pub async fn customer_api() -> (String, Shared) {
    let shared: Shared = Arc::default();
    let app = axum::Router::new()
        .route(
            "/value",
            axum::routing::get(|State(s): State<Shared>, headers: HeaderMap| async move {
                let mut api = s.lock().expect("lock");
                let body = api.value.clone();
                answer(&mut api, "/value".into(), headers, body)
            }),
        )
        .route(
            "/nodes/{node}",
            axum::routing::get(
                |State(s): State<Shared>, Path(node): Path<String>, headers: HeaderMap| async move {
                    let mut api = s.lock().expect("lock");
                    let body = json!({ "rack": format!("rack-of-{node}") });
                    answer(&mut api, format!("/nodes/{node}"), headers, body)
                },
            ),
        )
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, shared)
}

pub fn set(api: &Shared, f: impl FnOnce(&mut Api)) {
    f(&mut api.lock().expect("lock"));
}
