//! The schemas that depend on the data: an item's fields and a filter's conditions are the
//! data dir's schema (`recd_core::Schema`), known only when the server runs. The document
//! served at `/openapi.json` describes them exactly for that schema (so that a client, or a
//! generator such as schemathesis, sees which fields exist and what types they take);
//! without a schema (the route-table test) they stay open objects.
//!
//! The limits come from recd-core's constants, the same ones its validation applies.

use recd_core::filter::{MAX_BRANCHES, MAX_VALUES};
use recd_core::id::MAX_ID_BYTES;
use recd_core::item::{MAX_TAGS, MAX_TEXT_BYTES};
use recd_core::{EventType, FieldType, Schema};
use serde_json::{Map, Value, json};
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, SchemaType, Type};
use utoipa::openapi::{RefOr, Schema as OaSchema};

use crate::error::Code;

/// An open object: the placeholder of a data-dependent schema before [`specialize`].
pub fn item_any() -> RefOr<OaSchema> {
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::Object))
        .additional_properties(Some(AdditionalProperties::FreeForm(true)))
        .build()
        .into()
}

/// An id of API.md: 1–256 bytes of UTF-8 without control characters. JSON Schema counts
/// characters, not bytes: `maxLength` is the byte limit, which an id of multi-byte
/// characters can still exceed (a 400 names it).
pub fn id() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": MAX_ID_BYTES,
        "pattern": "^[^\\u0000-\\u001F\\u007F-\\u009F]*$"})
}

/// A list of ids (each as [`id`]), for `schema_with`.
pub fn id_list() -> RefOr<OaSchema> {
    // Our own constant schema always converts; the test below holds it.
    serde_json::from_value(json!({"type": "array", "items": id()})).unwrap_or_else(|_| item_any())
}

/// A recommend request's `exclude`: at most 10000 ids, or null.
pub fn exclude_list() -> RefOr<OaSchema> {
    serde_json::from_value(
        json!({"anyOf": [{"type": "array", "items": id(), "maxItems": 10_000}, {"type": "null"}]}),
    )
    .unwrap_or_else(|_| item_any())
}

/// A strategy's `ranking`: the `[ranking]` keys that differ from the configuration, with
/// the ranges `check_ranking` holds them to (f64s are finite in JSON anyway).
pub fn ranking_overrides() -> RefOr<OaSchema> {
    let count = |max: u64, min: u64| json!({"type": "integer", "minimum": min, "maximum": max});
    let number = json!({"type": "number"});
    serde_json::from_value(
        json!({"anyOf": [{"type": "object", "additionalProperties": false,
        "properties": {
            "candidates": count(10_000, 1), "popular_candidates": count(10_000, 0),
            "transitions_candidates": count(10_000, 0), "transitions_weight": number,
            "session_share_max": {"type": "number", "minimum": 0, "maximum": 1},
            "session_saturation": number, "similarity_weight": number,
            "popularity_weight": number, "rrf_k": number, "exclude_seen": {"type": "boolean"}}},
        {"type": "null"}]}),
    )
    .unwrap_or_else(|_| item_any())
}

/// The error shape of API.md, its codes taken from [`Code`].
pub fn error_body() -> Value {
    let mut codes: Vec<&str> = Code::ALL.iter().map(|c| c.parts().1).collect();
    codes.dedup();
    codes.sort_unstable();
    codes.dedup();
    json!({"type": "object", "required": ["error"], "additionalProperties": false,
        "description": "Every error answer. 405, 413, 415 and 431 use the code invalid_argument.",
        "properties": {"error": {"type": "object", "required": ["code", "message"], "additionalProperties": false,
            "properties": {
                "code": {"type": "string", "enum": codes},
                "message": {"type": "string"},
                "details": {"type": "array", "items": {"type": "object"},
                    "description": "Per-element problems of a batch, e.g. {index, id, message}"}}}}})
}

