//! An item: an id, an optional embedding, and typed field values checked against the schema.
//!
//! Items arrive as JSON (`PUT /v1/items`, `recd import items`); [`Item::from_json`] is the one
//! place that decides whether such a value is acceptable, so that both backends and every
//! entry point reject the same inputs with the same messages.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::ValidationError;
use crate::id::validate_id;
use crate::invalid;
use crate::schema::{FieldType, Metric, Schema};

/// The longest text field accepted, in bytes.
pub const MAX_TEXT_BYTES: usize = 65_536;
/// The most tag values one field of one item may carry.
pub const MAX_TAGS: usize = 256;

/// A typed field value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FieldValue {
    /// Tag values (a single string is a one-element list).
    Tags(Vec<String>),
    /// A finite number.
    Number(f64),
    /// A boolean.
    Bool(bool),
    /// Free text.
    Text(String),
}

impl FieldValue {
    /// The JSON form: tags always as an array (however many), a whole number without a
    /// fraction (`1983`, not `1983.0`), so clients see one shape per field type.
    pub fn to_json(&self) -> Value {
        match self {
            FieldValue::Tags(tags) => Value::from(tags.clone()),
            FieldValue::Number(n) => number_json(*n),
            FieldValue::Bool(b) => Value::Bool(*b),
            FieldValue::Text(t) => Value::String(t.clone()),
        }
    }

    /// The tag values, if this is a tag field.
    pub fn as_tags(&self) -> Option<&[String]> {
        match self {
            FieldValue::Tags(t) => Some(t),
            _ => None,
        }
    }

    /// The number, if this is a numeric field.
    pub fn as_number(&self) -> Option<f64> {
        match self {
            FieldValue::Number(n) => Some(*n),
            _ => None,
        }
    }
}

/// `n` as JSON: an integer when it is one (within ±2⁵³, where f64 holds integers exactly).
fn number_json(n: f64) -> Value {
    const EXACT: f64 = 9_007_199_254_740_992.0;
    if n.fract() == 0.0 && n.abs() <= EXACT {
        Value::from(n as i64)
    } else {
        serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)
    }
}

/// An item validated against a schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// The item id (1–256 bytes, no control characters).
    pub id: String,
    /// The embedding, exactly `dim` finite numbers, or none (served by non-vector sources).
    pub vector: Option<Vec<f32>>,
    /// Field values; a field the schema has but the item lacks is simply absent.
    pub fields: BTreeMap<String, FieldValue>,
}

impl Item {
    /// Parses and validates one item from its JSON object form.
    pub fn from_json(value: &Value, schema: &Schema) -> Result<Item, ValidationError> {
        let Value::Object(map) = value else {
            return invalid!("an item must be a JSON object");
        };
        let id = match map.get("id") {
            Some(Value::String(id)) => id.clone(),
            Some(_) => return invalid!("'id' must be a string"),
            None => return invalid!("'id' is required"),
        };
        validate_id(&id, "id")?;
        let mut item = Item {
            id,
            vector: None,
            fields: BTreeMap::new(),
        };
        for (key, v) in map {
            match key.as_str() {
                "id" => {}
                "vector" if v.is_null() => {}
                "vector" => item.vector = Some(parse_vector(v, schema)?),
                field => {
                    let Some(ty) = schema.field(field) else {
                        return invalid!("unknown field '{field}' (not in the schema)");
                    };
                    if v.is_null() {
                        continue;
                    }
                    item.fields
                        .insert(field.to_string(), parse_field(field, ty, v)?);
                }
            }
        }
        Ok(item)
    }

    /// The JSON object form (fields in schema order; the vector only when asked for).
    pub fn to_json(&self, include_vector: bool) -> Value {
        let mut map = Map::new();
        map.insert("id".into(), Value::String(self.id.clone()));
        for (k, v) in &self.fields {
            map.insert(k.clone(), v.to_json());
        }
        if let (true, Some(vector)) = (include_vector, &self.vector) {
            map.insert("vector".into(), Value::from(vector.clone()));
        }
        Value::Object(map)
    }

