//! Item details (`GET /v1/items/{id}`): the stored item without its vector and, when a
//! catalog source is configured, its row there under `"details"`, served through the item
//! cache (cache-aside); keeping them fresh from the source's NOTIFYs; warming the caches.

use std::sync::Arc;

use futures_util::StreamExt;
use recd_core::Filter;
use recd_store::{StoreError, StoreResult};
use serde_json::Value;

use crate::cache::{Compute, Origin};
use crate::catalog::{CatalogChange, CatalogError};
use crate::state::AppState;

/// Loads one item's details from the sources (`Value::Null` when recd has no such item:
/// the store decides what exists; the catalog adds to it).
async fn load(state: AppState, id: String) -> StoreResult<Value> {
    let item = state
        .store
        .get_items(std::slice::from_ref(&id))
        .await?
        .pop()
        .flatten();
    let Some(item) = item else {
        return Ok(Value::Null);
    };
    let mut out = item.to_json(false);
    if let Some(catalog) = &state.catalog {
        let row = catalog.fetch(&id).await.map_err(|e| match e {
            CatalogError::Unavailable(m) => StoreError::Unavailable(format!("catalog source: {m}")),
            other => StoreError::Internal(format!("catalog source: {other}")),
        })?;
        out["details"] = row.map_or(Value::Null, Value::Object);
    }
    Ok(out)
}

/// Applies the catalog source's change notifications to the item cache until the source's
/// channel closes.
pub async fn follow_catalog(
    state: AppState,
    mut changes: tokio::sync::mpsc::Receiver<CatalogChange>,
) {
    while let Some(change) = changes.recv().await {
        match change {
            CatalogChange::Item(id) => state.caches.details_changed(vec![id]).await,
            CatalogChange::All => state.caches.all_details_changed().await,
        }
    }
}

fn compute(state: &AppState, id: &str) -> Compute {
    let state = state.clone();
    let id = id.to_string();
    Arc::new(move || Box::pin(load(state.clone(), id.clone())))
}

/// An item's details (`None` when it does not exist) and where they came from (`None`:
/// the cache was bypassed).
pub async fn item_details(
    state: &AppState,
    id: &str,
    use_cache: bool,
) -> StoreResult<(Option<Value>, Option<Origin>)> {
    let (value, origin) = if use_cache && state.caches.enabled() {
        let (v, o) = state.caches.item(id, compute(state, id)).await?;
        (v, Some(o))
    } else {
        (load(state.clone(), id.to_string()).await?, None)
    };
    Ok(((!value.is_null()).then_some(value), origin))
}

/// Fills the popular list every cold user starts from and the details of the top
/// `cache.warm_items` items, so that the first requests after a start are hits.
/// Failures are logged, never fatal: a cold cache is slower, not wrong.
pub async fn warm(state: &AppState) {
    if !state.caches.enabled() {
        return;
    }
    let started = std::time::Instant::now();
    let popular = match state.recommender.warm_popular().await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(cause = %e, "cache warming: popular list failed");
            return;
        }
    };
    let n = state.caches.config().warm_items;
    let ids: Vec<String> = if n > popular.len() {
        match state.store.popular(n, &Filter::all()).await {
            Ok(hits) => hits.into_iter().map(|h| h.item.id.clone()).collect(),
            Err(e) => {
                tracing::warn!(cause = %e, "cache warming: top items failed");
                return;
            }
        }
    } else {
        popular.into_iter().take(n).collect()
    };
    let warmed = futures_util::stream::iter(ids)
        .map(|id| async move { item_details(state, &id, true).await.is_ok() })
        .buffer_unordered(8)
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await;
    tracing::info!(
        items = warmed,
        ms = started.elapsed().as_millis() as u64,
        "caches warmed"
    );
}
