//! The item hash and the search index, both derived from the [`Schema`] in one place.
//!
//! An item `{prefix}item:{id}` is a Hash readable by any client:
//! - every schema field under its own name: tags joined by `\x1f` (a control character,
//!   which tag values may not contain, so no escaping is needed), numbers in Rust's
//!   shortest round-trip form, bools as `true` / `false`, text as given;
//! - `vector`: FLOAT32 little-endian bytes;
//! - hidden fields, named `__recd_*` (a schema may not use that prefix here):
//!   `__recd_id` the item's id (so that the hash is never empty, and so that existence is one
//!   field lookup), and for each text field `__recd_tok_{field}`: its
//!   `recd_core::text::tokenize` tokens joined by spaces, which is what gets indexed, so that
//!   both backends agree on what a term is (RediSearch's own tokenizer splits on ASCII
//!   punctuation only).
//!
//! Nothing that changes often lives in the item hash: any write to an indexed hash makes
//! RediSearch re-index the whole document, vector included (~1 ms on 100k × 64). Item
//! popularity therefore lives in sorted sets beside it (see `super::popular`).
//!
//! RediSearch trims spaces around tag values, so a tag with a leading or trailing space is
//! stored wrapped in `\x1e` (another control character, so the wrapping is unambiguous).

use std::collections::BTreeMap;

use recd_core::text::tokenize;
use recd_core::{FieldType, FieldValue, Item, Metric, Schema, ValidationError};

use super::RedisConfig;
use crate::{StoreError, StoreResult};

/// Separates the values of a tag field.
pub(crate) const TAG_SEPARATOR: char = '\x1f';
/// Wraps a tag value that RediSearch would otherwise trim.
const TAG_WRAP: char = '\x1e';
/// The prefix of every hidden field and alias.
pub(crate) const HIDDEN_PREFIX: &str = "__recd_";
/// The alias of the KNN distance in `FT.SEARCH` results.
pub(crate) const SCORE_ALIAS: &str = "__recd_score";
/// The hash field holding the item's id; every item hash has it.
pub(crate) const ID_FIELD: &str = "__recd_id";

/// The hash field (and index attribute) holding the tokens of text field `field`.
pub(crate) fn token_field(field: &str) -> String {
    format!("{HIDDEN_PREFIX}tok_{field}")
}

/// Refuses schemas this backend cannot store faithfully.
pub(crate) fn check_schema(schema: &Schema) -> StoreResult<()> {
    schema.validate()?;
    if let Some(name) = schema.fields.keys().find(|n| n.starts_with(HIDDEN_PREFIX)) {
        return Err(StoreError::Invalid(ValidationError::new(format!(
            "schema field '{name}': names starting with '{HIDDEN_PREFIX}' are reserved by the redis backend"
        ))));
    }
    Ok(())
}

/// The arguments of `FT.CREATE <index> ...` for `schema`.
pub(crate) fn create_args(
    index: &str,
    item_prefix: &str,
    schema: &Schema,
    config: &RedisConfig,
) -> Vec<String> {
    let mut args: Vec<String> = [index, "ON", "HASH", "PREFIX", "1", item_prefix]
        .into_iter()
        .map(String::from)
        .collect();
    args.extend(["STOPWORDS", "0", "SCHEMA"].map(String::from));
    for (name, ty) in &schema.fields {
        match ty {
            FieldType::Tag => args.extend([
                name.clone(),
                "TAG".into(),
                "SEPARATOR".into(),
                TAG_SEPARATOR.to_string(),
                "CASESENSITIVE".into(),
            ]),
            FieldType::Bool => args.extend([name.clone(), "TAG".into()]),
            FieldType::Numeric => args.extend([name.clone(), "NUMERIC".into()]),
            FieldType::Text => {
                args.extend([token_field(name), "TEXT".into(), "NOSTEM".into()]);
            }
        }
    }
    let metric = match schema.vector.metric {
        Metric::Cosine => "COSINE",
        Metric::Ip => "IP",
        Metric::L2 => "L2",
    };
    args.extend([
        "vector".into(),
        "VECTOR".into(),
        "HNSW".into(),
        "12".into(),
        "TYPE".into(),
        "FLOAT32".into(),
        "DIM".into(),
        schema.vector.dim.to_string(),
        "DISTANCE_METRIC".into(),
        metric.into(),
        "M".into(),
        config.hnsw_m.to_string(),
        "EF_CONSTRUCTION".into(),
        config.hnsw_ef_construction.to_string(),
        "EF_RUNTIME".into(),
        config.hnsw_ef_runtime.to_string(),
    ]);
    args
}