/// An event of API.md, its types taken from [`EventType::ALL`]. Which `value` an event
/// takes depends on its type (recd-core's `check_value`), so the document says it per type:
/// `dwell` needs seconds (0-86400), `rating` needs 0.5-5, the others take none or a number
/// that is not negative.
pub fn event() -> Value {
    use recd_core::event::MAX_DWELL_SECONDS;
    let others: Vec<&str> = EventType::ALL
        .iter()
        .filter(|k| !matches!(k, EventType::Dwell | EventType::Rating))
        .map(|k| k.as_str())
        .collect();
    let kinds: Vec<&str> = EventType::ALL.iter().map(|k| k.as_str()).collect();
    let nullable_id = json!({"anyOf": [id(), {"type": "null"}]});
    json!({"type": "object", "required": ["user_id", "item_id", "type"], "additionalProperties": false,
        "properties": {
            "user_id": id(), "item_id": id(),
            "type": {"type": "string", "enum": kinds,
                "description": "dislike and hide: the item never comes back for the user (dislike also turns their session away from it); skip: a weak negative that does not exclude"},
            "value": {"type": ["number", "null"], "description": "seconds for dwell (0-86400, required), 0.5-5 for rating (required); for the other types none, or a number that is not negative"},
            "timestamp": {"description": "RFC 3339, or epoch milliseconds (1970 to 9999, at most [server] max_event_future_seconds ahead); now when absent",
                "anyOf": [{"type": "string", "format": "date-time"}, {"type": "integer", "minimum": 0, "maximum": recd_core::event::MAX_TIMESTAMP_MS}, {"type": "null"}]},
            "recommendation_id": nullable_id},
        "oneOf": [
            {"required": ["value"], "properties": {"type": {"const": "dwell"},
                "value": {"type": "number", "minimum": 0, "maximum": MAX_DWELL_SECONDS}}},
            {"required": ["value"], "properties": {"type": {"const": "rating"},
                "value": {"type": "number", "minimum": 0.5, "maximum": 5}}},
            {"properties": {"type": {"enum": others},
                "value": {"anyOf": [{"type": "number", "minimum": 0}, {"type": "null"}]}}}]})
}

fn metric_name(m: recd_core::Metric) -> &'static str {
    match m {
        recd_core::Metric::Cosine => "cosine: not all zero",
        recd_core::Metric::Ip => "inner product",
        recd_core::Metric::L2 => "euclidean",
    }
}

/// Names the document's `Filter` schema (filled by [`specialize`]) where a request type
/// holds a filter as raw JSON, which recd-core parses against the data's schema.
pub struct FilterDoc;

/// Names the document's `Event` schema (filled by [`specialize`]) where a request holds
/// events as raw JSON, which `recd_core::Event::from_json` validates.
pub struct EventDoc;

macro_rules! named_placeholder {
    ($ty:ty, $name:literal) => {
        impl utoipa::PartialSchema for $ty {
            fn schema() -> RefOr<OaSchema> {
                item_any()
            }
        }
        impl utoipa::ToSchema for $ty {
            fn name() -> std::borrow::Cow<'static, str> {
                $name.into()
            }
        }
    };
}

named_placeholder!(FilterDoc, "Filter");
named_placeholder!(EventDoc, "Event");
named_placeholder!(crate::error::ErrorBody, "Error");

/// A field's value in an item.
fn field_value(ty: FieldType) -> Value {
    let text = json!({"type": "string", "maxLength": MAX_TEXT_BYTES});
    // A tag value follows the id rule (recd-core's `validate_tag`).
    let tag = id();
    match ty {
        FieldType::Tag => json!({"anyOf": [tag,
            {"type": "array", "items": tag, "maxItems": MAX_TAGS}, {"type": "null"}],
            "description": "tag: a string or an array of strings in requests; always an array in answers"}),
        FieldType::Numeric => json!({"type": ["number", "null"]}),
        FieldType::Bool => json!({"type": ["boolean", "null"]}),
        FieldType::Text => json!({"anyOf": [text, {"type": "null"}]}),
    }
}

/// A vector of `schema`: exactly `dim` numbers, each a finite 32-bit float, and under
/// cosine not all zero; no component beyond the norm bound. (The bounds on the whole
/// vector's norm, which recd-core also checks, have no JSON Schema keyword.)
fn vector(schema: &Schema) -> Value {
    // The largest component a vector may have: its norm alone may not exceed the bound.
    let max = recd_core::vector::MAX_NORM_SQUARED.sqrt();
    let mut v = json!({"type": "array", "items": {"type": "number", "minimum": -max, "maximum": max},
        "minItems": schema.vector.dim, "maxItems": schema.vector.dim});
    if schema.vector.metric == recd_core::Metric::Cosine {
        v["not"] = json!({"items": {"const": 0}});
    }
    v
}

/// An item of `schema`: `id`, the optional vector of its dimension, and its fields.
fn item(schema: &Schema, details: bool) -> Value {
    let mut props = Map::new();
    props.insert("id".into(), id());
    props.insert(
        "vector".into(),
        json!({"anyOf": [vector(schema), {"type": "null"}],
            "description": format!("{} finite numbers ({}); only with ?include_vector=true in answers",
                schema.vector.dim, metric_name(schema.vector.metric))}),
    );
    for (name, ty) in &schema.fields {
        props.insert(name.clone(), field_value(*ty));
    }
    if details {
        props.insert(
            "details".into(),
            json!({"type": ["object", "null"], "description": "The catalog source's row (null when it has none); present when a catalog source is configured"}),
        );
    }
    json!({"type": "object", "required": ["id"], "additionalProperties": false, "properties": props})
}

