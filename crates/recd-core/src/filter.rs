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
//!
//! # Size limits
//! A filter is bounded before it reaches a backend, identically for both: a RediSearch
//! query grows with the filter and runs on Redis's single thread (an `or` of 20,000
//! branches blocked a shared Redis for 44 s; 253 `match` terms overflowed its parser), and
//! the embedded index builds one bitmap per condition. The limits are far above what a
//! hand-written or generated product filter needs:
//! - [`MAX_DEPTH`] levels of `or` / `not` nesting;
//! - [`MAX_BRANCHES`] sub-filters in one `or`;
//! - [`MAX_VALUES`] values in one `any` / `none` list;
//! - [`MAX_TERMS`] distinct terms in one text `match`;
//! - [`MAX_NODES`] conditions and `or` / `not` operators in the whole filter;
//! - [`MAX_TOTAL_VALUES`] tag values and text terms in the whole filter.
//!
//! Going over one is a 400 whose message names the limit.

use std::ops::Bound;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::ValidationError;
use crate::invalid;
use crate::item::{FieldValue, Item, validate_tag};
use crate::schema::{FieldType, Schema};
use crate::text::{distinct_terms, tokenize};

/// How deeply `or` / `not` may nest (the top-level object is level 0).
pub const MAX_DEPTH: usize = 8;
/// The most sub-filters one `or` may hold.
pub const MAX_BRANCHES: usize = 64;
/// The most values one `any` / `none` list may hold.
pub const MAX_VALUES: usize = 1024;
/// The most distinct terms one text `match` may hold.
pub const MAX_TERMS: usize = 32;
/// The most nodes (field conditions, `or`, `not`) in one filter.
pub const MAX_NODES: usize = 256;
/// The most tag values and text terms in one filter, summed over every condition.
pub const MAX_TOTAL_VALUES: usize = 4096;

/// What a filter being parsed has used of the whole-filter limits.
#[derive(Default)]
struct Budget {
    nodes: usize,
    values: usize,
}