    /// The value of `field`, if present.
    pub fn field(&self, field: &str) -> Option<&FieldValue> {
        self.fields.get(field)
    }
}

/// Parses a JSON array into a vector of the schema's dimension, finite, and (for cosine)
/// not all zeros.
pub fn parse_vector(v: &Value, schema: &Schema) -> Result<Vec<f32>, ValidationError> {
    let Value::Array(values) = v else {
        return invalid!("'vector' must be an array of numbers");
    };
    if values.len() != schema.vector.dim {
        return invalid!(
            "'vector' has {} components; the schema's dimension is {}",
            values.len(),
            schema.vector.dim
        );
    }
    let mut out = Vec::with_capacity(values.len());
    for (i, x) in values.iter().enumerate() {
        let Some(f) = x.as_f64() else {
            return invalid!("'vector'[{i}] is not a number");
        };
        let f = f as f32;
        if !f.is_finite() {
            return invalid!("'vector'[{i}] is not a finite 32-bit float");
        }
        out.push(f);
    }
    check_vector(&out, schema)?;
    Ok(out)
}

/// Checks an already-decoded vector (dimension, finiteness, non-zero under cosine).
pub fn check_vector(v: &[f32], schema: &Schema) -> Result<(), ValidationError> {
    if v.len() != schema.vector.dim {
        return invalid!(
            "vector has {} components; the schema's dimension is {}",
            v.len(),
            schema.vector.dim
        );
    }
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return invalid!("vector[{i}] is not finite");
    }
    if schema.vector.metric == Metric::Cosine && v.iter().all(|x| *x == 0.0) {
        return invalid!("a zero vector has no direction (metric is cosine)");
    }
    // Every component is finite, yet the vector can still be unusable: its squared norm
    // may overflow f32 (scores would be infinite), or, under cosine, be so small that
    // normalizing it overflows. Both are refused here, once, before anything is written,
    // so a backend never holds a vector its index cannot take.
    let norm_squared = crate::vector::norm_squared_f64(v);
    if norm_squared > crate::vector::MAX_NORM_SQUARED {
        return invalid!(
            "vector norm {:.3e} is too large (at most {:.3e}); scores would overflow",
            norm_squared.sqrt(),
            crate::vector::MAX_NORM_SQUARED.sqrt()
        );
    }
    if schema.vector.metric == Metric::Cosine && !crate::vector::can_normalize(norm_squared) {
        return invalid!(
            "vector norm {:.3e} is too small to normalize (metric is cosine)",
            norm_squared.sqrt()
        );
    }
    Ok(())
}

fn parse_field(field: &str, ty: FieldType, v: &Value) -> Result<FieldValue, ValidationError> {
    match ty {
        FieldType::Tag => {
            let tags: Vec<String> = match v {
                Value::String(s) => vec![s.clone()],
                Value::Array(values) => values
                    .iter()
                    .map(|t| match t {
                        Value::String(s) => Ok(s.clone()),
                        _ => invalid!("field '{field}' (tag) must hold strings"),
                    })
                    .collect::<Result<_, _>>()?,
                _ => {
                    return invalid!(
                        "field '{field}' (tag) must be a string or an array of strings"
                    );
                }
            };
            if tags.len() > MAX_TAGS {
                return invalid!(
                    "field '{field}' has {} tags; the limit is {MAX_TAGS}",
                    tags.len()
                );
            }
            for t in &tags {
                validate_tag(field, t)?;
            }
            let mut tags = tags;
            tags.dedup();
            Ok(FieldValue::Tags(tags))
        }
        FieldType::Numeric => match v.as_f64() {
            Some(n) if n.is_finite() => Ok(FieldValue::Number(n)),
            _ => invalid!("field '{field}' (numeric) must be a finite number"),
        },
        FieldType::Bool => match v {
            Value::Bool(b) => Ok(FieldValue::Bool(*b)),
            _ => invalid!("field '{field}' (bool) must be true or false"),
        },
        FieldType::Text => match v {
            Value::String(s) if s.len() <= MAX_TEXT_BYTES => Ok(FieldValue::Text(s.clone())),
            Value::String(_) => {
                invalid!("field '{field}' (text) is longer than {MAX_TEXT_BYTES} bytes")
            }
            _ => invalid!("field '{field}' (text) must be a string"),
        },
    }
}

