//! Events as `POST /v1/events` and `recd import events` read them: any JSON through
//! `Event::from_json` (a fixed clock and the default 5 min future skew). Nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use recd_core::Event;

/// 2026-01-01T00:00:00Z.
const NOW_MS: i64 = 1_767_225_600_000;

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let _ = Event::from_json(&v, NOW_MS, 300_000);
    let _ = Event::from_json(&v, i64::MAX, i64::MAX);
    let _ = Event::from_json(&v, i64::MIN, 0);
});
