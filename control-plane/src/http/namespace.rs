//! Service-name namespaces. Service names are unique in the trust domain (they are in
//! node identities), so a create answered "taken" would tell a tenant that another
//! tenant holds the name. Instead each tenant owns the names that start with its own
//! name and '-' (`acme-web` belongs to tenant `acme`): a tenant token may create only
//! such names, refused by rule before anything is read, and nobody, admins included,
//! may create a name inside another tenant's namespace. Whatever a tenant is told about
//! a name in its namespace concerns only its own services.

use super::ApiError;
use crate::store::{self, Conn};

/// Every `t` such that `name` is `t-<rest>`: the tenants that could own `name`.
fn owners(name: &str) -> impl Iterator<Item = &str> {
    name.match_indices('-')
        .map(|(i, _)| &name[..i])
        .filter(|t| !t.is_empty() && !t.ends_with('-'))
}

fn outside(tenant: &str) -> ApiError {
    ApiError::unprocessable(
        "name-outside-namespace",
        format!(
            "service names of tenant {tenant} start with \"{tenant}-\" (and lie in no other tenant's namespace)"
        ),
    )
}

/// A tenant token's create: the name must be in the tenant's namespace. Decided from
/// the name alone, so the answer says nothing about other tenants.
pub fn check_tenant_caller(own: &str, name: &str) -> Result<(), ApiError> {
    match name.strip_prefix(own).and_then(|r| r.strip_prefix('-')) {
        Some(rest) if !rest.is_empty() => Ok(()),
        _ => Err(outside(own)),
    }
}

/// In the create's transaction: no tenant but `tenant` has `name` in its namespace.
pub fn check_owner(c: &mut Conn<'_>, name: &str, tenant: &str) -> Result<(), ApiError> {
    for owner in owners(name).filter(|t| *t != tenant) {
        if store::tenants::get(c, owner)?.is_some() {
            return Err(ApiError::unprocessable(
                "name-outside-namespace",
                format!("service name {name} lies in tenant {owner}'s namespace"),
            ));
        }
    }
    Ok(())
}

/// In a tenant create's transaction: the new namespace `<tenant>-` neither holds nor
/// lies inside another tenant's namespace, and holds no service yet (which would
/// belong to another tenant).
pub fn check_new_tenant(c: &mut Conn<'_>, tenant: &str) -> Result<(), ApiError> {
    let refuse = |why: String| {
        ApiError::conflict(format!(
            "tenant {tenant} would own the service names \"{tenant}-*\", but {why}"
        ))
    };
    if store::tenants::get(c, tenant)?.is_some() {
        return Err(ApiError::conflict(format!(
            "tenant {tenant} already exists"
        )));
    }
    let prefix = format!("{tenant}-");
    for owner in owners(tenant) {
        if store::tenants::get(c, owner)?.is_some() {
            return Err(refuse(format!("they lie in tenant {owner}'s namespace")));
        }
    }
    if store::tenants::any_named_with_prefix(c, &prefix)? {
        return Err(refuse("they hold another tenant's namespace".into()));
    }
    if store::services::any_named_with_prefix(c, &prefix)? {
        return Err(refuse("services with such names exist".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owners_of_a_name_are_its_dash_prefixes() {
        assert_eq!(owners("a-b-c").collect::<Vec<_>>(), ["a", "a-b"]);
        assert_eq!(owners("web").count(), 0);
        assert_eq!(owners("a--b").collect::<Vec<_>>(), ["a"]);
    }

    #[test]
    fn a_tenant_creates_only_names_in_its_namespace() {
        assert!(check_tenant_caller("acme", "acme-web").is_ok());
        for refused in ["web", "acme", "acme-", "acmeweb", "beta-web", "acm-web"] {
            let e = check_tenant_caller("acme", refused).expect_err(refused);
            assert!(
                matches!(e, ApiError::Client { status, .. } if status.as_u16() == 422),
                "{refused}"
            );
        }
    }
}
