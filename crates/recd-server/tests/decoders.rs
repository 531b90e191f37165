//! The decoders of untrusted input never panic (issue 9, "Prove it"): the stable-Rust,
//! every-CI-run counterpart of the `cargo fuzz` targets in `fuzz/`. Arbitrary JSON-ish
//! values — built from the words the decoders look for (field names, operators, event
//! types, dates) mixed with arbitrary strings, extreme numbers and deep nesting — and raw
//! bytes go through the filter parser (and a parsed filter through its canonical form and
//! evaluation), the item, event and recommend request decoders. An error is an answer; a
//! panic is the bug.

use proptest::prelude::*;
use proptest::test_runner::Config;
use recd_core::{Event, Filter, Item, ItemUpsert, Schema};
use serde_json::{Map, Number, Value};

/// Cases per property: 4 properties × this ≈ 20 s in a debug build on 2 shared cores.
const CASES: u32 = 8000;

fn schema() -> Schema {
    Schema::demo(4)
}

/// Words the decoders give meaning to.
const WORDS: &[&str] = &[
    "and",
    "or",
    "not",
    "any",
    "none",
    "all",
    "eq",
    "ne",
    "lt",
    "lte",
    "gt",
    "gte",
    "match",
    "exists",
    "category",
    "brand",
    "price",
    "in_stock",
    "popularity",
    "title",
    "id",
    "vector",
    "keep_vector",
    "user_id",
    "item_id",
    "type",
    "value",
    "timestamp",
    "recommendation_id",
    "count",
    "filter",
    "exclude",
    "query",
    "diversity",
    "field",
    "max_per_value",
    "explain",
    "use_cache",
    "strategy",
    "view",
    "click",
    "dwell",
    "add_to_cart",
    "purchase",
    "rating",
    "dislike",
    "hide",
    "skip",
    "shoes",
    "",
    " ",
    "\u{0}",
    "\u{1f}",
    "é",
    "9999-12-31T23:59:59Z",
    "1970-01-01T00:00:00Z",
    "2026-01-01T00:00:00+14:00",
    "0000-01-01T00:00:00Z",
    "NaN",
    "-1",
    "1e400",
];

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(WORDS).prop_map(str::to_string),
        1 => "\\PC{0,12}",
        1 => proptest::collection::vec(any::<char>(), 0..6).prop_map(|c| c.into_iter().collect()),
    ]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number)),
        proptest::sample::select(vec![
            0.0,
            -0.0,
            1e-45,
            1e19,
            -1e19,
            f64::MAX,
            f64::MIN,
            f64::MIN_POSITIVE,
            253402300799999.0,
            -62135596800000.0,
            9.3e18,
        ])
        .prop_map(Value::from),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        word().prop_map(Value::String),
    ]
}

/// JSON values up to 8 levels deep, arrays and objects of up to 12 entries.
fn json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(8, 256, 12, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..12).prop_map(Value::Array),
            proptest::collection::vec((word(), inner), 0..12)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// An object of the words of `keys` (and a stray one) with arbitrary values: the shape the
/// decoders expect, so that the checks past the first one are reached.
fn object_of(keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
    proptest::collection::vec(
        (
            prop_oneof![
                4 => proptest::sample::select(keys).prop_map(str::to_string),
                1 => word(),
            ],
            json(),
        ),
        0..8,
    )
    .prop_map(|kv| Value::Object(kv.into_iter().collect()))
}

/// Events that are valid or nearly so (ids, a known type most of the time, a value, a
/// timestamp in or out of range): the checks after the first ones are reached often.
fn event_like() -> impl Strategy<Value = Value> {
    const TYPES: &[&str] = &[
        "view",
        "click",
        "dwell",
        "add_to_cart",
        "purchase",
        "rating",
        "dislike",
        "hide",
        "skip",
    ];
    let kind = prop_oneof![
        4 => proptest::sample::select(TYPES).prop_map(str::to_string),
        1 => word(),
    ];
    let timestamp = prop_oneof![
        Just(Value::Null),
        proptest::sample::select(vec![0i64, 1_767_225_000_000, 253_402_300_799_999, -1])
            .prop_map(Value::from),
        number(),
        word().prop_map(Value::String),
    ];
    (
        word(),
        word(),
        kind,
        prop_oneof![Just(Value::Null), number()],
        timestamp,
        proptest::option::of(word()),
    )
        .prop_map(|(user, item, kind, value, timestamp, rec)| {
            let mut m = Map::new();
            m.insert("user_id".into(), Value::String(user));
            m.insert("item_id".into(), Value::String(item));
            m.insert("type".into(), Value::String(kind));
            m.insert("value".into(), value);
            m.insert("timestamp".into(), timestamp);
            if let Some(r) = rec {
                m.insert("recommendation_id".into(), Value::String(r));
            }
            Value::Object(m)
        })
}

fn item() -> Option<Item> {
    let v = serde_json::json!({
        "id": "sku-1", "category": ["shoes", "sale"], "brand": "acme", "price": 42.5,
        "in_stock": true, "popularity": 3, "title": "red running shoes"
    });
    Item::from_json(&v, &schema()).ok()
}

proptest! {
    #![proptest_config(Config { cases: CASES, ..Config::default() })]

    #[test]
    fn filters_never_panic(v in prop_oneof![json(), object_of(&[
        "or", "not", "category", "brand", "price", "in_stock", "popularity", "title",
    ])]) {
        if let Ok(f) = Filter::parse(&v, &schema()) {
            let _ = f.canonical();
            if let Some(item) = item() {
                let _ = f.matches(&item);
            }
        }
    }

    #[test]
    fn items_never_panic(v in prop_oneof![json(), object_of(&[
        "id", "vector", "category", "brand", "price", "in_stock", "popularity", "title",
    ])]) {
        let _ = ItemUpsert::from_json(&v, &schema());
        let _ = Item::from_json(&v, &schema());
    }

    #[test]
    fn events_never_panic(
        v in prop_oneof![json(), event_like(), object_of(&[
            "user_id", "item_id", "type", "value", "timestamp", "recommendation_id",
        ])],
        now in prop_oneof![Just(1_767_225_600_000i64), Just(i64::MIN), Just(i64::MAX), any::<i64>()],
        skew in prop_oneof![Just(300_000i64), Just(0), Just(i64::MAX), any::<i64>()],
    ) {
        let _ = Event::from_json(&v, now, skew);
    }

    #[test]
    fn recommend_requests_never_panic(
        v in prop_oneof![json(), object_of(&[
            "user_id", "count", "filter", "exclude", "query", "diversity", "explain",
            "use_cache", "strategy",
        ])],
        bytes in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let body = serde_json::to_vec(&v).unwrap_or_default();
        let _ = recd_server::routes::decode_recommend_body(&body, &schema());
        let _ = recd_server::routes::decode_recommend_body(&bytes, &schema());
    }
}
