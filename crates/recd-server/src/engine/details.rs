//! Item details (`GET /v1/items/{id}`): the stored item without its vector and, when a
//! catalog source is configured, its row there, served through the item cache
//! (cache-aside); keeping them fresh from the source's NOTIFYs; warming the caches.

use std::sync::Arc;

use futures_util::StreamExt;
use recd_core::Filter;
use recd_store::{Store, StoreResult};

use super::{Engine, EngineError, EngineResult};
use crate::answer::{ItemDetails, without_vector};
use crate::cache::Compute;
use crate::catalog::{CatalogChange, PgCatalog};
use crate::failure::catalog_failure;

/// Loads one item's details from the sources (`None` when recd has no such item: the store
/// decides what exists; the catalog adds to it).
async fn load(
    store: Arc<dyn Store>,
    catalog: Option<PgCatalog>,
    id: String,
) -> StoreResult<Option<ItemDetails>> {
    let item = store
        .get_items(std::slice::from_ref(&id))
        .await?
        .pop()
        .flatten();
    let Some(item) = item else {
        return Ok(None);
    };
    let (from_source, details) = match &catalog {
        Some(catalog) => (true, catalog.fetch(&id).await.map_err(catalog_failure)?),
        None => (false, None),
    };
    Ok(Some(ItemDetails {
        item: without_vector(&Arc::new(item)),
        from_source,
        details,
    }))
}

impl Engine {
    fn details_compute(&self, id: &str) -> Compute<Option<ItemDetails>> {
        let store = Arc::clone(&self.store);
        let catalog = self.catalog.clone();
        let id = id.to_string();
        Arc::new(move || Box::pin(load(Arc::clone(&store), catalog.clone(), id.clone())))
    }

    /// An item's details, through the item cache unless `use_cache` is false.
    pub async fn item_details(&self, id: &str, use_cache: bool) -> EngineResult<ItemDetails> {
        let found = if use_cache && self.caches.enabled() {
            self.caches.item(id, self.details_compute(id)).await?.0
        } else {
            load(
                Arc::clone(&self.store),
                self.catalog.clone(),
                id.to_string(),
            )
            .await?
        };
        found.ok_or_else(|| EngineError::NotFound(format!("item '{id}' does not exist")))
    }

    /// Applies the catalog source's change notifications to the item cache until the
    /// source's channel closes.
    pub async fn follow_catalog(&self, mut changes: tokio::sync::mpsc::Receiver<CatalogChange>) {
        while let Some(change) = changes.recv().await {
            match change {
                CatalogChange::Item(id) => self.caches.details_changed(vec![id]).await,
                CatalogChange::All => self.caches.all_details_changed().await,
            }
        }
    }

    /// Fills the popular list every cold user starts from and the details of the top
    /// `cache.warm_items` items, so that the first requests after a start are hits.
    /// Failures are logged, never fatal: a cold cache is slower, not wrong.
    pub async fn warm(&self) {
        if !self.caches.enabled() {
            return;
        }
        let started = std::time::Instant::now();
        let popular = match self.recommender.warm_popular().await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(cause = %e, "cache warming: popular list failed");
                return;
            }
        };
        let n = self.caches.config().warm_items;
        let ids: Vec<String> = if n > popular.len() {
            match self.store.popular(n, &Filter::all()).await {
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
            .map(|id: String| async move { self.item_details(&id, true).await.is_ok() })
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
}
