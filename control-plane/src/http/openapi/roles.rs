//! Writes [`crate::http::roles::ROUTES`] into the document: each bearer operation's
//! requirement lists the role it needs as its scope (OpenAPI 3.1 allows role names
//! there for non-OAuth schemes), its description says so, and it may answer 403 (a
//! role that does not include it) and 429 (the address presented too many bad tokens).

use super::BEARER;
use crate::http::roles::{Needs, ROUTES};
use axum::http::Method;
use utoipa::Modify;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::{Ref, RefOr};

pub struct TokenRoles;

fn operation<'a>(item: &'a mut PathItem, method: &Method) -> Option<&'a mut Operation> {
    match *method {
        Method::GET => item.get.as_mut(),
        Method::POST => item.post.as_mut(),
        Method::PUT => item.put.as_mut(),
        Method::PATCH => item.patch.as_mut(),
        Method::DELETE => item.delete.as_mut(),
        _ => None,
    }
}

impl Modify for TokenRoles {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        for (method, path, needs) in ROUTES {
            let Some(op) = doc
                .paths
                .paths
                .get_mut(*path)
                .and_then(|item| operation(item, method))
            else {
                continue; // coverage.rs fails the build's tests for this
            };
            op.security = Some(vec![SecurityRequirement::new(BEARER, [needs.scope()])]);
            let line = match needs {
                Needs::Role(r) => format!(
                    "Needs a token with role `{r}` or above (or the deployment's admin token)."
                ),
                Needs::Deployment => "Needs the deployment's admin token.".to_owned(),
            };
            op.description = Some(match op.description.take() {
                Some(d) => format!("{d}\n\n{line}"),
                None => line,
            });
            for (status, name) in [("403", "Forbidden"), ("429", "TooManyRequests")] {
                op.responses
                    .responses
                    .entry(status.into())
                    .or_insert_with(|| RefOr::Ref(Ref::from_response_name(name)));
            }
        }
    }
}
