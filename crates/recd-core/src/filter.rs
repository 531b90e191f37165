//! The filter language of API.md: parsing against the schema, and evaluation on an item.
//!
//! A filter arrives as JSON (`{"category":{"any":[..]},"price":{"gte":10},"or":[..],"not":{..}}`),
//! is validated once against the schema (unknown field or wrong condition type → 400), and
//! becomes a small AST that every backend translates: the embedded index into bitmaps, the
//! Redis backend into an escaped RediSearch query. [`Filter::matches`] is the reference
//! semantics that both are tested against:
//! - tag `any`: the item has at least one of the values; `none`: it has none of them
//!   (an item without the field has none);
//! - numeric / bool / text conditions never match an item that lacks the field;
//! - `not` is the complement, `or` the union, several keys of one object the intersection.

use std::ops::Bound;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::ValidationError;
use crate::invalid;
use crate::item::{FieldValue, Item, validate_tag};
use crate::schema::{FieldType, Schema};
use crate::text::{distinct_terms, tokenize};

/// How deeply `or` / `not` may nest.
pub const MAX_DEPTH: usize = 16;
/// The most values one `any` / `none` list may hold.
pub const MAX_VALUES: usize = 1024;

/// A validated filter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Filter {
    /// Every sub-filter holds (an empty list matches everything).
    And(Vec<Filter>),
    /// At least one sub-filter holds.
    Or(Vec<Filter>),
    /// The sub-filter does not hold.
    Not(Box<Filter>),
    /// The tag field has at least one of `values`.
    TagAny {
        /// Field name.
        field: String,
        /// Accepted values.
        values: Vec<String>,
    },
    /// The tag field has none of `values`.
    TagNone {
        /// Field name.
        field: String,
        /// Rejected values.
        values: Vec<String>,
    },
    /// The numeric field lies within the bounds.
    Range {
        /// Field name.
        field: String,
        /// Lower bound.
        min: Bound<f64>,
        /// Upper bound.
        max: Bound<f64>,
    },
    /// The bool field equals `value`.
    Bool {
        /// Field name.
        field: String,
        /// Required value.
        value: bool,
    },
    /// The text field contains every term.
    Text {
        /// Field name.
        field: String,
        /// Lowercase distinct terms (never empty).
        terms: Vec<String>,
    },
}

impl Filter {
    /// A filter that matches every item.
    pub fn all() -> Self {
        Filter::And(Vec::new())
    }

    /// Whether this filter matches everything (an empty conjunction).
    pub fn is_all(&self) -> bool {
        matches!(self, Filter::And(v) if v.is_empty())
    }

    /// Parses and validates a filter object against the schema.
    pub fn parse(value: &Value, schema: &Schema) -> Result<Filter, ValidationError> {
        parse_object(value, schema, 0)
    }

    /// The reference semantics: does `item` pass?
    pub fn matches(&self, item: &Item) -> bool {
        match self {
            Filter::And(all) => all.iter().all(|f| f.matches(item)),
            Filter::Or(any) => any.iter().any(|f| f.matches(item)),
            Filter::Not(f) => !f.matches(item),
            Filter::TagAny { field, values } => item
                .field(field)
                .and_then(FieldValue::as_tags)
                .is_some_and(|tags| tags.iter().any(|t| values.contains(t))),
            Filter::TagNone { field, values } => !item
                .field(field)
                .and_then(FieldValue::as_tags)
                .is_some_and(|tags| tags.iter().any(|t| values.contains(t))),
            Filter::Range { field, min, max } => item
                .field(field)
                .and_then(FieldValue::as_number)
                .is_some_and(|n| in_range(n, *min, *max)),
            Filter::Bool { field, value } => {
                matches!(item.field(field), Some(FieldValue::Bool(b)) if b == value)
            }
            Filter::Text { field, terms } => match item.field(field) {
                Some(FieldValue::Text(text)) => {
                    let tokens = tokenize(text);
                    terms.iter().all(|t| tokens.contains(t))
                }
                _ => false,
            },
        }
    }

