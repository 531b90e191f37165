//! New and cold items on the serving side (`[model.new_items]`, recd-core's `newitems` for
//! the math): an item the live model did not train gets a vector before the next training.
//!
//! - **Item fold-in**, on events: every event batch adds its items' touches to the lists
//!   the store keeps of *new* items (`Store::touch_new_items`: items without a vector, or
//!   with a provisional one); an item whose list reached `min_interactions` users is
//!   solved against the live model's user factors (its `XᵀX` and the touching users'
//!   long-term vectors) and written with `Store::set_new_item_vectors`, which never
//!   replaces a vector training or a client wrote meanwhile. Then its lists are dropped
//!   from the caches, so that `/similar` of its neighbours finds it at once.
//! - **Content map**, on upserts of items without a vector and when a model goes live:
//!   `recd_core::ContentModel` fitted on the live version's item vectors and the catalog
//!   items' content when the version goes live, kept with the version (its chunk
//!   [`CONTENT_CHUNK`]).
//! - **A model going live** (`recd train` marking it, or an activation) refreshes every
//!   new item in the new space: fold-in where its list is ready, else the content map.
//!
//! What the live model contributes (`XᵀX` of its user vectors, its content map) is loaded
//! once per live version and kept ([`NewItemModels`]); without a live version there is
//! nothing to fold against and new items wait for training. Failures here are logged,
//! never returned: the events or items they follow are written.

use std::collections::HashMap;
use std::sync::Arc;

use recd_core::newitems::{content_features, fold_item, ready};
use recd_core::{ContentModel, Event, FoldInParams, FoldModel, Gram, Item, ItemUpsert};

use super::Engine;
use super::models::ModelChunk;
use crate::failure::{EngineError, EngineResult};

/// The chunk index of a version's content map (its vectors are chunks `0..chunks`).
pub const CONTENT_CHUNK: u32 = u32::MAX;
/// Catalog items read per page when a model goes live.
const PAGE: usize = 1000;

/// What a live version gives new items.
#[derive(Debug)]
pub struct LiveModel {
    /// Its seq.
    seq: u64,
    /// The item fold-in's system, on the version's user vectors (`None`: it has none).
    fold: Option<FoldModel>,
    /// Its content map (`None`: not fitted, no content, or off).
    content: Option<ContentModel>,
}

/// The live version's [`LiveModel`], loaded once per version.
#[derive(Debug, Default)]
pub struct NewItemModels {
    current: tokio::sync::Mutex<Option<Arc<LiveModel>>>,
}

impl Engine {
    /// The live version's [`LiveModel`], `None` without a live version.
    async fn live_new_item_model(&self) -> EngineResult<Option<Arc<LiveModel>>> {
        let registry = self.store.models().await?;
        let Some(seq) = registry.live else {
            return Ok(None);
        };
        let Some(record) = registry.models.iter().find(|m| m.seq == seq) else {
            return Ok(None);
        };
        let mut current = self.new_items.current.lock().await;
        if let Some(m) = current.as_ref()
            && m.seq == seq
        {
            return Ok(Some(m.clone()));
        }
        let dim = self.store.schema().vector.dim;
        let mut gram = Gram::new(dim);
        for index in 0..record.chunks {
            if let Some(bytes) = self.store.model_chunk(seq, index).await? {
                for (_, v) in ModelChunk::decode(&bytes)?.users {
                    gram.add(&v);
                }
            }
        }
        let fold_in = &self.config.model.session.fold_in;
        let fold = FoldModel::new(
            &gram,
            &FoldInParams {
                regularization: fold_in.regularization,
                alpha: fold_in.alpha,
                share: 1.0,
                session_mix: 0.0,
                ..Default::default()
            },
        );
        let content = match self.store.model_chunk(seq, CONTENT_CHUNK).await? {
            Some(bytes) => ContentModel::decode(&bytes).filter(|c| c.dim() == dim),
            None => None,
        };
        let model = Arc::new(LiveModel { seq, fold, content });
        *current = Some(model.clone());
        Ok(Some(model))
    }

