//! The OpenAPI 3.1 document of the customer/admin API and the agent API, generated
//! from the handlers' `#[utoipa::path]` attributes and the wire types' `ToSchema`
//! derives (`ferry-shared`'s `openapi` feature), served at `GET /openapi.json`.
//!
//! The document is public, like `/v1/trust-bundle`: it describes the shape of the API,
//! which is no secret, and carries no tenant data, and clients and code generators
//! fetch it before they hold a token. The dashboard's HTML pages are not in it (they
//! are for browsers with a session cookie, not for API clients).
//!
//! `coverage` (tests) holds the document and `router.rs` to each other: every route is
//! documented and every documented operation is routed.

use super::alerts::{Alert, ServiceStatus};
use super::{ApiError, agent, alerts, bundle_view, deliveries, delivery, imports, metadata};
use super::{metrics, nodes, services, sources, system, tenants, tokens, webhook};
use axum::body::Bytes;
use axum::http::header;
use axum::response::IntoResponse;
use ferry_shared::metadata::MetadataEntry;
use ferry_shared::sources::Source;
use ferry_shared::{NodeId, Problem, ServiceName, TenantName};
use flatten::ClosedAllOf;
use roles::TokenRoles;
use std::sync::LazyLock;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{IntoParams, Modify, OpenApi, ToResponse, ToSchema};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Ferry control plane",
        description = "Certificate delivery: the customer/admin REST API (bearer tokens) and \
            the agent API (mutual TLS) of one HTTPS listener. Errors are RFC 7807 \
            `application/problem+json`; 5xx problems carry no detail.",
    ),
    paths(
        document,
        system::healthz, system::readyz, system::trust_bundle, system::control_plane_ca, system::audit,
        alerts::list, alerts::status, metrics::metrics,
        tenants::create, tenants::list, tokens::create, tokens::list, tokens::revoke,
        services::create, services::list, services::get, services::update, services::delete,
        services::create_join_token,
        nodes::list, nodes::get, nodes::delete,
        deliveries::refresh, deliveries::get, deliveries::rotate, deliveries::get_rotation,
        bundle_view::get,
        metadata::service_list, metadata::service_get, metadata::service_put,
        metadata::service_delete, metadata::node_list, metadata::node_get, metadata::node_put,
        metadata::node_delete,
        sources::list, sources::get, sources::put, sources::delete,
        webhook::put, webhook::delete,
        imports::import_certificate, imports::get_inventory, imports::put_inventory,
        imports::delete_inventory, imports::get_certificate_source,
        imports::put_certificate_source, imports::delete_certificate_source,
        agent::enroll, agent::renew, agent::whoami,
        delivery::bundle, delivery::ack, delivery::csr,
    ),
    components(
        schemas(Problem, ServiceName, NodeId, TenantName),
        responses(
            BadRequest, Unauthorized, Forbidden, NotFound, Conflict, Unprocessable,
            BodyTooLarge, BodyTimedOut, UnsupportedMediaType, TooManyRequests, InternalError,
            NotReady,
        ),
    ),
    modifiers(&SecuritySchemes, &CommonResponses, &ClosedAllOf, &TokenRoles),
    tags(
        (name = "system", description = "Probes, the trust bundle, this document, audit, metrics."),
        (name = "tenants", description = "Tenants and their API tokens (admin tokens only)."),
        (name = "services", description = "Services, join tokens, webhooks, rotations."),
        (name = "nodes", description = "Enrolled nodes, forced refresh, what a node should hold."),
        (name = "metadata", description = "Custom key/values delivered with the bundle, set by hand or fetched by dynamic sources."),
        (name = "objects", description = "Inventories and imported certificates from customer storage."),
        (name = "alerts", description = "Alerts and the fleet status summary."),
        (name = "agent", description = "The agent API: mutual TLS with the node's identity certificate."),
    ),
)]
pub struct ApiDoc;

