//! Decoding `FT.SEARCH` replies (RESP2: `[total, key, [field, value, ...], key, ...]`, or
//! `[total, key, key, ...]` with `NOCONTENT`) and other replies.

use std::collections::BTreeMap;

use redis::Value;

use super::error::bad_reply;
use crate::StoreResult;

/// One hit: the document key and the returned fields.
#[derive(Debug)]
pub(crate) struct Doc {
    pub(crate) key: String,
    pub(crate) fields: BTreeMap<String, Vec<u8>>,
}

impl Doc {
    /// A returned field as text.
    pub(crate) fn text(&self, name: &str) -> Option<&str> {
        self.fields
            .get(name)
            .and_then(|v| std::str::from_utf8(v).ok())
    }
}

/// The total and the documents of an `FT.SEARCH` reply.
pub(crate) fn search_reply(value: Value) -> StoreResult<(u64, Vec<Doc>)> {
    let Value::Array(items) = value else {
        return Err(bad_reply(
            "FT.SEARCH did not answer an array (RESP3 is not supported)",
        ));
    };
    let mut it = items.into_iter();
    let total = match it.next() {
        Some(Value::Int(n)) => u64::try_from(n).unwrap_or(0),
        _ => return Err(bad_reply("FT.SEARCH without a total")),
    };
    let mut docs = Vec::new();
    while let Some(key) = it.next() {
        let key = bytes(key).ok_or_else(|| bad_reply("FT.SEARCH key"))?;
        let key = String::from_utf8(key).map_err(|_| bad_reply("FT.SEARCH key is not UTF-8"))?;
        let mut fields = BTreeMap::new();
        if let Some(Value::Array(pairs)) = it.next() {
            let mut pairs = pairs.into_iter();
            while let (Some(k), Some(v)) = (pairs.next(), pairs.next()) {
                let (Some(k), Some(v)) = (bytes(k), bytes(v)) else {
                    return Err(bad_reply("FT.SEARCH field"));
                };
                let k = String::from_utf8(k).map_err(|_| bad_reply("field name"))?;
                fields.insert(k, v);
            }
        }
        docs.push(Doc { key, fields });
    }
    Ok((total, docs))
}

/// The keys and numeric sort keys of an `FT.SEARCH ... SORTBY f WITHSORTKEYS NOCONTENT`
/// reply (`[total, key, "#<value of f>", key, ...]`), in reply order.
pub(crate) fn sort_keys_reply(value: Value) -> StoreResult<Vec<(String, f64)>> {
    let Value::Array(items) = value else {
        return Err(bad_reply(
            "FT.SEARCH did not answer an array (RESP3 is not supported)",
        ));
    };
    let mut it = items.into_iter();
    if !matches!(it.next(), Some(Value::Int(_))) {
        return Err(bad_reply("FT.SEARCH without a total"));
    }
    let mut out = Vec::with_capacity(it.len() / 2);
    while let Some(key) = it.next() {
        let key = bytes(key)
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| bad_reply("FT.SEARCH key"))?;
        let sort_key = it
            .next()
            .and_then(bytes)
            .ok_or_else(|| bad_reply("FT.SEARCH hit without a sort key"))?;
        let number = sort_key
            .strip_prefix(b"#")
            .and_then(|n| std::str::from_utf8(n).ok())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| bad_reply("FT.SEARCH sort key is not a number"))?;
        out.push((key, number));
    }
    Ok(out)
}

/// The total and the keys of an `FT.SEARCH ... NOCONTENT` reply (`[total, key, key, ...]`).
pub(crate) fn keys_reply(value: Value) -> StoreResult<(u64, Vec<String>)> {
    let Value::Array(items) = value else {
        return Err(bad_reply(
            "FT.SEARCH did not answer an array (RESP3 is not supported)",
        ));
    };
    let mut it = items.into_iter();
    let total = match it.next() {
        Some(Value::Int(n)) => u64::try_from(n).unwrap_or(0),
        _ => return Err(bad_reply("FT.SEARCH without a total")),
    };
    let keys = it
        .map(|k| {
            bytes(k)
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| bad_reply("FT.SEARCH key"))
        })
        .collect::<StoreResult<_>>()?;
    Ok((total, keys))
}

