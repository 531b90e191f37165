//! The item schema: the vector's dimension and metric, and the typed filterable fields.
//!
//! It comes from the `[schema]` table of the config (API.md) and is remembered by a data
//! dir. Field names are restricted to identifiers so that they are safe everywhere they go
//! (Redis field names, Prometheus labels, JSON keys) without escaping.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::ValidationError;

/// How vectors are compared. Scores are always "higher is better".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Cosine similarity (vectors are normalized on the way in).
    #[default]
    Cosine,
    /// Inner product.
    Ip,
    /// Euclidean distance; the score is the negated squared distance.
    L2,
}

/// How the embedded vector index stores the copy of the vectors its searches read
/// (`recd_index::Quantization` is this type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Quantization {
    /// The `f32` vectors themselves.
    #[default]
    None,
    /// One byte per dimension (scalar quantization trained on the data); each search
    /// re-scores its short list on the `f32` vectors, so scores stay exact.
    Int8,
}

impl Quantization {
    /// The mode's configuration name: `"none"` or `"int8"` (same as its serde form).
    pub fn as_str(self) -> &'static str {
        match self {
            Quantization::None => "none",
            Quantization::Int8 => "int8",
        }
    }

    /// Whether this is the default, `none` (which a serialized schema leaves out, so that
    /// schemas written before the option existed read back unchanged).
    pub fn is_none(&self) -> bool {
        *self == Quantization::None
    }
}

/// The vector part of the schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VectorSpec {
    /// Number of components of every item vector.
    pub dim: usize,
    /// Similarity used for KNN.
    #[serde(default)]
    pub metric: Metric,
    /// The embedded index's search copy (`none` | `int8`); the redis backend's index is
    /// Redis's own and ignores it. Not part of the data: a data dir may change it.
    #[serde(default, skip_serializing_if = "Quantization::is_none")]
    pub quantization: Quantization,
    /// A tag field whose values each get their own graph in the embedded index, so that a
    /// KNN filtered on a few of its values walks only those values' items (a filter that
    /// correlates with the vectors, like a category, is the embedded index's slowest case
    /// through one graph). The redis backend ignores it. Not part of the data: a data dir
    /// may change it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_by: Option<String>,
}

/// The type of a filterable item field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// One string or an array of strings; exact match, any-of / none-of.
    Tag,
    /// A finite f64; range filters.
    Numeric,
    /// true / false.
    Bool,
    /// Free text, tokenized; `match` means every term is present.
    Text,
}

/// The whole schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schema {
    /// The vector's dimension and metric.
    pub vector: VectorSpec,
    /// Field name → type. Ordered, so that everything derived from it is deterministic.
    #[serde(default)]
    pub fields: BTreeMap<String, FieldType>,
}

/// Names that an item field may not take: they mean something else in items and filters.
pub const RESERVED_FIELD_NAMES: &[&str] = &["id", "vector", "or", "not"];

/// The largest vector dimension accepted.
pub const MAX_DIM: usize = 4096;

impl Schema {
    /// The schema `recd demo` uses (API.md).
    pub fn demo(dim: usize) -> Self {
        let fields = [
            ("category", FieldType::Tag),
            ("brand", FieldType::Tag),
            ("price", FieldType::Numeric),
            ("in_stock", FieldType::Bool),
            ("popularity", FieldType::Numeric),
            ("title", FieldType::Text),
        ]
        .into_iter()
        .map(|(n, t)| (n.to_string(), t))
        .collect();
        Self {
            vector: VectorSpec {
                dim,
                metric: Metric::Cosine,
                quantization: Quantization::None,
                partition_by: None,
            },
            fields,
        }
    }

