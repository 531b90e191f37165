//! `POST /v1/recommend` bodies: any bytes through the route's own decoder (JSON, fields,
//! ids, count, filter, exclusions, diversity) against the demo schema. Nothing may panic.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use recd_core::Schema;

static SCHEMA: LazyLock<Schema> = LazyLock::new(|| Schema::demo(4));

fuzz_target!(|data: &[u8]| {
    let _ = recd_server::routes::decode_recommend_body(data, &SCHEMA);
});
