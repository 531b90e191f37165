//! Listings: the catalog's items and the known users in id order (`GET /v1/items`,
//! `GET /v1/users`), and the event log a page at a time (`GET /v1/admin/events`).
//!
//! Each is one bounded store read per page, straight from the store: a listing walks the
//! whole catalog once, so caching its pages would only evict the entries that serve
//! recommendations. Positions (`after`) are the store's own; the HTTP layer makes them
//! opaque cursors.

use std::sync::Arc;

use recd_core::{Event, Filter, Item};
use recd_store::Page;

use super::{Engine, EngineResult};

impl Engine {
    /// Up to `limit` items passing `filter`, in id order, after the id `after`.
    pub async fn list_items(
        &self,
        after: Option<&str>,
        limit: usize,
        filter: &Filter,
    ) -> EngineResult<Page<Arc<Item>>> {
        Ok(self.store.list_items(after, limit, filter).await?)
    }

    /// Up to `limit` ids of users with state, in id order, after `after`.
    pub async fn list_users(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> EngineResult<Page<String>> {
        Ok(self.store.list_users(after, limit).await?)
    }

    /// Up to `limit` events of the log, in the order they were applied, after `after`.
    pub async fn events_page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> EngineResult<Page<Event>> {
        Ok(self.store.events_page(after, limit).await?)
    }

    /// How many events the log holds.
    pub async fn events_len(&self) -> EngineResult<u64> {
        Ok(self.store.events_len().await?)
    }
}
