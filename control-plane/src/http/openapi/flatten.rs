//! Bodies with `#[serde(flatten)]` of a closed struct, made satisfiable.
//!
//! utoipa renders `CreateServiceRequest { name, tenant, #[serde(flatten)] settings }` as
//! `allOf: [ServiceSettings, {name, tenant}]`. `ServiceSettings` denies unknown fields,
//! so its schema says `additionalProperties: false`, and under `allOf` that forbids
//! `name` as well: no body satisfies the schema, so validators refuse every valid
//! request and generators cannot build one. What serde accepts is one object with the
//! members' properties together, closed; this modifier writes exactly that.

use utoipa::Modify;
use utoipa::openapi::schema::{AdditionalProperties, Object, ObjectBuilder, Schema, Type};
use utoipa::openapi::{RefOr, schema::SchemaType};

pub struct ClosedAllOf;

impl Modify for ClosedAllOf {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let Some(components) = doc.components.as_mut() else {
            return;
        };
        let snapshot = components.schemas.clone();
        for schema in components.schemas.values_mut() {
            let RefOr::T(Schema::AllOf(all)) = schema else {
                continue;
            };
            if let Some(merged) = merge(&all.items, all.description.clone(), &snapshot) {
                *schema = RefOr::T(Schema::Object(merged));
            }
        }
    }
}

fn is_closed(o: &Object) -> bool {
    matches!(
        o.additional_properties.as_deref(),
        Some(AdditionalProperties::FreeForm(false))
    )
}

/// One closed object of `items` when they are all objects (inline or by reference)
/// and one of them is closed; `None` leaves the `allOf` as it is.
fn merge(
    items: &[RefOr<Schema>],
    description: Option<String>,
    schemas: &std::collections::BTreeMap<String, RefOr<Schema>>,
) -> Option<Object> {
    let mut objects = Vec::new();
    for item in items {
        let resolved = match item {
            RefOr::Ref(r) => {
                let name = r.ref_location.strip_prefix("#/components/schemas/")?;
                schemas.get(name)?
            }
            inline => inline,
        };
        let RefOr::T(Schema::Object(o)) = resolved else {
            return None;
        };
        objects.push(o);
    }
    if !objects.iter().any(|o| is_closed(o)) {
        return None;
    }
    let mut merged = ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::Object))
        .description(description)
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        .build();
    for o in objects {
        for (name, property) in &o.properties {
            merged.properties.insert(name.clone(), property.clone());
        }
        for name in &o.required {
            if !merged.required.contains(name) {
                merged.required.push(name.clone());
            }
        }
    }
    Some(merged)
}

#[cfg(test)]
mod tests {
    use super::super::ApiDoc;
    use utoipa::OpenApi;

    #[test]
    fn create_service_request_is_one_closed_object_with_every_field() {
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("serializes");
        let schema = &doc["components"]["schemas"]["CreateServiceRequest"];

        assert!(schema.get("allOf").is_none(), "{schema}");
        assert_eq!(schema["additionalProperties"], false);
        assert_eq!(schema["required"], serde_json::json!(["name"]));
        for field in [
            "name",
            "tenant",
            "cert_ttl_seconds",
            "key_mode",
            "san_template",
        ] {
            assert!(schema["properties"][field].is_object(), "{field}: {schema}");
        }
    }
}