/// The fields indexed as TAG (tag and bool fields), in schema order: the ones with a
/// per-value popularity ZSET.
pub(crate) fn tag_fields(schema: &Schema) -> Vec<&str> {
    schema
        .fields
        .iter()
        .filter(|(_, ty)| matches!(ty, FieldType::Tag | FieldType::Bool))
        .map(|(name, _)| name.as_str())
        .collect()
}

/// The item's doc (`Keys::doc`): its fields (no vector) as one JSON object in the API's
/// shape, except that tags are always arrays and numbers are strings in Rust's shortest
/// round-trip form (serde_json's float parser is not exact without an extra feature).
pub(crate) fn doc_bytes(item: &Item) -> Vec<u8> {
    let doc: serde_json::Map<String, serde_json::Value> = item
        .fields
        .iter()
        .map(|(name, value)| {
            let v = match value {
                FieldValue::Tags(tags) => serde_json::json!(tags),
                FieldValue::Number(n) => serde_json::Value::String(n.to_string()),
                FieldValue::Bool(b) => serde_json::Value::Bool(*b),
                FieldValue::Text(t) => serde_json::Value::String(t.clone()),
            };
            (name.clone(), v)
        })
        .collect();
    serde_json::to_vec(&doc).unwrap_or_else(|_| b"{}".to_vec())
}

/// Rebuilds an item (no vector) from its doc, straight into its fields (decoding ~150
/// docs per request through intermediate maps took a third of a server's CPU).
pub(crate) fn item_from_doc(id: &str, doc: &[u8], schema: &Schema) -> StoreResult<Item> {
    use serde::de::DeserializeSeed;
    let mut de = serde_json::Deserializer::from_slice(doc);
    let fields = DocSeed(schema)
        .deserialize(&mut de)
        .and_then(|f| de.end().map(|()| f))
        .map_err(|e| StoreError::Internal(format!("item '{id}': its doc is malformed: {e}")))?;
    Ok(Item {
        id: id.to_string(),
        vector: None,
        fields,
    })
}

/// Decodes a doc against the schema; fields the schema lacks are skipped.
struct DocSeed<'s>(&'s Schema);

impl<'de> serde::de::DeserializeSeed<'de> for DocSeed<'_> {
    type Value = BTreeMap<String, FieldValue>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for DocSeed<'_> {
    type Value = BTreeMap<String, FieldValue>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an item doc (a JSON object)")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        use serde::de::Error;
        let mut out = BTreeMap::new();
        while let Some(name) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let value = match self.0.field(&name) {
                Some(FieldType::Tag) => FieldValue::Tags(map.next_value()?),
                Some(FieldType::Numeric) => {
                    let text: std::borrow::Cow<'de, str> = map.next_value()?;
                    FieldValue::Number(text.parse().map_err(|_| A::Error::custom("a number"))?)
                }
                Some(FieldType::Bool) => FieldValue::Bool(map.next_value()?),
                Some(FieldType::Text) => FieldValue::Text(map.next_value()?),
                None => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                    continue;
                }
            };
            out.insert(name.into_owned(), value);
        }
        Ok(out)
    }
}

/// Encodes a tag value so that RediSearch indexes it unchanged.
pub(crate) fn encode_tag(tag: &str) -> String {
    if tag.starts_with(' ') || tag.ends_with(' ') {
        format!("{TAG_WRAP}{tag}{TAG_WRAP}")
    } else {
        tag.to_string()
    }
}

fn decode_tag(raw: &str) -> String {
    raw.strip_prefix(TAG_WRAP)
        .and_then(|t| t.strip_suffix(TAG_WRAP))
        .unwrap_or(raw)
        .to_string()
}

/// FLOAT32 little-endian bytes.
pub(crate) fn vector_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The inverse of [`vector_bytes`]; `None` when the length is not a multiple of 4.
pub(crate) fn vector_from_bytes(b: &[u8]) -> Option<Vec<f32>> {
    b.len().is_multiple_of(4).then(|| {
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    })
}

