//! A [`Filter`] as a RediSearch query (DIALECT 2), and the `FT.SEARCH` commands built on it.
//!
//! Every user-supplied string (tag values, text terms) goes in as a `PARAMS` value, never
//! into the query text, so nothing a user sends can change the query's structure; numbers
//! are formatted by Rust (shortest round-trip form), field names are schema identifiers.
//! The translation follows `Filter::matches` term by term:
//! tag any → `@f:{$p0 | $p1}`, none → `-@f:{...}`, range → `@f:[(lo hi]`, bool →
//! `@f:{true}`, text (every term) → `@tok:($p0 $p1)`, or → `(a) | (b)`, not → `-(a)`,
//! an empty conjunction → `*`. A negation's complement is taken over all items, which is
//! what `matches` does for items lacking the field. A filter that matches nothing (`not {}`)
//! has no RediSearch form: [`simplify`] lifts it to the top, and callers answer it without
//! a query.

use std::ops::Bound;

use recd_core::Filter;
use recd_core::schema::Schema;

use super::RedisConfig;
use super::schema::{SCORE_ALIAS, token_field};

/// A query string and the values its `$name` parameters stand for.
#[derive(Debug, Default)]
pub(crate) struct Query {
    pub(crate) text: String,
    pub(crate) params: Vec<(String, Vec<u8>)>,
}

impl Query {
    fn param(&mut self, value: &str) -> String {
        let name = format!("p{}", self.params.len());
        self.params.push((name.clone(), value.as_bytes().to_vec()));
        format!("${name}")
    }
}

/// Translates `filter`.
pub(crate) fn filter_query(filter: &Filter) -> Query {
    let mut q = Query::default();
    q.text = translate(&simplify(filter), &mut q);
    q
}

/// The filter that matches nothing, as [`simplify`] writes it.
fn nothing() -> Filter {
    Filter::Not(Box::new(Filter::all()))
}

/// Whether `filter` (simplified) matches nothing.
pub(crate) fn is_nothing(filter: &Filter) -> bool {
    matches!(filter, Filter::Not(inner) if inner.is_all())
}

/// Removes match-everything and match-nothing parts (`*` may only stand alone in a
/// RediSearch query, and "nothing" has no form at all): everything vanishes from
/// conjunctions and makes a disjunction match everything; nothing makes a conjunction match
/// nothing and vanishes from disjunctions. So the result is [`is_nothing`], or holds
/// neither anywhere.
pub(crate) fn simplify(filter: &Filter) -> Filter {
    match filter {
        Filter::And(all) => {
            let mut kept: Vec<Filter> = Vec::with_capacity(all.len());
            for f in all.iter().map(simplify) {
                if is_nothing(&f) {
                    return nothing();
                }
                if !f.is_all() {
                    kept.push(f);
                }
            }
            if kept.len() == 1 {
                kept.pop().unwrap_or_else(Filter::all)
            } else {
                Filter::And(kept)
            }
        }
        Filter::Or(any) => {
            let mut kept: Vec<Filter> = Vec::with_capacity(any.len());
            for f in any.iter().map(simplify) {
                if f.is_all() {
                    return Filter::all();
                }
                if !is_nothing(&f) {
                    kept.push(f);
                }
            }
            match kept.len() {
                0 => nothing(),
                1 => kept.pop().unwrap_or_else(nothing),
                _ => Filter::Or(kept),
            }
        }
        Filter::Not(inner) => {
            let inner = simplify(inner);
            if is_nothing(&inner) {
                Filter::all()
            } else {
                Filter::Not(Box::new(inner))
            }
        }
        leaf => leaf.clone(),
    }
}

