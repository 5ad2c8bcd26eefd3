//! OpenAPI schemas of the validated names (feature `openapi`, enabled by the control
//! plane only: the agent never links utoipa).
//!
//! The names are newtypes over `String` whose `Deserialize` runs `parse`, so a derived
//! schema would say only "string". These hand-written ones carry the same rule as the
//! parser (pattern and length, in the regex subset every JSON Schema validator has: no
//! look-around), so a client generated from the document refuses what the server would
//! refuse. The wire bodies themselves derive `utoipa::ToSchema` where they are declared.

use crate::ids::{
    KeyMode, KeyType, NodeId, ServiceName, TenantName, TokenName, TokenRole, TrustDomain,
};
use std::borrow::Cow;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
use utoipa::{PartialSchema, ToSchema};

/// One DNS label: what service and tenant names are.
pub const DNS_LABEL_PATTERN: &str = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$";
/// A node id: starts with a letter or digit, every '.' followed by something other than
/// '.' (or last), so never "..". The length (at most 128) is `maxLength`.
pub const NODE_ID_PATTERN: &str = r"^[A-Za-z0-9]([A-Za-z0-9_-]|\.[A-Za-z0-9_-])*\.?$";
/// A trust domain: dot-separated DNS labels.
pub const TRUST_DOMAIN_PATTERN: &str =
    r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$";

fn string(description: &str, pattern: &str, max_length: usize) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::String))
        .description(Some(description))
        .pattern(Some(pattern))
        .min_length(Some(1))
        .max_length(Some(max_length))
        .into()
}

fn one_of(description: &str, values: impl IntoIterator<Item = &'static str>) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::String))
        .description(Some(description))
        .enum_values(Some(values))
        .into()
}

/// `impl ToSchema` under the type's own name, from a schema function.
macro_rules! schema {
    ($ty:ty, $name:literal, $schema:expr) => {
        impl PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                $schema
            }
        }
        impl ToSchema for $ty {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
        }
    };
}

schema!(
    ServiceName,
    "ServiceName",
    string(
        "A service name: one DNS label (lowercase letters, digits and '-', not starting or \
         ending with '-'), unique within the trust domain.",
        DNS_LABEL_PATTERN,
        63,
    )
);
schema!(
    TenantName,
    "TenantName",
    string("A tenant name: one DNS label.", DNS_LABEL_PATTERN, 63)
);
schema!(
    TokenName,
    "TokenName",
    string(
        "An API token's name: one DNS label, unique within its tenant.",
        DNS_LABEL_PATTERN,
        63
    )
);
schema!(
    TokenRole,
    "TokenRole",
    one_of(
        "What a tenant's token may do: `read` (GET routes), `deliver` (read, refreshes, \
         rotations, metadata writes, certificate imports) or `admin` (everything its \
         tenant can, tokens and webhooks included).",
        TokenRole::ALL.iter().map(|k| k.as_str()),
    )
);
schema!(
    NodeId,
    "NodeId",
    string(
        "A node id: letters, digits, '.', '_' and '-', starting with a letter or digit, \
         never containing \"..\" (safe as a URI path segment and as a file name).",
        NODE_ID_PATTERN,
        128,
    )
);
schema!(
    TrustDomain,
    "TrustDomain",
    string(
        "A trust domain: a DNS name of lowercase labels.",
        TRUST_DOMAIN_PATTERN,
        253
    )
);
schema!(
    KeyType,
    "KeyType",
    one_of(
        "Key algorithm of the keys a service's nodes hold.",
        KeyType::ALL.iter().map(|k| k.as_str()),
    )
);
schema!(
    KeyMode,
    "KeyMode",
    one_of(
        "Who generates the delivered certificate's key: the control plane (`central`), \
         the node (`node-key`, by CSR), or the customer who imports it (`imported`).",
        KeyMode::ALL.iter().map(|k| k.as_str()),
    )
);

#[cfg(test)]
mod tests {
    use super::*;

    fn object(schema: RefOr<Schema>) -> utoipa::openapi::schema::Object {
        match schema {
            RefOr::T(Schema::Object(o)) => o,
            other => panic!(
                "expected an inline object schema, got {}",
                serde_json::to_string(&other).unwrap_or_default()
            ),
        }
    }

    #[test]
    fn names_are_strings_with_their_rule() {
        let svc = object(ServiceName::schema());
        assert_eq!(svc.pattern.as_deref(), Some(DNS_LABEL_PATTERN));
        assert_eq!((svc.min_length, svc.max_length), (Some(1), Some(63)));
        assert_eq!(object(NodeId::schema()).max_length, Some(128));
        assert_eq!(ServiceName::name(), "ServiceName");
    }

    #[test]
    fn enums_list_every_wire_name() {
        let values = object(KeyMode::schema()).enum_values.unwrap_or_default();
        let expected: Vec<_> = KeyMode::ALL
            .iter()
            .map(|m| serde_json::to_value(m).expect("serializes"))
            .collect();
        assert_eq!(values, expected);
        let values = object(KeyType::schema()).enum_values.unwrap_or_default();
        assert_eq!(values.len(), KeyType::ALL.len());
    }
}