/// Name of the bearer-token security scheme (customer and admin routes).
pub const BEARER: &str = "bearer";
/// Name of the mutual-TLS security scheme (`/v1/agent/*` except enroll).
pub const MUTUAL_TLS: &str = "mutual_tls";

/// The document, serialized once.
static DOCUMENT: LazyLock<Result<Bytes, String>> = LazyLock::new(|| {
    serde_json::to_vec(&ApiDoc::openapi())
        .map(Bytes::from)
        .map_err(|e| e.to_string())
});

/// `GET /openapi.json`: this document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "system",
    operation_id = "getOpenApi",
    summary = "This document (public: it describes the API and holds no tenant data).",
    responses((status = 200, description = "The OpenAPI document of this API.", body = Object)),
)]
pub async fn document() -> Result<impl IntoResponse, ApiError> {
    match &*DOCUMENT {
        Ok(bytes) => Ok(([(header::CONTENT_TYPE, "application/json")], bytes.clone())),
        Err(e) => Err(ApiError::Internal(anyhow::anyhow!(
            "cannot serialize the OpenAPI document: {e}"
        ))),
    }
}

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API token: the deployment's admin token (printed at the first \
                         start) or a tenant's token (`POST /v1/tenants/{tenant}/tokens`) with \
                         a role: `read`, `deliver` or `admin`. Each operation lists the role \
                         it needs as the scope of this requirement.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            MUTUAL_TLS,
            SecurityScheme::MutualTls {
                description: Some(
                    "The node's identity certificate, issued by the Ferry CA at enrollment \
                     (URI SAN spiffe://<trust-domain>/service/<svc>/node/<id>). The node is \
                     always the one the certificate names, checked against the store on \
                     every request."
                        .into(),
                ),
                extensions: None,
                deprecated: None,
            },
        );
    }
}

/// Responses every operation can give without saying so in its attribute: the opaque
/// 500; 400 when it takes parameters (a path segment that is not UTF-8, a query string
/// that does not parse) or a body (malformed JSON); and with a JSON body 408 (the body
/// did not arrive in time), 413, 415 and 422 (well-formed JSON of the wrong shape) from
/// the body extractor.
struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let problem = |name: &str| RefOr::Ref(Ref::from_response_name(name));
        for item in doc.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in operations.into_iter().flatten() {
                let add = |op: &mut Operation, status: &str, name: &str| {
                    let responses = &mut op.responses.responses;
                    responses
                        .entry(status.into())
                        .or_insert_with(|| problem(name));
                };
                add(op, "500", "InternalError");
                let has_parameters = op.parameters.as_ref().is_some_and(|p| !p.is_empty());
                if has_parameters || op.request_body.is_some() {
                    add(op, "400", "BadRequest");
                }
                if op.request_body.is_some() {
                    add(op, "408", "BodyTimedOut");
                    add(op, "413", "BodyTooLarge");
                    add(op, "415", "UnsupportedMediaType");
                    add(op, "422", "Unprocessable");
                }
            }
        }
    }
}