fn translate(filter: &Filter, q: &mut Query) -> String {
    match filter {
        Filter::And(all) if all.is_empty() => "*".into(),
        Filter::And(all) => all
            .iter()
            .map(|f| format!("({})", translate(f, q)))
            .collect::<Vec<_>>()
            .join(" "),
        Filter::Or(any) => any
            .iter()
            .map(|f| format!("({})", translate(f, q)))
            .collect::<Vec<_>>()
            .join(" | "),
        // Never reached: `simplify` lifts "nothing" to the top and callers answer it without
        // a query. Should it be reached, this is a syntax error, never a wider query.
        Filter::Not(inner) if inner.is_all() => "-*".into(),
        Filter::Not(inner) => format!("-({})", translate(inner, q)),
        Filter::TagAny { field, values } => format!("@{field}:{{{}}}", tag_list(values, q)),
        Filter::TagNone { field, values } => format!("-@{field}:{{{}}}", tag_list(values, q)),
        Filter::Range { field, min, max } => {
            let lo = match min {
                Bound::Included(v) => v.to_string(),
                Bound::Excluded(v) => format!("({v}"),
                Bound::Unbounded => "-inf".into(),
            };
            let hi = match max {
                Bound::Included(v) => v.to_string(),
                Bound::Excluded(v) => format!("({v}"),
                Bound::Unbounded => "+inf".into(),
            };
            format!("@{field}:[{lo} {hi}]")
        }
        Filter::Bool { field, value } => format!("@{field}:{{{value}}}"),
        Filter::Text { field, terms } => {
            let terms: Vec<String> = terms.iter().map(|t| q.param(t)).collect();
            format!("@{}:({})", token_field(field), terms.join(" "))
        }
    }
}

fn tag_list(values: &[String], q: &mut Query) -> String {
    values
        .iter()
        // RediSearch unescapes tag values, even in PARAMS: a backslash must be doubled.
        .map(|v| q.param(&super::schema::encode_tag(v).replace('\\', "\\\\")))
        .collect::<Vec<_>>()
        .join(" | ")
}

/// What a search returns for each hit (raw hash values, or the KNN distance).
fn return_clause(names: &[&str], args: &mut Vec<Vec<u8>>) {
    args.push(b"RETURN".to_vec());
    args.push(names.len().to_string().into_bytes());
    args.extend(names.iter().map(|n| n.as_bytes().to_vec()));
}

fn params_clause(params: Vec<(String, Vec<u8>)>, args: &mut Vec<Vec<u8>>) {
    if params.is_empty() {
        return;
    }
    args.push(b"PARAMS".to_vec());
    args.push((params.len() * 2).to_string().into_bytes());
    for (name, value) in params {
        args.push(name.into_bytes());
        args.push(value);
    }
}

fn common_tail(config: &RedisConfig, args: &mut Vec<Vec<u8>>) {
    args.push(b"TIMEOUT".to_vec());
    args.push(config.query_timeout_ms.to_string().into_bytes());
    args.push(b"DIALECT".to_vec());
    args.push(b"2".to_vec());
}

/// Splits a conjunction into the conditions RediSearch pre-filters cheaply (tags, bools,
/// text, sub-expressions) and its numeric ranges, which cost far more inside RediSearch
/// (a wide range is a union of many numeric-tree leaves) and are checked on an over-fetch
/// instead. `None` when there is nothing to split: no range, or only ranges (a plain HNSW
/// query may return fewer than asked, so "fewer came back" would not prove exhaustion).
pub(crate) fn split_ranges(filter: &Filter) -> Option<(Filter, Filter)> {
    let Filter::And(all) = simplify(filter) else {
        return None;
    };
    let (ranges, rest): (Vec<Filter>, Vec<Filter>) = all
        .into_iter()
        .partition(|f| matches!(f, Filter::Range { .. }));
    if ranges.is_empty() || rest.is_empty() {
        return None;
    }
    Some((Filter::And(rest), Filter::And(ranges)))
}