impl Budget {
    fn node(&mut self) -> Result<(), ValidationError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return invalid!(
                "the filter has more than {MAX_NODES} conditions and operators (limit MAX_NODES)"
            );
        }
        Ok(())
    }

    fn values(&mut self, n: usize) -> Result<(), ValidationError> {
        self.values += n;
        if self.values > MAX_TOTAL_VALUES {
            return invalid!(
                "the filter holds more than {MAX_TOTAL_VALUES} tag values and text terms in all (limit MAX_TOTAL_VALUES)"
            );
        }
        Ok(())
    }
}

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
        parse_object(value, schema, 0, &mut Budget::default())
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

    /// The values of the tag `field` that every match must have one of: the filter's own
    /// `TagAny` on `field`, or one among the conjuncts of a top-level `And` (the first). `None`
    /// when the filter does not require the field (it may then match items of any value).
    pub fn required_tags(&self, field: &str) -> Option<&[String]> {
        fn on<'a>(f: &'a Filter, field: &str) -> Option<&'a [String]> {
            match f {
                Filter::TagAny { field: f, values } if f == field => Some(values.as_slice()),
                _ => None,
            }
        }
        match self {
            Filter::And(all) => all.iter().find_map(|f| on(f, field)),
            other => on(other, field),
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

fn parse_object(
    value: &Value,
    schema: &Schema,
    depth: usize,
    budget: &mut Budget,
) -> Result<Filter, ValidationError> {
    if depth > MAX_DEPTH {
        return invalid!(
            "the filter nests 'or' / 'not' deeper than {MAX_DEPTH} levels (limit MAX_DEPTH)"
        );
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
                if subs.len() > MAX_BRANCHES {
                    return invalid!(
                        "'or' holds {} filters, more than {MAX_BRANCHES} (limit MAX_BRANCHES)",
                        subs.len()
                    );
                }
                budget.node()?;
                let subs = subs
                    .iter()
                    .map(|s| parse_object(s, schema, depth + 1, budget))
                    .collect::<Result<_, _>>()?;
                all.push(Filter::Or(subs));
            }
            "not" => {
                budget.node()?;
                all.push(Filter::Not(Box::new(parse_object(
                    cond,
                    schema,
                    depth + 1,
                    budget,
                )?)));
            }
            field => {
                let Some(ty) = schema.field(field) else {
                    return invalid!("unknown filter field '{field}' (not in the schema)");
                };
                budget.node()?;
                parse_condition(field, ty, cond, &mut all, budget)?;
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
    budget: &mut Budget,
) -> Result<(), ValidationError> {
    match ty {
        FieldType::Tag => {
            let map = condition_object(field, "tag", "{\"any\":[...]} or {\"none\":[...]}", cond)?;
            for (op, values) in map {
                if !matches!(op.as_str(), "any" | "none") {
                    return invalid!("tag field '{field}' takes 'any' or 'none', not '{op}'");
                }
                let values = tag_values(field, op, values)?;
                budget.values(values.len())?;
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
                if terms.len() > MAX_TERMS {
                    return invalid!(
                        "'{field}.match' has {} distinct terms, more than {MAX_TERMS} (limit MAX_TERMS)",
                        terms.len()
                    );
                }
                budget.values(terms.len())?;
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
        return invalid!(
            "'{field}.{op}' holds {} values, more than {MAX_VALUES} (limit MAX_VALUES)",
            values.len()
        );
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
    fn required_tags_are_found_alone_or_among_conjuncts() {
        let want = |v: Value| f(v).required_tags("category").map(<[String]>::to_vec);
        let of = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(want(json!({"category": {"any": ["a"]}})), of(&["a"]));
        assert_eq!(
            want(json!({"category": {"any": ["a", "b"]}, "price": {"lt": 5}})),
            of(&["a", "b"])
        );
        // Not required: another field, a negation, an alternative, or no filter.
        let a = json!({"any": ["a"]});
        assert_eq!(want(json!({"brand": a})), None);
        assert_eq!(want(json!({"category": {"none": ["a"]}})), None);
        assert_eq!(want(json!({"not": {"category": a}})), None);
        assert_eq!(want(json!({"or": [{"category": a}, {"brand": a}]})), None);
        assert_eq!(Filter::all().required_tags("category"), None);
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

    /// Issue 9, finding 3: a filter's size is bounded before any backend sees it, and
    /// each refusal names the limit it hit.
    #[test]
    fn oversized_filters_are_refused_naming_the_limit() {
        let leaf = json!({"brand": {"any": ["acme"]}});
        let wide_or = json!({"or": vec![leaf.clone(); 20_000]});
        let many_values = json!({"brand": {"any": (0..MAX_VALUES + 1).map(|i| format!("b{i}")).collect::<Vec<_>>()}});
        let words: Vec<String> = (0..253).map(|i| format!("w{i}")).collect();
        let many_terms = json!({"title": {"match": words.join(" ")}});
        let mut deep = json!({"in_stock": true});
        for _ in 0..=MAX_DEPTH {
            deep = json!({ "not": deep });
        }
        // Each `or` within the branch limit, but 64 x 64 leaves in all.
        let nodes =
            json!({"or": vec![json!({"or": vec![leaf.clone(); MAX_BRANCHES]}); MAX_BRANCHES]});
        // Within the node limit, but 64 lists of 1000 values.
        let thousand: Vec<String> = (0..1000).map(|i| format!("b{i}")).collect();
        let values = json!({"or": vec![json!({"brand": {"any": thousand}}); 8]});
        let cases = [
            (wide_or, "MAX_BRANCHES"),
            (many_values, "MAX_VALUES"),
            (many_terms, "MAX_TERMS"),
            (deep, "MAX_DEPTH"),
            (nodes, "MAX_NODES"),
            (values, "MAX_TOTAL_VALUES"),
        ];
        for (v, limit) in cases {
            let err = Filter::parse(&v, &schema()).unwrap_err();
            assert!(err.message.contains(limit), "{limit}: {}", err.message);
        }
        // At the limits themselves, filters still parse.
        let mut deep = json!({"in_stock": true});
        for _ in 0..MAX_DEPTH {
            deep = json!({ "not": deep });
        }
        let words: Vec<String> = (0..MAX_TERMS).map(|i| format!("w{i}")).collect();
        let ok = [
            json!({"or": vec![leaf.clone(); MAX_BRANCHES]}),
            deep,
            json!({"title": {"match": words.join(" ")}}),
            json!({"brand": {"any": (0..MAX_VALUES).map(|i| format!("b{i}")).collect::<Vec<_>>()}}),
        ];
        for v in ok {
            assert!(Filter::parse(&v, &schema()).is_ok());
        }
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