/// A filter over `schema`'s fields (API.md's Filter).
fn filter(schema: &Schema) -> Value {
    let mut props = Map::new();
    // One tag, or a list of 1 to MAX_VALUES of them; each a tag value as in items.
    let tags = json!({"anyOf": [id(), {"type": "array", "items": id(), "minItems": 1, "maxItems": MAX_VALUES}]});
    let number = json!({"type": "number"});
    for (name, ty) in &schema.fields {
        let cond = match ty {
            FieldType::Tag => {
                json!({"type": "object", "minProperties": 1, "additionalProperties": false,
                "properties": {"any": tags, "none": tags}})
            }
            FieldType::Numeric => {
                json!({"type": "object", "minProperties": 1, "additionalProperties": false,
                "properties": {"gt": number, "gte": number, "lt": number, "lte": number, "eq": number}})
            }
            FieldType::Bool => json!({"type": "boolean"}),
            FieldType::Text => {
                json!({"type": "object", "required": ["match"], "additionalProperties": false,
                "properties": {"match": {"type": "string", "pattern": "\\w",
                    "description": "the words every match holds (letters, digits and _; at most 32 distinct)"}}})
            }
        };
        props.insert(name.clone(), cond);
    }
    props.insert(
        "or".into(),
        json!({"type": "array", "minItems": 1, "maxItems": MAX_BRANCHES, "items": {"$ref": "#/components/schemas/Filter"}}),
    );
    props.insert("not".into(), json!({"$ref": "#/components/schemas/Filter"}));
    json!({"type": "object", "additionalProperties": false, "properties": props,
        "description": "Every key a condition, all must hold: tag {any|none}, numeric {gt,gte,lt,lte,eq}, bool, text {match}, or: [Filter], not: Filter. Limits: depth 8, 256 conditions, 4096 values in all."})
}

/// Fills the data-dependent schemas of `doc` (`Item`, `ItemDetails`, `Filter`) for
/// `schema`; without one they are open objects.
pub fn specialize(doc: &mut Value, schema: Option<&Schema>) {
    let schemas = &mut doc["components"]["schemas"];
    schemas["Error"] = error_body();
    schemas["Event"] = event();
    match schema {
        Some(schema) => {
            schemas["Item"] = item(schema, false);
            schemas["ItemDetails"] = item(schema, true);
            schemas["Filter"] = filter(schema);
            schemas["Diversity"] = request_diversity(schema);
            schemas["IdVector"]["properties"]["vector"] = vector(schema);
        }
        None => {
            let open = json!({"type": "object", "additionalProperties": true,
                "description": "Depends on the data's schema: see /openapi.json of a running server"});
            schemas["Item"] = open.clone();
            schemas["ItemDetails"] = open.clone();
            schemas["Filter"] = open;
            schemas["Diversity"] = serde_json::to_value(diversity()).unwrap_or_default();
        }
    }
}

/// `diversity` of a request: [`diversity`] whose `field` is one of `schema`'s tag or bool
/// fields, the ones a request is checked against.
fn request_diversity(schema: &Schema) -> Value {
    let fields: Vec<&str> = schema
        .fields
        .iter()
        .filter(|(_, ty)| matches!(ty, FieldType::Tag | FieldType::Bool))
        .map(|(name, _)| name.as_str())
        .collect();
    let mut d = serde_json::to_value(diversity()).unwrap_or_default();
    d["properties"]["field"] = json!({"type": "string", "enum": fields});
    d
}

/// Names the document's `Diversity` schema (filled by [`specialize`]) in a recommend
/// request, whose field the data's schema decides.
pub fn diversity_ref() -> RefOr<OaSchema> {
    // Our own constant schema always converts.
    serde_json::from_value(
        json!({"anyOf": [{"$ref": "#/components/schemas/Diversity"}, {"type": "null"}]}),
    )
    .unwrap_or_else(|_| item_any())
}

/// `diversity` of a request or a strategy: at most `max_per_value` items per value of a tag or bool field.
pub fn diversity() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property("field", ObjectBuilder::new().schema_type(Type::String))
        .property(
            "max_per_value",
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(1)),
        )
        .required("field")
        .required("max_per_value")
        .additional_properties(Some(
            utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
        ))
        .description(Some(
            "At most max_per_value items per value of a tag or bool field",
        ))
        .build()
}