/// `FT.SEARCH alias "(<filter>)=>[KNN $k @vector $vec ... AS __recd_score]" ...`: the
/// arguments after the command name. Each hit returns its distance and the `returned`
/// fields only: loading fields inside RediSearch costs ~1 µs per field and hit (half of an
/// unfiltered KNN 50 with every field), more than fetching the hits' hashes afterwards.
/// With no field to return, the distance comes as the hit's sort key (`WITHSORTKEYS
/// NOCONTENT`: `[total, key, "#0.5513069629669189", ...]`, see
/// [`super::reply::sort_keys_reply`]): half the reply values of `RETURN 1 __recd_score`
/// (`[total, key, ["__recd_score", "0.551306962967"], ...]`), and parsing the replies was
/// the largest cost of a redis-backed server.
pub(crate) fn knn_args(
    alias: &str,
    config: &RedisConfig,
    query: &[f32],
    k: usize,
    filter: &Filter,
    returned: &[&str],
) -> Vec<Vec<u8>> {
    let filter = &simplify(filter);
    let Query { text, mut params } = filter_query(filter);
    let mut knn = "KNN $k @vector $vec".to_string();
    let hybrid = config.hybrid_policy.filter(|_| !filter.is_all());
    // EF_RUNTIME is refused together with an explicit ADHOC_BF (no graph walk then).
    if hybrid != Some(super::HybridPolicy::AdhocBf) {
        knn.push_str(&format!(" EF_RUNTIME {}", config.hnsw_ef_runtime));
    }
    // Hybrid attributes are refused on a query without a filter.
    if let Some(policy) = hybrid {
        knn.push_str(&format!(" HYBRID_POLICY {}", policy.as_str()));
        if let (super::HybridPolicy::Batches, Some(size)) = (policy, config.batch_size) {
            knn.push_str(&format!(" BATCH_SIZE {size}"));
        }
    }
    let text = format!("({text})=>[{knn} AS {SCORE_ALIAS}]");
    params.push(("k".into(), k.to_string().into_bytes()));
    params.push(("vec".into(), super::schema::vector_bytes(query)));
    let mut args = vec![alias.as_bytes().to_vec(), text.into_bytes()];
    params_clause(params, &mut args);
    args.extend([
        b"SORTBY".to_vec(),
        SCORE_ALIAS.as_bytes().to_vec(),
        b"ASC".to_vec(),
    ]);
    if returned.is_empty() {
        args.extend([b"WITHSORTKEYS".to_vec(), b"NOCONTENT".to_vec()]);
    } else {
        let mut names = vec![SCORE_ALIAS];
        names.extend(returned.iter().copied().filter(|n| *n != SCORE_ALIAS));
        return_clause(&names, &mut args);
    }
    args.extend([b"LIMIT".to_vec(), b"0".to_vec(), k.to_string().into_bytes()]);
    common_tail(config, &mut args);
    args
}

/// `FT.SEARCH alias <filter> NOCONTENT LIMIT offset limit`: the keys of matching items
/// (in no useful order) and how many match.
pub(crate) fn keys_args(
    alias: &str,
    config: &RedisConfig,
    filter: &Filter,
    offset: usize,
    limit: usize,
) -> Vec<Vec<u8>> {
    let Query { text, params } = filter_query(filter);
    let mut args = vec![alias.as_bytes().to_vec(), text.into_bytes()];
    params_clause(params, &mut args);
    args.extend([
        b"NOCONTENT".to_vec(),
        b"LIMIT".to_vec(),
        offset.to_string().into_bytes(),
        limit.to_string().into_bytes(),
    ]);
    common_tail(config, &mut args);
    args
}

/// `FT.AGGREGATE alias <filter> LOAD 1 @__key LIMIT offset limit`: the keys of up to
/// `limit` matching items. Unlike `FT.SEARCH`, which counts every match (9 ms for `*` over
/// 100k items, for a page of 100), an aggregation stops once the page is full (0.2 ms).
pub(crate) fn aggregate_keys_args(
    alias: &str,
    config: &RedisConfig,
    filter: &Filter,
    offset: usize,
    limit: usize,
) -> Vec<Vec<u8>> {
    let Query { text, params } = filter_query(filter);
    let mut args = vec![alias.as_bytes().to_vec(), text.into_bytes()];
    params_clause(params, &mut args);
    args.extend([
        b"LOAD".to_vec(),
        b"1".to_vec(),
        b"@__key".to_vec(),
        b"LIMIT".to_vec(),
        offset.to_string().into_bytes(),
        limit.to_string().into_bytes(),
    ]);
    common_tail(config, &mut args);
    args
}