    /// After an event batch: the item fold-in of the new items it made ready.
    pub(super) async fn fold_new_items(&self, events: &[Event]) -> EngineResult<usize> {
        let params = &self.config.model.new_items;
        if !params.fold_in || events.is_empty() {
            return Ok(0);
        }
        let weights = &self.config.model.session.weights;
        let touches: Vec<recd_store::NewItemTouch> = events
            .iter()
            .map(|e| {
                (
                    e.item_id.clone(),
                    e.user_id.clone(),
                    weights.weight(e.kind, e.value) as f32,
                )
            })
            .collect();
        let lists = self.store.touch_new_items(&touches).await?;
        let ready_lists: Vec<_> = lists
            .into_iter()
            .filter(|(_, l)| ready(l, params))
            .collect();
        if ready_lists.is_empty() {
            return Ok(0);
        }
        let Some(model) = self.live_new_item_model().await? else {
            return Ok(0);
        };
        let vectors = self.fold_lists(&model, &ready_lists).await?;
        self.write_new_vectors(vectors).await
    }

    /// The fold-in vectors of `lists` (items with too few users who have a long-term
    /// vector are left out).
    async fn fold_lists(
        &self,
        model: &LiveModel,
        lists: &[recd_store::NewItemList],
    ) -> EngineResult<Vec<(String, Vec<f32>)>> {
        let Some(fold) = &model.fold else {
            return Ok(Vec::new());
        };
        let mut users: Vec<&str> = lists
            .iter()
            .flat_map(|(_, l)| l.iter().map(|(u, _)| u.as_str()))
            .collect();
        users.sort_unstable();
        users.dedup();
        let states =
            futures_util::future::try_join_all(users.iter().map(|u| self.store.get_user(u)))
                .await?;
        let long_term: HashMap<&str, Vec<f32>> = users
            .iter()
            .zip(states)
            .filter_map(|(u, s)| Some((*u, s?.long_term?)))
            .collect();
        let params = &self.config.model.new_items;
        let mut out = Vec::new();
        for (item, list) in lists {
            let known: Vec<(String, f32)> = list
                .iter()
                .filter(|(u, _)| long_term.contains_key(u.as_str()))
                .cloned()
                .collect();
            if !ready(&known, params) {
                continue;
            }
            let y = fold_item(
                fold,
                known
                    .iter()
                    .map(|(u, w)| (long_term[u.as_str()].as_slice(), *w)),
            );
            if let Some(y) = y {
                out.push((item.clone(), y));
            }
        }
        Ok(out)
    }

    /// Writes provisional vectors and drops what they make stale.
    async fn write_new_vectors(&self, vectors: Vec<(String, Vec<f32>)>) -> EngineResult<usize> {
        if vectors.is_empty() {
            return Ok(0);
        }
        let ids: Vec<String> = vectors.iter().map(|(id, _)| id.clone()).collect();
        let written = self.store.set_new_item_vectors(vectors).await?;
        metrics::counter!("recd_new_item_vectors_total").increment(written as u64);
        if written > 0 {
            self.caches.items_changed(ids).await;
        }
        Ok(written)
    }

    /// After an upsert: the content map's vector for the upserted items that have none
    /// (and are not folded in already).
    pub(super) async fn map_new_items(&self, items: &[ItemUpsert]) -> EngineResult<usize> {
        let params = &self.config.model.new_items;
        if !params.content {
            return Ok(0);
        }
        let without: Vec<&Item> = items
            .iter()
            .filter(|u| u.item.vector.is_none())
            .map(|u| &u.item)
            .collect();
        if without.is_empty() {
            return Ok(0);
        }
        let Some(model) = self.live_new_item_model().await? else {
            return Ok(0);
        };
        let Some(content) = &model.content else {
            return Ok(0);
        };
        let touches: Vec<recd_store::NewItemTouch> = without
            .iter()
            .map(|it| (it.id.clone(), String::new(), 0.0))
            .collect();
        let new: HashMap<String, Vec<(String, f32)>> = self
            .store
            .touch_new_items(&touches)
            .await?
            .into_iter()
            .collect();
        let vectors: Vec<(String, Vec<f32>)> = without
            .iter()
            .filter(|it| new.get(&it.id).is_some_and(|l| !ready(l, params)))
            .filter_map(|it| Some((it.id.clone(), content.apply(it)?)))
            .collect();
        self.write_new_vectors(vectors).await
    }

