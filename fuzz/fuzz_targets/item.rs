//! Items as `PUT /v1/items` and `recd import items` read them: any JSON through
//! `ItemUpsert::from_json` and `Item::from_json` against the demo schema. Nothing may panic.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use recd_core::{Item, ItemUpsert, Schema};

static SCHEMA: LazyLock<Schema> = LazyLock::new(|| Schema::demo(4));

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let _ = ItemUpsert::from_json(&v, &SCHEMA);
    let _ = Item::from_json(&v, &SCHEMA);
});