/// `FT.SEARCH alias "(<filter>) (@tok_a:($t0 | $t1) | @tok_b:(...))" LIMIT 0 k`: items whose
/// text fields hold any of `terms`, ranked by RediSearch's default scorer. `None` when no
/// text field exists or no term is given.
pub(crate) fn text_args(
    alias: &str,
    schema: &Schema,
    config: &RedisConfig,
    terms: &[String],
    k: usize,
    filter: &Filter,
) -> Option<Vec<Vec<u8>>> {
    let text_fields: Vec<&str> = schema.fields_of(recd_core::FieldType::Text).collect();
    if text_fields.is_empty() || terms.is_empty() {
        return None;
    }
    let filter = &simplify(filter);
    let mut q = filter_query(filter);
    let names: Vec<String> = terms.iter().map(|t| q.param(t)).collect();
    let any = names.join(" | ");
    let per_field: Vec<String> = text_fields
        .iter()
        .map(|f| format!("(@{}:({any}))", token_field(f)))
        .collect();
    let text = if filter.is_all() {
        per_field.join(" | ")
    } else {
        format!("({}) ({})", q.text, per_field.join(" | "))
    };
    let mut args = vec![alias.as_bytes().to_vec(), text.into_bytes()];
    params_clause(q.params, &mut args);
    let names: Vec<&str> = schema.fields.keys().map(String::as_str).collect();
    return_clause(&names, &mut args);
    args.extend([b"LIMIT".to_vec(), b"0".to_vec(), k.to_string().into_bytes()]);
    common_tail(config, &mut args);
    Some(args)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn translates_each_condition_with_params() {
        let schema = Schema::demo(2);
        let f = Filter::parse(
            &json!({"category":{"any":["a b","{x}"]},"price":{"gt":1.5,"lte":9},
                    "not":{"in_stock":true},"title":{"match":"Trail run"},
                    "or":[{"brand":{"none":["acme"]}},{"popularity":{"gte":0}}]}),
            &schema,
        )
        .unwrap();
        let q = filter_query(&f);
        assert_eq!(
            q.text,
            "(@category:{$p0 | $p1}) (-(@in_stock:{true})) \
             ((-@brand:{$p2}) | (@popularity:[0 +inf])) (@price:[(1.5 9]) (@__recd_tok_title:($p3 $p4))"
        );
        let values: Vec<&[u8]> = q.params.iter().map(|(_, v)| v.as_slice()).collect();
        assert_eq!(values, [&b"a b"[..], b"{x}", b"acme", b"run", b"trail"]);
        assert_eq!(filter_query(&Filter::all()).text, "*");
        // "Nothing" is lifted to the top, or vanishes.
        let none = Filter::parse(&json!({"not":{}}), &schema).unwrap();
        let tag = Filter::parse(&json!({"brand":{"any":["x"]}}), &schema).unwrap();
        assert!(is_nothing(&simplify(&none)));
        assert!(is_nothing(&simplify(&Filter::And(vec![
            tag.clone(),
            none.clone()
        ]))));
        assert_eq!(simplify(&Filter::Or(vec![tag.clone(), none.clone()])), tag);
        assert!(is_nothing(&simplify(&Filter::Or(vec![none.clone()]))));
        assert!(simplify(&Filter::Not(Box::new(none.clone()))).is_all());
        assert!(simplify(&Filter::Or(vec![none, Filter::all()])).is_all());
        let (pre, post) = split_ranges(&f).unwrap();
        assert!(matches!(&post, Filter::And(r) if r.len() == 1));
        assert!(!filter_query(&pre).text.contains("@price"));
        let only_range = Filter::parse(&json!({"price":{"gt":1}}), &schema).unwrap();
        assert!(split_ranges(&only_range).is_none());
    }
}