/// Tag values follow the id rules: 1–256 bytes, no control characters.
pub fn validate_tag(field: &str, tag: &str) -> Result<(), ValidationError> {
    validate_id(tag, &format!("a value of tag field '{field}'"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schema() -> Schema {
        Schema::demo(3)
    }

    #[test]
    fn parses_a_full_item_and_round_trips() {
        let v = json!({"id":"sku-1","vector":[1.0,0.0,0.5],"category":["shoes","sale"],"brand":"acme",
                       "price":59.9,"in_stock":true,"title":"Trail running shoe","popularity":3.2});
        let item = Item::from_json(&v, &schema()).unwrap();
        assert_eq!(item.vector.as_deref(), Some(&[1.0, 0.0, 0.5][..]));
        assert_eq!(
            item.field("brand"),
            Some(&FieldValue::Tags(vec!["acme".into()]))
        );
        // Tags always come back as arrays; whole numbers without a fraction.
        let mut expected = v.clone();
        expected["brand"] = json!(["acme"]);
        assert_eq!(item.to_json(true), expected);
        let year = Item::from_json(&json!({"id":"y","price":1983.0}), &schema()).unwrap();
        assert_eq!(
            year.to_json(false).to_string(),
            r#"{"id":"y","price":1983}"#
        );
        let half = Item::from_json(&json!({"id":"h","price":2.5}), &schema()).unwrap();
        assert_eq!(half.to_json(false)["price"], json!(2.5));
        assert!(item.to_json(false).get("vector").is_none());
    }

    #[test]
    fn rejects_bad_items_with_a_reason() {
        let s = schema();
        let bad = [
            (json!({"vector":[1,0,0]}), "'id' is required"),
            (json!({"id":"a","vector":[1,0]}), "dimension"),
            (json!({"id":"a","vector":[0,0,0]}), "zero vector"),
            (json!({"id":"a","vector":[1,"x",0]}), "not a number"),
            (json!({"id":"a","vector":[1e39,0,0]}), "finite"),
            (json!({"id":"a","vector":[1e19,0.1,0]}), "too large"),
            (json!({"id":"a","vector":[1e-45,1e-45,1e-45]}), "too small"),
            (json!({"id":"a","colour":"red"}), "unknown field 'colour'"),
            (json!({"id":"a","price":"cheap"}), "numeric"),
            (json!({"id":"a","in_stock":1}), "bool"),
            (json!({"id":"a","category":[1]}), "tag"),
            (json!({"id":"a","category":[""]}), "must not be empty"),
            (json!({"id":"a\u{1}"}), "control"),
            (json!([1]), "object"),
        ];
        for (v, needle) in bad {
            let err = Item::from_json(&v, &s).unwrap_err();
            assert!(err.message.contains(needle), "{v}: {}", err.message);
        }
    }

    #[test]
    fn null_fields_are_absent() {
        let item =
            Item::from_json(&json!({"id":"a","price":null,"vector":null}), &schema()).unwrap();
        assert!(item.fields.is_empty() && item.vector.is_none());
    }
}

/// An item as written by `PUT /v1/items`: the item, and whether the request left its
/// vector out. A catalog update without `vector` keeps the stored vector, so that
/// refreshing prices or titles never wipes embeddings that training wrote; `"vector":null`
/// removes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemUpsert {
    /// The new item.
    pub item: Item,
    /// True when the request had no `vector` key at all.
    pub keep_vector: bool,
}

impl ItemUpsert {
    /// Parses one item of an upsert batch.
    pub fn from_json(value: &Value, schema: &Schema) -> Result<ItemUpsert, ValidationError> {
        let item = Item::from_json(value, schema)?;
        let keep_vector = value.get("vector").is_none();
        Ok(ItemUpsert { item, keep_vector })
    }
}