/// Declares a reusable problem+json response named after the type.
macro_rules! problem_responses {
    ($($(#[$doc:meta])* $name:ident;)+) => {$(
        $(#[$doc])*
        #[derive(ToResponse)]
        #[response(content_type = "application/problem+json")]
        #[allow(dead_code)] // only its schema is used
        pub struct $name(Problem);
    )+};
}

problem_responses! {
    /// Malformed request: an invalid name in the path, a path segment that is not UTF-8,
    /// a query string that does not parse or names an unknown parameter, a bad cursor or
    /// limit, malformed JSON, a CSR that does not parse.
    BadRequest;
    /// No credentials, or unknown ones: a missing, revoked or expired bearer token, no
    /// client certificate on an agent route, an invalid join token.
    Unauthorized;
    /// Authenticated but not allowed: a tenant token on a route of the deployment's
    /// admin token, a token whose role does not include the route's, a revoked or
    /// superseded node, an expired or used-up join token.
    Forbidden;
    /// No such resource, or one the caller's tenant cannot see (never a 403: existence
    /// is not leaked).
    NotFound;
    /// The request conflicts with the current state (a taken name, a stale ack, a
    /// certificate import into a service that issues its own).
    Conflict;
    /// The body parsed but a value is refused (a field of the wrong type, settings out of
    /// range, an invalid metadata key, a key type the service does not allow).
    Unprocessable;
    /// The request body is larger than 64 KiB.
    BodyTooLarge;
    /// The request body did not arrive whole within the configured time after its
    /// headers (`body_read_timeout_seconds`); nothing was changed.
    BodyTimedOut;
    /// The request body is not `application/json`.
    UnsupportedMediaType;
    /// Too many refused attempts from the client's address (join-token guessing, or
    /// unknown or expired bearer tokens); the `retry-after` header says when to try
    /// again.
    TooManyRequests;
    /// Something the client cannot fix; logged on the server, no detail given.
    InternalError;
    /// The database is unreachable or its migrations are pending.
    NotReady;
}

/// `{svc}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // documentation only: handlers take `Path<String>` and parse
pub struct SvcPath {
    /// Service name.
    #[param(inline)]
    svc: ServiceName,
}

/// `{svc}` and `{node}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct NodePath {
    /// Service name.
    #[param(inline)]
    svc: ServiceName,
    /// Node id.
    #[param(inline)]
    node: NodeId,
}

/// `{key}` of a metadata route: a plain file name on the node.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct KeyPath {
    /// Metadata key: 1-128 bytes, no '/', '\', "..", NUL or control characters (it
    /// becomes a file name on the node).
    #[param(min_length = 1, max_length = 128)]
    key: String,
}

/// `{tenant}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct TenantPath {
    /// Tenant name.
    #[param(inline)]
    tenant: TenantName,
}

/// `{svc}` and `{name}` of a dynamic source.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct SourcePath {
    /// Service name.
    #[param(inline)]
    svc: ServiceName,
    /// Source name: the metadata-key rule (1-128 bytes, a plain file name).
    #[param(min_length = 1, max_length = 128)]
    name: String,
}

/// `?since=&wait=` of the long-poll: `ferry_shared::api::BundleQuery` (whose fields these
/// must stay), documented by hand for `wait`: the derived schema of a `u64` says at most
/// `i64::MAX`, while the server takes any `u64` and caps it.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct BundleParams {
    /// The version the agent has installed (0, the default: none).
    since: Option<i64>,
    #[param(schema_with = poll_wait)]
    wait: Option<u64>,
}

/// `wait`: any `u64`.
fn poll_wait() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::Integer))
        .description(Some(
            "Seconds to hold the request when nothing is newer (capped at 55; 0, the \
             default, answers at once).",
        ))
        .minimum(Some(0))
        .maximum(Some(u64::MAX))
        .build()
}

/// `{id}` of a delivery or rotation.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct IdPath {
    /// The id the creating call returned.
    id: String,
}

// Bodies the handlers build with `json!`: their shape, for the document only.

/// Metadata values at one level (service-wide or one node), expired ones left out.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct MetadataList {
    items: Vec<MetadataEntry>,
}

/// A service's dynamic sources (header names only, never values).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SourceList {
    items: Vec<Source>,
}

/// Alerts, newest first.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AlertList {
    items: Vec<Alert>,
}

/// The fleet total (`service` is `*`, over every visible service) and one page of
/// visible services in name order.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct StatusSummary {
    fleet: ServiceStatus,
    services: Vec<ServiceStatus>,
    /// Pass as `cursor` for the next page; null on the last page.
    next_cursor: Option<String>,
}

/// A CSR accepted: the version whose bundle carries the new certificate.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct CsrAccepted {
    version: i64,
}

mod flatten;
mod roles;

#[cfg(test)]
mod coverage;
