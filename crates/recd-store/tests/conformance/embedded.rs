//! The conformance suite on the embedded backend (in memory).

use std::sync::Arc;

use recd_core::Schema;
use recd_store::embedded::EmbeddedStore;
use recd_store::{ModelSettings, Store};

/// A fresh in-memory store.
pub async fn make(schema: Schema, settings: ModelSettings) -> Option<Arc<dyn Store>> {
    Some(Arc::new(
        EmbeddedStore::in_memory(schema, settings).expect("in-memory store"),
    ))
}

crate::conformance_tests!(make);