/// The keys of an `FT.AGGREGATE ... LOAD 1 @__key` reply (`[n, [__key, key], ...]`).
pub(crate) fn aggregate_keys_reply(value: Value) -> StoreResult<Vec<String>> {
    let Value::Array(items) = value else {
        return Err(bad_reply(
            "FT.AGGREGATE did not answer an array (RESP3 is not supported)",
        ));
    };
    items
        .into_iter()
        .skip(1)
        .map(|row| {
            let Value::Array(pairs) = row else {
                return Err(bad_reply("FT.AGGREGATE row"));
            };
            let mut pairs = pairs.into_iter();
            while let (Some(k), Some(v)) = (pairs.next(), pairs.next()) {
                if bytes(k).as_deref() == Some(b"__key") {
                    return bytes(v)
                        .and_then(|b| String::from_utf8(b).ok())
                        .ok_or_else(|| bad_reply("FT.AGGREGATE key"));
                }
            }
            Err(bad_reply("FT.AGGREGATE row without __key"))
        })
        .collect()
}

/// A hash (`HGETALL`) as field → bytes.
pub(crate) fn hash_reply(value: Value) -> StoreResult<BTreeMap<String, Vec<u8>>> {
    let mut out = BTreeMap::new();
    match value {
        Value::Array(pairs) => {
            let mut pairs = pairs.into_iter();
            while let (Some(k), Some(v)) = (pairs.next(), pairs.next()) {
                let (Some(k), Some(v)) = (bytes(k), bytes(v)) else {
                    return Err(bad_reply("hash field"));
                };
                let k = String::from_utf8(k).map_err(|_| bad_reply("hash field name"))?;
                out.insert(k, v);
            }
        }
        Value::Map(pairs) => {
            for (k, v) in pairs {
                let (Some(k), Some(v)) = (bytes(k), bytes(v)) else {
                    return Err(bad_reply("hash field"));
                };
                let k = String::from_utf8(k).map_err(|_| bad_reply("hash field name"))?;
                out.insert(k, v);
            }
        }
        Value::Nil => {}
        _ => return Err(bad_reply("HGETALL")),
    }
    Ok(out)
}

/// A list or set of strings.
pub(crate) fn strings_reply(value: Value) -> StoreResult<Vec<String>> {
    let items = match value {
        Value::Array(items) | Value::Set(items) => items,
        Value::Nil => Vec::new(),
        _ => return Err(bad_reply("list of strings")),
    };
    items
        .into_iter()
        .map(|v| {
            bytes(v)
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| bad_reply("string"))
        })
        .collect()
}

/// The bytes of a string-like value.
pub(crate) fn bytes(v: Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        Value::Okay => Some(b"OK".to_vec()),
        Value::Int(n) => Some(n.to_string().into_bytes()),
        Value::Double(d) => Some(d.to_string().into_bytes()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn sort_keys_are_numbers_after_a_hash() {
        let reply = Value::Array(vec![
            Value::Int(2),
            bulk("p:item:a"),
            bulk("#0.55130696296691895"),
            bulk("p:item:b"),
            bulk("#-2.5"),
        ]);
        let hits = sort_keys_reply(reply).unwrap();
        assert_eq!(
            hits,
            [
                ("p:item:a".to_string(), 0.551_306_962_966_919),
                ("p:item:b".to_string(), -2.5)
            ]
        );
        let empty = Value::Array(vec![Value::Int(0)]);
        assert!(sort_keys_reply(empty).unwrap().is_empty());
        // A string sort key, a missing one, a missing total: refused, never a made-up score.
        for bad in [
            vec![Value::Int(1), bulk("k"), bulk("$text")],
            vec![Value::Int(1), bulk("k")],
            vec![bulk("k"), bulk("#1")],
        ] {
            assert!(sort_keys_reply(Value::Array(bad)).is_err());
        }
    }
}
