//! Which token each customer/admin route needs: one table, read by the bearer
//! extractor ([`super::auth`]) on every request and by the OpenAPI document (each
//! operation's `bearer` requirement lists the role as its scope).
//!
//! A route missing from the table needs the deployment's admin token (fail closed);
//! `openapi/coverage.rs` checks that every bearer-authenticated operation is listed.

use axum::http::Method;
use ferry_shared::TokenRole;

/// What a route asks of its caller's token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// A tenant token of at least this role (or the deployment's admin token).
    Role(TokenRole),
    /// The deployment's admin token (tenant NULL): tenants, audit, metrics.
    Deployment,
}

impl Needs {
    /// The scope the OpenAPI document lists for the `bearer` requirement.
    pub fn scope(self) -> &'static str {
        match self {
            Needs::Role(r) => r.as_str(),
            Needs::Deployment => "deployment-admin",
        }
    }
}

use Needs::{Deployment, Role};
use TokenRole::{Admin, Deliver, Read};

/// Every bearer-authenticated route: (method, route as in `router.rs`, what it needs).
pub const ROUTES: &[(Method, &str, Needs)] = &[
    (Method::GET, "/v1/audit", Deployment),
    (Method::GET, "/metrics", Deployment),
    (Method::POST, "/v1/tenants", Deployment),
    (Method::GET, "/v1/tenants", Deployment),
    (Method::GET, "/v1/alerts", Role(Read)),
    (Method::GET, "/v1/status", Role(Read)),
    (Method::POST, "/v1/tenants/{tenant}/tokens", Role(Admin)),
    (Method::GET, "/v1/tenants/{tenant}/tokens", Role(Admin)),
    (
        Method::DELETE,
        "/v1/tenants/{tenant}/tokens/{name}",
        Role(Admin),
    ),
    (Method::POST, "/v1/services", Role(Admin)),
    (Method::GET, "/v1/services", Role(Read)),
    (Method::GET, "/v1/services/{svc}", Role(Read)),
    (Method::PATCH, "/v1/services/{svc}", Role(Admin)),
    (Method::DELETE, "/v1/services/{svc}", Role(Admin)),
    (Method::POST, "/v1/services/{svc}/join-tokens", Role(Admin)),
    (Method::GET, "/v1/services/{svc}/nodes", Role(Read)),
    (Method::GET, "/v1/services/{svc}/nodes/{node}", Role(Read)),
    (
        Method::DELETE,
        "/v1/services/{svc}/nodes/{node}",
        Role(Admin),
    ),
    (
        Method::POST,
        "/v1/services/{svc}/nodes/{node}/refresh",
        Role(Deliver),
    ),
    (
        Method::GET,
        "/v1/services/{svc}/nodes/{node}/bundle",
        Role(Read),
    ),
    (
        Method::GET,
        "/v1/services/{svc}/nodes/{node}/metadata",
        Role(Read),
    ),
    (
        Method::GET,
        "/v1/services/{svc}/nodes/{node}/metadata/{key}",
        Role(Read),
    ),
    (
        Method::PUT,
        "/v1/services/{svc}/nodes/{node}/metadata/{key}",
        Role(Deliver),
    ),
    (
        Method::DELETE,
        "/v1/services/{svc}/nodes/{node}/metadata/{key}",
        Role(Deliver),
    ),
    (
        Method::PUT,
        "/v1/services/{svc}/nodes/{node}/certificate",
        Role(Deliver),
    ),
    (Method::GET, "/v1/services/{svc}/inventory", Role(Read)),
    (Method::PUT, "/v1/services/{svc}/inventory", Role(Admin)),
    (Method::DELETE, "/v1/services/{svc}/inventory", Role(Admin)),
    (
        Method::GET,
        "/v1/services/{svc}/certificate-source",
        Role(Read),
    ),
    (
        Method::PUT,
        "/v1/services/{svc}/certificate-source",
        Role(Admin),
    ),
    (
        Method::DELETE,
        "/v1/services/{svc}/certificate-source",
        Role(Admin),
    ),
    (Method::GET, "/v1/services/{svc}/metadata", Role(Read)),
    (Method::GET, "/v1/services/{svc}/metadata/{key}", Role(Read)),
    (
        Method::PUT,
        "/v1/services/{svc}/metadata/{key}",
        Role(Deliver),
    ),
    (
        Method::DELETE,
        "/v1/services/{svc}/metadata/{key}",
        Role(Deliver),
    ),
    // Sources, inventories and certificate sources make the control plane fetch URLs
    // and hold secrets: configuration, not delivery.
    (Method::GET, "/v1/services/{svc}/sources", Role(Read)),
    (Method::GET, "/v1/services/{svc}/sources/{name}", Role(Read)),
    (
        Method::PUT,
        "/v1/services/{svc}/sources/{name}",
        Role(Admin),
    ),
    (
        Method::DELETE,
        "/v1/services/{svc}/sources/{name}",
        Role(Admin),
    ),
    (Method::POST, "/v1/services/{svc}/rotate", Role(Deliver)),
    (Method::PUT, "/v1/services/{svc}/webhook", Role(Admin)),
    (Method::DELETE, "/v1/services/{svc}/webhook", Role(Admin)),
    (Method::GET, "/v1/services/{svc}/rotations/{id}", Role(Read)),
    (Method::GET, "/v1/deliveries/{id}", Role(Read)),
];

/// What `method` on the matched route `route` needs; unlisted routes need the
/// deployment's admin token.
pub fn needs(method: &Method, route: &str) -> Needs {
    ROUTES
        .iter()
        .find(|(m, r, _)| m == method && *r == route)
        .map_or(Deployment, |(_, _, n)| *n)
}

/// Whether a token of `tenant` (`None`: the deployment's admin token) and `role` may
/// call a route that needs `needs`.
pub fn allows(tenant: Option<&str>, role: TokenRole, needs: Needs) -> bool {
    match (tenant, needs) {
        (None, _) => true,
        (Some(_), Deployment) => false,
        (Some(_), Role(r)) => role.includes(r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_map_to_routes_and_unknown_routes_fail_closed() {
        let refresh = needs(&Method::POST, "/v1/services/{svc}/nodes/{node}/refresh");
        let list = needs(&Method::GET, "/v1/services");

        assert_eq!(refresh, Role(Deliver));
        assert!(allows(Some("acme"), Read, list));
        assert!(!allows(Some("acme"), Read, refresh));
        assert!(allows(Some("acme"), Deliver, refresh));
        assert_eq!(needs(&Method::POST, "/v1/not-a-route"), Deployment);
        assert!(!allows(
            Some("acme"),
            Admin,
            needs(&Method::GET, "/v1/audit")
        ));
        assert!(
            allows(None, Read, Deployment),
            "the deployment's admin token"
        );
    }

    #[test]
    fn every_route_is_listed_once() {
        let mut seen = std::collections::HashSet::new();
        for (m, r, _) in ROUTES {
            assert!(seen.insert((m.clone(), *r)), "{m} {r} listed twice");
        }
    }
}