    /// Checks the schema itself (dimension range, field names).
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.vector.dim == 0 || self.vector.dim > MAX_DIM {
            return crate::invalid!(
                "schema.vector.dim must be between 1 and {MAX_DIM}, got {}",
                self.vector.dim
            );
        }
        for name in self.fields.keys() {
            validate_field_name(name)?;
        }
        if let Some(field) = &self.vector.partition_by
            && self.field(field) != Some(FieldType::Tag)
        {
            return crate::invalid!(
                "schema.vector.partition_by must name a tag field of the schema, got '{field}'"
            );
        }
        Ok(())
    }

    /// Whether `other` describes the same data: equal except for settings of how the data
    /// is indexed (`vector.quantization`, `vector.partition_by`), which a data dir may
    /// change between starts.
    pub fn same_data(&self, other: &Schema) -> bool {
        let mut a = self.clone();
        a.vector.quantization = other.vector.quantization;
        a.vector.partition_by.clone_from(&other.vector.partition_by);
        a == *other
    }

    /// The type of `field`, if the schema has it.
    pub fn field(&self, field: &str) -> Option<FieldType> {
        self.fields.get(field).copied()
    }

    /// The names of fields of one type, in order.
    pub fn fields_of(&self, ty: FieldType) -> impl Iterator<Item = &str> {
        self.fields
            .iter()
            .filter(move |(_, t)| **t == ty)
            .map(|(n, _)| n.as_str())
    }
}

fn validate_field_name(name: &str) -> Result<(), ValidationError> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !first_ok || !rest_ok || name.len() > 64 {
        return crate::invalid!(
            "schema field name '{name}' must be an identifier: a letter or '_' followed by up to 63 letters, digits or '_'"
        );
    }
    if RESERVED_FIELD_NAMES.contains(&name) {
        return crate::invalid!("schema field name '{name}' is reserved");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_schema_is_valid() {
        assert!(Schema::demo(64).validate().is_ok());
    }

    #[test]
    fn rejects_bad_names_and_dims() {
        let mut s = Schema::demo(0);
        assert!(s.validate().is_err());
        s.vector.dim = 8;
        s.fields.insert("not".into(), FieldType::Tag);
        assert!(s.validate().is_err());
        s.fields.remove("not");
        s.fields.insert("bad name".into(), FieldType::Tag);
        assert!(s.validate().is_err());
    }

    #[test]
    fn parses_from_json_like_config() {
        let s: Schema = serde_json::from_str(
            r#"{"vector":{"dim":4,"metric":"ip"},"fields":{"c":"tag","p":"numeric"}}"#,
        )
        .unwrap();
        assert_eq!(s.vector.metric, Metric::Ip);
        assert_eq!(s.vector.quantization, Quantization::None);
        assert_eq!(s.field("p"), Some(FieldType::Numeric));
    }

    #[test]
    fn quantization_is_optional_and_left_out_when_none() {
        let s: Schema =
            serde_json::from_str(r#"{"vector":{"dim":4,"quantization":"int8"}}"#).unwrap();
        assert_eq!(s.vector.quantization, Quantization::Int8);
        assert_eq!(s.vector.quantization.as_str(), "int8");
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains(r#""quantization":"int8""#), "{json}");
        // A schema without it serializes exactly as before the option existed.
        let plain = Schema::demo(8);
        let json = serde_json::to_value(&plain).unwrap();
        assert_eq!(
            json["vector"],
            serde_json::json!({"dim": 8, "metric": "cosine"})
        );
        assert!(
            serde_json::from_str::<Schema>(r#"{"vector":{"dim":4,"quantization":"int4"}}"#)
                .is_err()
        );
        // Changing it keeps the data the same; changing the metric does not.
        let mut q = plain.clone();
        q.vector.quantization = Quantization::Int8;
        assert!(q.same_data(&plain) && plain.same_data(&q) && q != plain);
        q.vector.metric = Metric::L2;
        assert!(!q.same_data(&plain));
    }

    #[test]
    fn partition_by_names_a_tag_field_and_is_not_part_of_the_data() {
        let plain = Schema::demo(8);
        let mut p = plain.clone();
        p.vector.partition_by = Some("category".into());
        assert!(p.validate().is_ok());
        assert!(p.same_data(&plain) && plain.same_data(&p) && p != plain);
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["vector"]["partition_by"], "category");
        // Not a field, or not a tag field: refused with the field's name.
        for bad in ["nope", "price", "title"] {
            p.vector.partition_by = Some(bad.into());
            let e = p.validate().unwrap_err();
            assert!(e.message.contains(bad), "{}", e.message);
        }
    }
}