/// The hash field/value pairs of an item: [`ID_FIELD`], the fields, the text tokens, and
/// its vector when it has one.
pub(crate) fn item_fields(item: &Item, schema: &Schema) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::with_capacity(item.fields.len() + 3);
    out.push((ID_FIELD.to_string(), item.id.clone().into_bytes()));
    for (name, value) in &item.fields {
        match value {
            FieldValue::Tags(tags) => {
                let joined: Vec<String> = tags.iter().map(|t| encode_tag(t)).collect();
                let sep = TAG_SEPARATOR.to_string();
                out.push((name.clone(), joined.join(&sep).into_bytes()));
            }
            FieldValue::Number(n) => out.push((name.clone(), n.to_string().into_bytes())),
            FieldValue::Bool(b) => out.push((name.clone(), b.to_string().into_bytes())),
            FieldValue::Text(t) => {
                out.push((name.clone(), t.clone().into_bytes()));
                if schema.field(name) == Some(FieldType::Text) {
                    out.push((token_field(name), tokenize(t).join(" ").into_bytes()));
                }
            }
        }
    }
    if let Some(v) = &item.vector {
        out.push(("vector".into(), vector_bytes(v)));
    }
    out
}

/// Rebuilds an item from hash fields (hidden fields ignored); a field that does not parse
/// as its schema type is an internal error (someone else wrote the hash).
pub(crate) fn item_from_fields(
    id: &str,
    fields: &BTreeMap<String, Vec<u8>>,
    schema: &Schema,
) -> StoreResult<Item> {
    let corrupt =
        |field: &str| StoreError::Internal(format!("item '{id}': field '{field}' is malformed"));
    let mut item = Item {
        id: id.to_string(),
        vector: None,
        fields: BTreeMap::new(),
    };
    for (name, raw) in fields {
        if name == "vector" {
            let v = vector_from_bytes(raw)
                .filter(|v| v.len() == schema.vector.dim)
                .ok_or_else(|| corrupt(name))?;
            item.vector = Some(v);
            continue;
        }
        let Some(ty) = schema.field(name) else {
            continue;
        };
        let text = std::str::from_utf8(raw).map_err(|_| corrupt(name))?;
        let value = match ty {
            FieldType::Tag => FieldValue::Tags(
                text.split(TAG_SEPARATOR)
                    .filter(|t| !t.is_empty())
                    .map(decode_tag)
                    .collect(),
            ),
            FieldType::Numeric => {
                FieldValue::Number(text.parse::<f64>().map_err(|_| corrupt(name))?)
            }
            FieldType::Bool => match text {
                "true" => FieldValue::Bool(true),
                "false" => FieldValue::Bool(false),
                _ => return Err(corrupt(name)),
            },
            FieldType::Text => FieldValue::Text(text.to_string()),
        };
        item.fields.insert(name.clone(), value);
    }
    Ok(item)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn items_round_trip_through_hash_fields() {
        let schema = Schema::demo(2);
        let item = Item::from_json(
            &json!({"id":"a","vector":[0.5,-1.0],"category":[" x","y ","a,b|c"],"brand":"acme",
                    "price":59.9,"in_stock":false,"title":"Trail-running shoe","popularity":1e300}),
            &schema,
        )
        .unwrap();
        let pairs = item_fields(&item, &schema);
        let fields: BTreeMap<String, Vec<u8>> = pairs.iter().cloned().collect();
        assert_eq!(fields["__recd_tok_title"], b"trail running shoe");
        assert_eq!(fields[ID_FIELD], b"a");
        assert_eq!(item_from_fields("a", &fields, &schema).unwrap(), item);
        let doc = doc_bytes(&item);
        let mut no_vector = item.clone();
        no_vector.vector = None;
        assert_eq!(item_from_doc("a", &doc, &schema).unwrap(), no_vector);
        assert!(item_from_doc("a", b"[1]", &schema).is_err());
        assert!(item_from_doc("a", br#"{"price":"x"}"#, &schema).is_err());
        assert!(item_from_doc("a", br#"{"price":"1"} x"#, &schema).is_err());
        // Fields the schema lacks (an older or newer version's) are skipped.
        let other = item_from_doc("a", br#"{"color":["red"],"price":"2.5"}"#, &schema).unwrap();
        assert_eq!(other.fields.len(), 1);
        assert_eq!(other.field("price"), Some(&FieldValue::Number(2.5)));
    }

    #[test]
    fn reserved_names_are_refused() {
        let mut schema = Schema::demo(2);
        schema.fields.insert("__recd_x".into(), FieldType::Tag);
        assert!(check_schema(&schema).is_err());
    }
}