    /// Fits and keeps the content map of version `seq` (just made live) unless it has
    /// one: the map's fit is part of making a version live, so that an item upserted
    /// right after gets its content vector.
    pub(super) async fn keep_content_map(&self, seq: u64) -> EngineResult<()> {
        if self.config.model.new_items.content
            && self.store.model_chunk(seq, CONTENT_CHUNK).await?.is_none()
            && let Some(map) = self.fit_content_map(seq).await?
        {
            self.store
                .put_model_chunk(seq, CONTENT_CHUNK, map.encode())
                .await?;
        }
        // A fresh load: the version (and its content map) may have changed.
        *self.new_items.current.lock().await = None;
        Ok(())
    }

    /// Gives every new item of the catalog a vector in the space of the live version:
    /// its fold-in where its list is ready, else its content map's. A server runs it in
    /// the background after `recd train` marked a version live (a whole catalog is read);
    /// `recd train` on a store it opened itself and activations run it before returning.
    /// Returns how many vectors were written.
    pub async fn place_new_items(&self) -> EngineResult<usize> {
        let params = self.config.model.new_items.clone();
        if !(params.fold_in || params.content) {
            return Ok(0);
        }
        let Some(model) = self.live_new_item_model().await? else {
            return Ok(0);
        };
        let mut written = 0;
        let mut after: Option<String> = None;
        loop {
            let page = self
                .store
                .list_items(after.as_deref(), PAGE, &recd_core::Filter::all())
                .await?;
            let touches: Vec<recd_store::NewItemTouch> = page
                .entries
                .iter()
                .map(|it| (it.id.clone(), String::new(), 0.0))
                .collect();
            let lists = self.store.touch_new_items(&touches).await?;
            let (folded, rest): (Vec<_>, Vec<_>) = lists
                .into_iter()
                .partition(|(_, l)| params.fold_in && ready(l, &params));
            let mut vectors = self.fold_lists(&model, &folded).await?;
            if let Some(content) = model.content.as_ref().filter(|_| params.content) {
                let done: std::collections::HashSet<String> =
                    vectors.iter().map(|(id, _)| id.clone()).collect();
                let by_id: HashMap<&str, &Item> = page
                    .entries
                    .iter()
                    .map(|it| (it.id.as_str(), &**it))
                    .collect();
                for (id, _) in folded.iter().chain(&rest) {
                    if done.contains(id) {
                        continue;
                    }
                    if let Some(v) = by_id.get(id.as_str()).and_then(|it| content.apply(it)) {
                        vectors.push((id.clone(), v));
                    }
                }
            }
            written += self.write_new_vectors(vectors).await?;
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        tracing::info!(vectors = written, "new items placed in the live model");
        Ok(written)
    }

    /// The content map of version `seq`: its item vectors against the catalog items'
    /// content; `None` when no trained item has content.
    async fn fit_content_map(&self, seq: u64) -> EngineResult<Option<ContentModel>> {
        let registry = self.store.models().await?;
        let Some(record) = registry.models.iter().find(|m| m.seq == seq) else {
            return Ok(None);
        };
        let params = &self.config.model.new_items;
        let dim = self.store.schema().vector.dim;
        let mut features: Vec<Vec<(u32, f32)>> = Vec::new();
        let mut targets: Vec<Vec<f32>> = Vec::new();
        for index in 0..record.chunks {
            let Some(bytes) = self.store.model_chunk(seq, index).await? else {
                continue;
            };
            let chunk = ModelChunk::decode(&bytes)?;
            if chunk.items.is_empty() {
                continue;
            }
            let ids: Vec<String> = chunk.items.iter().map(|(id, _)| id.clone()).collect();
            let found = self.store.get_items(&ids).await?;
            for ((_, v), item) in chunk.items.into_iter().zip(found) {
                let Some(item) = item else { continue };
                let f = content_features(&item, params.content_buckets);
                if !f.is_empty() && v.len() == dim {
                    features.push(f);
                    targets.push(v);
                }
            }
        }
        let buckets = params.content_buckets;
        let lambda = params.content_regularization;
        let map = tokio::task::spawn_blocking(move || {
            let rows: Vec<recd_core::newitems::ContentRow<'_>> = features
                .into_iter()
                .zip(targets.iter())
                .map(|(f, y)| (f, y.as_slice()))
                .collect();
            ContentModel::fit(&rows, buckets, dim, lambda)
        })
        .await
        .map_err(|e| EngineError::Internal(format!("the content map's fit failed: {e}")))?;
        Ok(map)
    }
}
