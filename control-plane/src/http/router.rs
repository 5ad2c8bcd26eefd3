//! Every route of the control plane, in one place.

use super::error::problem_response;
use super::{
    AppState, agent, alerts, bundle_view, deliveries, delivery, imports, metadata, metrics, nodes,
    services, system, tenants, tokens, webhook,
};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use ferry_shared::api::{MAX_BODY_BYTES, routes};

pub fn router(state: AppState) -> Router {
    Router::new()
        .route(routes::HEALTHZ, get(system::healthz))
        .route(routes::READYZ, get(system::readyz))
        .route(routes::TRUST_BUNDLE, get(system::trust_bundle))
        .route(routes::CONTROL_PLANE_CA, get(system::control_plane_ca))
        .route(routes::AUDIT, get(system::audit))
        .route("/v1/alerts", get(alerts::list))
        .route("/v1/status", get(alerts::status))
        .route("/metrics", get(metrics::metrics))
        .route("/openapi.json", get(super::openapi::document))
        .route(routes::TENANTS, post(tenants::create).get(tenants::list))
        .route(
            "/v1/tenants/{tenant}/tokens",
            post(tokens::create).get(tokens::list),
        )
        .route(
            "/v1/tenants/{tenant}/tokens/{name}",
            axum::routing::delete(tokens::revoke),
        )
        .route(routes::SERVICES, post(services::create).get(services::list))
        .route(
            "/v1/services/{svc}",
            get(services::get)
                .patch(services::update)
                .delete(services::delete),
        )
        .route(
            "/v1/services/{svc}/join-tokens",
            post(services::create_join_token),
        )
        .route("/v1/services/{svc}/nodes", get(nodes::list))
        .route(
            "/v1/services/{svc}/nodes/{node}",
            get(nodes::get).delete(nodes::delete),
        )
        .route(
            "/v1/services/{svc}/nodes/{node}/refresh",
            post(deliveries::refresh),
        )
        .route(
            "/v1/services/{svc}/nodes/{node}/bundle",
            get(bundle_view::get),
        )
        .route(
            "/v1/services/{svc}/nodes/{node}/metadata",
            get(metadata::node_list),
        )
        .route(
            "/v1/services/{svc}/nodes/{node}/metadata/{key}",
            get(metadata::node_get)
                .put(metadata::node_put)
                .delete(metadata::node_delete),
        )
        .route(
            "/v1/services/{svc}/nodes/{node}/certificate",
            axum::routing::put(imports::import_certificate),
        )
        .route(
            "/v1/services/{svc}/inventory",
            get(imports::get_inventory)
                .put(imports::put_inventory)
                .delete(imports::delete_inventory),
        )
        .route(
            "/v1/services/{svc}/certificate-source",
            get(imports::get_certificate_source)
                .put(imports::put_certificate_source)
                .delete(imports::delete_certificate_source),
        )
        .route("/v1/services/{svc}/metadata", get(metadata::service_list))
        .route(
            "/v1/services/{svc}/metadata/{key}",
            get(metadata::service_get)
                .put(metadata::service_put)
                .delete(metadata::service_delete),
        )
        .route("/v1/services/{svc}/sources", get(super::sources::list))
        .route(
            "/v1/services/{svc}/sources/{name}",
            get(super::sources::get)
                .put(super::sources::put)
                .delete(super::sources::delete),
        )
        .route("/v1/services/{svc}/rotate", post(deliveries::rotate))
        .route(
            "/v1/services/{svc}/webhook",
            axum::routing::put(webhook::put).delete(webhook::delete),
        )
        .route(
            "/v1/services/{svc}/rotations/{id}",
            get(deliveries::get_rotation),
        )
        .route("/v1/deliveries/{id}", get(deliveries::get))
        .route("/dashboard", get(super::dashboard::dashboard))
        .route(
            "/dashboard/login",
            get(super::dashboard::login_form).post(super::dashboard::login),
        )
        .route("/dashboard/logout", post(super::dashboard::logout))
        .route("/dashboard/{*rest}", get(super::dashboard::not_found))
        .route(routes::AGENT_ENROLL, post(agent::enroll))
        .route(routes::AGENT_RENEW, post(agent::renew))
        .route(routes::AGENT_WHOAMI, get(agent::whoami))
        .route(routes::AGENT_BUNDLE, get(delivery::bundle))
        .route(routes::AGENT_ACK, post(delivery::ack))
        .route(routes::AGENT_CSR, post(delivery::csr))
        .fallback(|| async {
            problem_response(
                StatusCode::NOT_FOUND,
                "not-found",
                Some("no such route".into()),
            )
        })
        .method_not_allowed_fallback(|| async {
            problem_response(StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed", None)
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}