    /// A canonical string for cache keys: equal filters give equal strings.
    pub fn canonical(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Whether `n` lies within the bounds.
pub fn in_range(n: f64, min: Bound<f64>, max: Bound<f64>) -> bool {
    let lo = match min {
        Bound::Included(m) => n >= m,
        Bound::Excluded(m) => n > m,
        Bound::Unbounded => true,
    };
    let hi = match max {
        Bound::Included(m) => n <= m,
        Bound::Excluded(m) => n < m,
        Bound::Unbounded => true,
    };
    lo && hi
}

fn parse_object(value: &Value, schema: &Schema, depth: usize) -> Result<Filter, ValidationError> {
    if depth > MAX_DEPTH {
        return invalid!("filter nests deeper than {MAX_DEPTH} levels");
    }
    let Value::Object(map) = value else {
        return invalid!("a filter must be a JSON object");
    };
    let mut all = Vec::with_capacity(map.len());
    for (key, cond) in map {
        match key.as_str() {
            "or" => {
                let Value::Array(subs) = cond else {
                    return invalid!("'or' must be an array of filters");
                };
                if subs.is_empty() {
                    return invalid!("'or' must hold at least one filter");
                }
                let subs = subs
                    .iter()
                    .map(|s| parse_object(s, schema, depth + 1))
                    .collect::<Result<_, _>>()?;
                all.push(Filter::Or(subs));
            }
            "not" => all.push(Filter::Not(Box::new(parse_object(
                cond,
                schema,
                depth + 1,
            )?))),
            field => {
                let Some(ty) = schema.field(field) else {
                    return invalid!("unknown filter field '{field}' (not in the schema)");
                };
                parse_condition(field, ty, cond, &mut all)?;
            }
        }
    }
    Ok(if all.len() == 1 {
        all.pop().unwrap_or_else(Filter::all)
    } else {
        Filter::And(all)
    })
}

fn parse_condition(
    field: &str,
    ty: FieldType,
    cond: &Value,
    out: &mut Vec<Filter>,
) -> Result<(), ValidationError> {
    match ty {
        FieldType::Tag => {
            let map = condition_object(field, "tag", "{\"any\":[...]} or {\"none\":[...]}", cond)?;
            for (op, values) in map {
                if !matches!(op.as_str(), "any" | "none") {
                    return invalid!("tag field '{field}' takes 'any' or 'none', not '{op}'");
                }
                let values = tag_values(field, op, values)?;
                let field = field.to_string();
                match op.as_str() {
                    "any" => out.push(Filter::TagAny { field, values }),
                    "none" => out.push(Filter::TagNone { field, values }),
                    other => {
                        return invalid!(
                            "tag field '{field}' takes 'any' or 'none', not '{other}'"
                        );
                    }
                }
            }
        }
        FieldType::Numeric => {
            let map = condition_object(field, "numeric", "{\"gte\":1,\"lt\":9}", cond)?;
            let (mut min, mut max) = (Bound::Unbounded, Bound::Unbounded);
            for (op, v) in map {
                if !matches!(op.as_str(), "gt" | "gte" | "lt" | "lte" | "eq") {
                    return invalid!(
                        "numeric field '{field}' takes gt, gte, lt, lte or eq, not '{op}'"
                    );
                }
                let Some(n) = v.as_f64().filter(|n| n.is_finite()) else {
                    return invalid!("'{field}.{op}' must be a finite number");
                };
                match op.as_str() {
                    "gt" => min = tighter_min(min, Bound::Excluded(n)),
                    "gte" => min = tighter_min(min, Bound::Included(n)),
                    "lt" => max = tighter_max(max, Bound::Excluded(n)),
                    "lte" => max = tighter_max(max, Bound::Included(n)),
                    "eq" => {
                        min = tighter_min(min, Bound::Included(n));
                        max = tighter_max(max, Bound::Included(n));
                    }
                    _ => unreachable!("checked above"),
                }
            }
            out.push(Filter::Range {
                field: field.to_string(),
                min,
                max,
            });
        }
        FieldType::Bool => match cond {
            Value::Bool(b) => out.push(Filter::Bool {
                field: field.to_string(),
                value: *b,
            }),
            _ => return invalid!("bool field '{field}' takes true or false"),
        },
        FieldType::Text => {
            let map = condition_object(field, "text", "{\"match\":\"words\"}", cond)?;
            for (op, v) in map {
                if op != "match" {
                    return invalid!("text field '{field}' takes 'match', not '{op}'");
                }
                let Value::String(s) = v else {
                    return invalid!("'{field}.match' must be a string");
                };
                let terms = distinct_terms(s);
                if terms.is_empty() {
                    return invalid!("'{field}.match' has no searchable terms");
                }
                out.push(Filter::Text {
                    field: field.to_string(),
                    terms,
                });
            }
        }
    }
    Ok(())
}

fn condition_object<'a>(
    field: &str,
    ty: &str,
    example: &str,
    cond: &'a Value,
) -> Result<&'a Map<String, Value>, ValidationError> {
    match cond {
        Value::Object(map) if !map.is_empty() => Ok(map),
        _ => invalid!("{ty} field '{field}' takes a condition object such as {example}"),
    }
}

