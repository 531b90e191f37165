//! The filter language: any JSON through `Filter::parse` against the demo schema, and a
//! parsed filter through its canonical form and evaluation. Nothing may panic.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use recd_core::{Filter, Item, Schema};

static SCHEMA: LazyLock<Schema> = LazyLock::new(|| Schema::demo(4));
static ITEM: LazyLock<Option<Item>> = LazyLock::new(|| {
    let v = serde_json::json!({
        "id": "sku-1", "category": ["shoes", "sale"], "brand": "acme", "price": 42.5,
        "in_stock": true, "popularity": 3, "title": "red running shoes"
    });
    Item::from_json(&v, &SCHEMA).ok()
});

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Ok(f) = Filter::parse(&v, &SCHEMA) {
        let _ = f.canonical();
        if let Some(item) = ITEM.as_ref() {
            let _ = f.matches(item);
        }
    }
});