fn tag_values(field: &str, op: &str, v: &Value) -> Result<Vec<String>, ValidationError> {
    let values: Vec<String> = match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .map(|x| match x {
                Value::String(s) => Ok(s.clone()),
                _ => invalid!("'{field}.{op}' must hold strings"),
            })
            .collect::<Result<_, _>>()?,
        _ => return invalid!("'{field}.{op}' must be a string or an array of strings"),
    };
    if values.is_empty() {
        return invalid!("'{field}.{op}' must hold at least one value");
    }
    if values.len() > MAX_VALUES {
        return invalid!("'{field}.{op}' holds more than {MAX_VALUES} values");
    }
    for t in &values {
        validate_tag(field, t)?;
    }
    Ok(values)
}

fn tighter_min(a: Bound<f64>, b: Bound<f64>) -> Bound<f64> {
    match (a, b) {
        (Bound::Unbounded, x) | (x, Bound::Unbounded) => x,
        (x, y) => {
            let (xv, yv) = (bound_value(x), bound_value(y));
            if xv > yv || (xv == yv && matches!(x, Bound::Excluded(_))) {
                x
            } else {
                y
            }
        }
    }
}

fn tighter_max(a: Bound<f64>, b: Bound<f64>) -> Bound<f64> {
    match (a, b) {
        (Bound::Unbounded, x) | (x, Bound::Unbounded) => x,
        (x, y) => {
            let (xv, yv) = (bound_value(x), bound_value(y));
            if xv < yv || (xv == yv && matches!(x, Bound::Excluded(_))) {
                x
            } else {
                y
            }
        }
    }
}

fn bound_value(b: Bound<f64>) -> f64 {
    match b {
        Bound::Included(v) | Bound::Excluded(v) => v,
        Bound::Unbounded => f64::NAN,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schema() -> Schema {
        Schema::demo(2)
    }

    fn item(v: Value) -> Item {
        Item::from_json(&v, &schema()).unwrap()
    }

    fn f(v: Value) -> Filter {
        Filter::parse(&v, &schema()).unwrap()
    }

    #[test]
    fn evaluates_each_condition_kind() {
        let shoe = item(
            json!({"id":"1","category":["shoes","sale"],"brand":"acme","price":50,
                               "in_stock":true,"title":"Trail running shoe"}),
        );
        let bare = item(json!({"id":"2"}));
        let cases = [
            (json!({"category":{"any":["bags","shoes"]}}), true, false),
            (json!({"brand":{"none":["acme"]}}), false, true),
            (json!({"price":{"gte":50,"lt":100}}), true, false),
            (json!({"price":{"gt":50}}), false, false),
            (json!({"price":{"eq":50}}), true, false),
            (json!({"in_stock":true}), true, false),
            (json!({"in_stock":false}), false, false),
            (json!({"title":{"match":"RUNNING trail"}}), true, false),
            (json!({"title":{"match":"road running"}}), false, false),
            (json!({"not":{"in_stock":true}}), false, true),
            (
                json!({"or":[{"brand":{"any":"zeta"}},{"price":{"lte":50}}]}),
                true,
                false,
            ),
            (json!({}), true, true),
        ];
        for (filter, on_shoe, on_bare) in cases {
            let parsed = f(filter.clone());
            assert_eq!(parsed.matches(&shoe), on_shoe, "{filter} on shoe");
            assert_eq!(parsed.matches(&bare), on_bare, "{filter} on bare");
        }
    }

    #[test]
    fn rejects_bad_filters() {
        let bad = [
            (
                json!({"colour":{"any":["red"]}}),
                "unknown filter field 'colour'",
            ),
            (json!({"price":{"any":["1"]}}), "numeric field"),
            (json!({"price":{"gte":"1"}}), "finite number"),
            (json!({"category":{"gte":1}}), "tag field"),
            (json!({"category":"shoes"}), "condition object"),
            (json!({"category":{"any":[]}}), "at least one"),
            (json!({"in_stock":"yes"}), "true or false"),
            (json!({"title":{"match":"  !! "}}), "no searchable terms"),
            (json!({"or":[]}), "at least one"),
            (json!({"or":{}}), "array"),
            (json!([]), "object"),
        ];
        for (v, needle) in bad {
            let err = Filter::parse(&v, &schema()).unwrap_err();
            assert!(err.message.contains(needle), "{v}: {}", err.message);
        }
        let mut deep = json!({"in_stock": true});
        for _ in 0..20 {
            deep = json!({ "not": deep });
        }
        assert!(Filter::parse(&deep, &schema()).is_err());
    }

    #[test]
    fn numeric_bounds_keep_the_tighter_one() {
        let parsed = f(json!({"price":{"gte":10,"gt":10,"lte":20,"lt":30}}));
        assert_eq!(
            parsed,
            Filter::Range {
                field: "price".into(),
                min: Bound::Excluded(10.0),
                max: Bound::Included(20.0)
            }
        );
    }
}
