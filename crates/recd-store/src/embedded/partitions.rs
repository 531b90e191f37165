//! Per-value graphs of the schema's `vector.partition_by` tag field: beside the main index,
//! each value with at least [`MIN_ITEMS`] items gets its own HNSW graph over its items'
//! vectors, and a KNN whose filter requires one of a few values of that field walks those
//! values' graphs instead of the main one.
//!
//! # Why
//! A filter that correlates with the vectors (a category) is the main graph's slowest case:
//! the walk starts near the query, in a neighbourhood where no admitted item lives, and
//! spends most of its distances there before it reaches the admitted ones. A graph over only
//! the admitted items has no such neighbourhood: the walk is an unfiltered one, on a smaller
//! graph. At 1M × 64 with a 10 % category filter (five categories of fifty), one graph per
//! category answered 9,212 QPS against 1,981 through the main graph, 1.03× the main graph's
//! unfiltered search (int8; BENCHMARKS.md, session 22), for 36–40 % more build time and one
//! more copy of each vector.
//!
//! # How a search uses them
//! [`Partitions::search`] takes the values the filter requires (and the filter's exact
//! bitmap, when the filter has more than the values), and first prices the search both
//! ways with the main index's planner model (the graphs only when clearly cheaper: see
//! [`GRAPHS_MARGIN`]). Each value with a graph is searched in it — unfiltered when every
//! item of the value passes the filter (the graphs so walked share the default beam, see
//! [`shared_ef`]), else with the filter's bitmap inside that value — and the values
//! without one (fewer than [`MIN_ITEMS`] items: an exact scan is as fast) are searched
//! together in the main index.
//! Through the server at 1M × 64, five categories of fifty: 14× the main graph's
//! throughput at recall@10 0.976, 0.76× the unfiltered search's (BENCHMARKS.md, session 25).
//! Hits are merged, deduplicated (an item may carry several values) and checked against the
//! filter (its bitmap, or for a filter of the values alone their own bitmaps, so that no
//! union of them is built per search), so a graph that is a moment behind the catalog (a
//! write in progress) can only miss an item, never return one the filter does not admit.
//! More than [`MAX_VALUES_PER_QUERY`] values go to the main index: its filtered walk beats
//! many small ones.
//!
//! # How writes keep them current
//! Item writes are serialized (the store's items lock); each tells [`Partitions::write`]
//! what changed before it publishes the items in the catalog: the item leaves the graphs of
//! values it no longer has (or all, when it loses its vector) and is inserted in those of
//! its values (re-linked only when its vector changed or the value is new to it). A value
//! that reaches [`MIN_ITEMS`] gets its graph after the catalog is published
//! ([`Partitions::grow`]), built from the catalog. The graphs are saved with the main
//! index's snapshot and loaded, verified and brought up to date with the items at open (see
//! `index_file`), like the main graph.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;
use recd_core::{Filter, Item, Quantization, Schema};
use recd_index::{Hit, HnswParams, IndexError, Metric, SearchOptions, VectorIndex};
use roaring::RoaringBitmap;

use super::catalog::Catalog;

/// A value gets its own graph once this many items carry it. Below it the main index's
/// planner scans the value's items exactly, which costs about what a small walk does.
/// (Smaller in unit tests, so that they need few items.)
pub const MIN_ITEMS: u64 = if cfg!(test) { 64 } else { 1_024 };

/// The graphs' estimated cost is multiplied by this before it is set against the main
/// index's: the planner's model prices an unfiltered walk at `ef × 450 ns` (29 µs at the
/// default beam), below what one costs (~41 µs at 100k × 64, f32: session 21's unfiltered
/// walks ran at ~24k QPS, 1.62× hnswlib's 14,975), and five categories of
/// ~2,000 items at 100k, which it priced at 138 µs against 144 µs for the main index's
/// sketched scan, answered at 0.70× the main index's throughput through the server
/// (BENCHMARKS.md, session 24). At 1M the graphs' estimate is a fifth of the main index's.
const GRAPHS_MARGIN: f64 = 2.0;

/// A filter requiring more values than this is searched in the main index.
pub const MAX_VALUES_PER_QUERY: usize = 8;

/// The per-value graphs of one tag field (or none: `field` is `None`).
#[derive(Debug)]
pub struct Partitions {
    field: Option<String>,
    dim: usize,
    metric: Metric,
    params: HnswParams,
    quantization: Quantization,
    /// Where an int8 graph keeps its `f32` vectors (an unnamed file).
    vector_dir: Option<PathBuf>,
    graphs: RwLock<HashMap<String, Arc<VectorIndex>>>,
    /// KNN searches answered through the graphs.
    searches: AtomicU64,
    /// How the graphs came to be at open: (loaded from their snapshot, built).
    opened: parking_lot::Mutex<(usize, usize)>,
    /// See [`forced`](Self::forced).
    #[cfg(test)]
    pub(super) force: std::sync::atomic::AtomicBool,
}

/// What a partitioned search did, for `explain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionedSearch {
    /// Per-value graphs walked.
    pub graphs: usize,
}

impl Partitions {
    /// The graphs `schema.vector.partition_by` asks for (none yet: see [`open`](Self::open)).
    pub fn new(
        schema: &Schema,
        metric: Metric,
        params: HnswParams,
        vector_dir: Option<PathBuf>,
    ) -> Self {
        Self {
            field: schema.vector.partition_by.clone(),
            dim: schema.vector.dim,
            metric,
            params,
            quantization: schema.vector.quantization,
            vector_dir,
            graphs: RwLock::default(),
            searches: AtomicU64::new(0),
            opened: parking_lot::Mutex::new((0, 0)),
            #[cfg(test)]
            force: std::sync::atomic::AtomicBool::new(true),
        }
    }

    /// The partitioning field, if any.
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// The graphs, by value (a snapshot of the map: the `Arc`s stay valid).
    pub fn graphs(&self) -> Vec<(String, Arc<VectorIndex>)> {
        let mut all: Vec<_> = self
            .graphs
            .read()
            .iter()
            .map(|(v, g)| (v.clone(), g.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// KNN searches answered through the graphs so far.
    pub fn searches(&self) -> u64 {
        self.searches.load(Ordering::Relaxed)
    }

    /// At open, once `catalog` holds every stored item: gives each value with at least
    /// [`MIN_ITEMS`] items its graph — `loaded`'s (from the snapshot), brought up to date
    /// with the catalog, or built afresh. Returns (graphs loaded, graphs built).
    pub fn open(
        &self,
        catalog: &Catalog,
        mut loaded: HashMap<String, VectorIndex>,
        mut bring_up_to_date: impl FnMut(&VectorIndex, &[(u32, Vec<f32>)]) -> bool,
        mut build: impl FnMut(&VectorIndex, &[(u32, Vec<f32>)]),
    ) -> (usize, usize) {
        let Some(field) = &self.field else {
            return (0, 0);
        };
        let (mut reused, mut built) = (0, 0);
        let mut graphs = HashMap::new();
        for (value, slots) in catalog.tag_values(field) {
            if slots.len() < MIN_ITEMS {
                continue;
            }
            let vectors = vectors_of(catalog, slots);
            let graph = match loaded.remove(value) {
                Some(g) if bring_up_to_date(&g, &vectors) => {
                    reused += 1;
                    g
                }
                _ => {
                    let g = self.empty();
                    build(&g, &vectors);
                    built += 1;
                    g
                }
            };
            self.finish(&graph);
            graphs.insert(value.to_string(), Arc::new(graph));
        }
        *self.graphs.write() = graphs;
        *self.opened.lock() = (reused, built);
        (reused, built)
    }

    /// How the graphs came to be at open: (loaded from their snapshot, built afresh).
    pub fn opened(&self) -> (usize, usize) {
        *self.opened.lock()
    }

    /// Whether searches go through the graphs whatever the costs say (unit tests, whose
    /// catalogs are too small for the graphs to pay).
    fn forced(&self) -> bool {
        #[cfg(test)]
        return self.force.load(Ordering::Relaxed);
        #[cfg(not(test))]
        false
    }

    fn empty(&self) -> VectorIndex {
        VectorIndex::new(self.dim, self.metric, self.params)
    }

    /// Sets a graph's quantization (once it holds its vectors: the quantizer trains on them).
    fn finish(&self, graph: &VectorIndex) {
        if let Some(dir) = &self.vector_dir {
            graph.set_vector_dir(dir);
        }
        if let Err(e) = graph.set_quantization(self.quantization) {
            tracing::warn!(cause = %e, "cannot make a partition graph's vector file; its f32 vectors stay in memory");
        }
    }

    /// Brings the graphs in line with a write of `items` (each with its slot and the item it
    /// replaces), before the write is published in the catalog: an item leaves the graphs of
    /// the values it loses (all of them if it loses its vector, or is deleted: `new` is
    /// `None`) and is linked into those of its values (again only if its vector changed).
    /// Values without a graph are left to [`grow`](Self::grow). Callers hold the store's
    /// items lock, so writes come here one at a time.
    pub fn write<'a>(
        &self,
        items: impl IntoIterator<Item = (u32, Option<&'a Item>, Option<&'a Item>)>,
    ) -> Result<(), IndexError> {
        let Some(field) = &self.field else {
            return Ok(());
        };
        let graphs = self.graphs.read();
        if graphs.is_empty() {
            return Ok(());
        }
        let mut inserts: HashMap<&str, Vec<(u32, Vec<f32>)>> = HashMap::new();
        for (slot, old, new) in items {
            let old_values = tags_with_vector(old, field);
            let new_values = tags_with_vector(new, field);
            for value in old_values.difference(&new_values) {
                if let Some(g) = graphs.get(*value) {
                    g.remove(slot);
                }
            }
            let Some(vector) = new.and_then(|n| n.vector.as_ref()) else {
                continue;
            };
            let same_vector = old.and_then(|o| o.vector.as_ref()) == Some(vector);
            for value in &new_values {
                if same_vector && old_values.contains(value) {
                    continue;
                }
                if let Some((key, _)) = graphs.get_key_value(*value) {
                    inserts
                        .entry(key.as_str())
                        .or_default()
                        .push((slot, vector.clone()));
                }
            }
        }
        for (value, batch) in inserts {
            if let Some(g) = graphs.get(value) {
                g.insert_batch(&batch)?;
            }
        }
        Ok(())
    }

    /// After a write is published: builds the graph of each of `values` that reached
    /// [`MIN_ITEMS`] items without one. Called under the items lock (no write can come in
    /// between the copy of a value's vectors and the graph's publication).
    pub fn grow<'a>(&self, catalog: &RwLock<Catalog>, values: impl IntoIterator<Item = &'a str>) {
        if self.field.is_none() {
            return;
        }
        let wanted: BTreeSet<&str> = values.into_iter().collect();
        for value in wanted {
            if self.graphs.read().contains_key(value) {
                continue;
            }
            let vectors = {
                let c = catalog.read();
                match self.field.as_deref().and_then(|f| c.tag_slots(f, value)) {
                    Some(slots) if slots.len() >= MIN_ITEMS => vectors_of(&c, slots),
                    _ => continue,
                }
            };
            let graph = self.empty();
            if let Err(e) = graph.insert_bulk(&vectors, 20_000, |_| {}) {
                tracing::warn!(value, cause = %e, "cannot build a partition graph; its value is searched in the main index");
                continue;
            }
            self.finish(&graph);
            tracing::info!(value, vectors = vectors.len(), "partition graph built");
            self.graphs
                .write()
                .insert(value.to_string(), Arc::new(graph));
        }
    }

    /// The values of the partitioning field `items` carry (candidates for [`grow`](Self::grow)).
    pub fn values_of<'a>(&self, items: impl IntoIterator<Item = &'a Item>) -> Vec<String> {
        let Some(field) = &self.field else {
            return Vec::new();
        };
        let mut out = BTreeSet::new();
        for item in items {
            out.extend(
                tags_with_vector(Some(item), field)
                    .into_iter()
                    .map(str::to_string),
            );
        }
        out.into_iter().collect()
    }

    /// Searches through the graphs when `filter` requires a few values of the field (see
    /// `Filter::required_tags`) and the planner prices that below the main index's search;
    /// `allowed` gives the filter's exact bitmap (`None`: the filter admits everything),
    /// asked for only when the filter has more than the values, and `main` is the main
    /// index (also for the values without a graph). No graph returns a slot in `exclude`.
    /// `None`: not applicable, search the main index as usual.
    #[allow(clippy::too_many_arguments)]
    pub fn search<'b>(
        &self,
        catalog: &Catalog,
        main: &VectorIndex,
        query: &[f32],
        k: usize,
        filter: &Filter,
        exclude: &RoaringBitmap,
        allowed: impl FnOnce() -> Option<&'b RoaringBitmap>,
    ) -> Option<Result<(Vec<Hit>, PartitionedSearch), IndexError>> {
        let field = self.field.as_deref()?;
        let values = filter.required_tags(field)?;
        if values.is_empty() || values.len() > MAX_VALUES_PER_QUERY {
            return None;
        }
        // A filter that is nothing but the values admits every item of each: no per-value
        // count to take (measured: roaring's `is_subset` was a tenth of a filtered request's
        // CPU at 100k before the counts came first), and no bitmap of the filter to build
        // (its union of the values' bitmaps was a fifth at 1M): the values' own bitmaps
        // say what it admits. Any other filter: its bitmap (`None` = everything).
        let whole = match filter {
            Filter::TagAny { .. } => true,
            Filter::And(all) => all.len() == 1,
            _ => false,
        };
        let bitmap = if whole { None } else { Some(allowed()?) };
        // Each value: its items, its graph if any, and how many of its items the filter admits.
        let mut plan: Vec<(&RoaringBitmap, Option<Arc<VectorIndex>>, u64)> = Vec::new();
        {
            let graphs = self.graphs.read();
            for value in values {
                let Some(slots) = catalog.tag_slots(field, value) else {
                    continue;
                };
                let inside = match bitmap {
                    None => slots.len(),
                    Some(allowed) => slots.intersection_len(allowed),
                };
                if inside > 0 {
                    plan.push((slots, graphs.get(value).cloned(), inside));
                }
            }
        }
        if plan.iter().all(|(_, g, _)| g.is_none()) {
            return None;
        }
        // The main index's planner prices both ways: the graphs' searches (plus the scan of
        // the values without one), with a margin, against the main index's own plan for the
        // whole filter. A value with few items is scanned as fast as it is walked, and a
        // broad filter of small values is scanned through sketches faster than several walks.
        //
        // Graphs walked whole (every item of the value admitted) share the default beam (see
        // [`shared_ef`]).
        let whole_walks = plan
            .iter()
            .filter(|(slots, g, inside)| g.is_some() && *inside == slots.len())
            .count();
        let ef = shared_ef(main.params().ef_search, k, whole_walks);
        let mut graphs_cost = 0.0;
        let mut rest_count = 0;
        for (slots, graph, inside) in &plan {
            match graph {
                Some(g) if *inside == slots.len() => {
                    graphs_cost += g.estimated_cost(None, k, Some(ef))
                }
                Some(g) => graphs_cost += g.estimated_cost(Some(*inside), k, None),
                None => rest_count += inside,
            }
        }
        let rest_cost = if rest_count == 0 {
            0.0
        } else {
            main.estimated_cost(Some(rest_count), k, None)
        };
        let through_graphs = GRAPHS_MARGIN * graphs_cost + rest_cost;
        // Without the bitmap, the items admitted are counted once per value they carry (the
        // model's input, not an answer: an item with two values is rare).
        let admitted = bitmap.map_or_else(|| plan.iter().map(|p| p.2).sum(), RoaringBitmap::len);
        if through_graphs >= main.estimated_cost(Some(admitted), k, None) && !self.forced() {
            return None;
        }
        // Whether the filter admits `slot`, for the merge below.
        let admits = |slot: u32| match bitmap {
            Some(allowed) => allowed.contains(slot),
            None => plan.iter().any(|(slots, _, _)| slots.contains(slot)),
        };
        self.searches.fetch_add(1, Ordering::Relaxed);
        let run = || {
            let mut hits: Vec<Hit> = Vec::new();
            let mut rest = RoaringBitmap::new();
            let mut walked = 0;
            for (slots, graph, inside) in &plan {
                match graph {
                    Some(g) if *inside == slots.len() => {
                        let options = SearchOptions {
                            ef: Some(ef),
                            ..SearchOptions::default()
                        };
                        hits.extend(g.search_excluding(query, k, None, exclude, options)?.0);
                        walked += 1;
                    }
                    Some(g) => {
                        let within = bitmap.map_or_else(|| (*slots).clone(), |a| *slots & a);
                        let options = SearchOptions::default();
                        hits.extend(
                            g.search_excluding(query, k, Some(&within), exclude, options)?
                                .0,
                        );
                        walked += 1;
                    }
                    None => match bitmap {
                        Some(allowed) => rest |= *slots & allowed,
                        None => rest |= *slots,
                    },
                }
            }
            if !rest.is_empty() {
                let options = SearchOptions::default();
                hits.extend(
                    main.search_excluding(query, k, Some(&rest), exclude, options)?
                        .0,
                );
            }
            // Best first; an item in several graphs comes once; nothing the filter refuses.
            // Only the best are checked (each graph returns its own `k`: most never make it).
            hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
            let mut seen = RoaringBitmap::new();
            let hits = hits
                .into_iter()
                .filter(|h| admits(h.id) && seen.insert(h.id))
                .take(k)
                .collect();
            Ok((hits, PartitionedSearch { graphs: walked }))
        };
        Some(run())
    }
}

/// The beam of each of `walks` whole-value graphs searched for one query: the default beam
/// `ef` over the square root of their number (at least `k`). Their hits are merged, so each
/// walk needs only its share of the answer; but a beam split evenly (`ef / walks`, one
/// unfiltered walk's worth of expansions in all) lost too much recall on the queries the
/// server answers: 1M × 64, similar items within five categories, recall@10 0.939 against
/// 0.996 with the whole beam in every graph (9.99× vs 6.29× the one graph's throughput;
/// 100k: 0.949 vs 0.998; BENCHMARKS.md, session 24).
fn shared_ef(ef: usize, k: usize, walks: usize) -> usize {
    let share = (ef as f64 / (walks.max(1) as f64).sqrt()).ceil() as usize;
    share.max(k)
}

/// The values of `field` an item carries, if it has a vector (only such items are in graphs).
fn tags_with_vector<'a>(item: Option<&'a Item>, field: &str) -> BTreeSet<&'a str> {
    item.filter(|it| it.vector.is_some())
        .and_then(|it| it.field(field))
        .and_then(recd_core::FieldValue::as_tags)
        .map(|tags| tags.iter().map(String::as_str).collect())
        .unwrap_or_default()
}

/// The vectors of the live items in `slots`, by slot.
fn vectors_of(catalog: &Catalog, slots: &RoaringBitmap) -> Vec<(u32, Vec<f32>)> {
    slots
        .iter()
        .filter_map(|slot| catalog.vector_at(slot).map(|v| (slot, v.to_vec())))
        .collect()
}

#[cfg(test)]
mod tests {
    //! Through the store: partitioned searches answer like an exact search of the filter,
    //! follow every kind of item write, and survive restarts (loaded, or rebuilt when their
    //! files are damaged).

    use std::collections::BTreeMap;

    use recd_core::pipeline::rerank::Exclusions;
    use recd_core::{Filter, ItemUpsert, Schema};
    use serde_json::{Value, json};

    use super::MIN_ITEMS;
    use crate::embedded::exact::{cos, found_of_top10};
    use crate::embedded::{EmbeddedOptions, EmbeddedStore, Fsync};
    use crate::{ModelSettings, Store};

    const DIM: usize = 8;

    fn schema(partitioned: bool) -> Schema {
        let mut s = Schema::demo(DIM);
        s.vector.partition_by = partitioned.then(|| "category".to_string());
        s
    }

    fn xorshift(seed: u64) -> impl FnMut() -> f32 {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 23) as f32) - 1.0
        }
    }

    /// A vector near its category's centre (so the filter correlates with the vectors, the
    /// case partitions are for).
    fn vector(category: &str, seed: u64) -> Vec<f32> {
        let mut centre = xorshift(category.bytes().map(u64::from).sum::<u64>() * 7_919);
        let mut noise = xorshift(seed);
        (0..DIM).map(|_| centre() * 2.0 + noise() * 0.6).collect()
    }

    /// The test's copy of the catalog: id -> (vector, category, price).
    type Data = BTreeMap<String, (Option<Vec<f32>>, String, f64)>;

    async fn put(s: &EmbeddedStore, data: &mut Data, category: &str, ids: std::ops::Range<u64>) {
        let mut batch = Vec::new();
        for i in ids {
            let (id, v, price) = (
                format!("{category}{i}"),
                vector(category, i),
                (i % 100) as f64,
            );
            let j = json!({"id": id, "vector": v, "category": category, "price": price});
            batch.push(ItemUpsert::from_json(&j, &schema(false)).expect("item"));
            data.insert(id, (Some(v), category.to_string(), price));
        }
        s.upsert_items(batch).await.expect("upsert");
    }

    async fn catalog(s: &EmbeddedStore) -> Data {
        let mut data = Data::new();
        for (cat, n) in [("a", 300), ("b", 300), ("c", 300), ("d", 20)] {
            put(s, &mut data, cat, 0..n).await;
        }
        data
    }

    fn filter(v: Value) -> Filter {
        Filter::parse(&v, &schema(true)).expect("filter")
    }

    /// Answers `filter` for 20 queries; checks every hit against `data` (a vector, the
    /// filter, the exact score) and recall@10 against a brute force; returns the plans.
    async fn check(s: &EmbeddedStore, data: &Data, f: &Filter) -> Vec<(String, Option<usize>)> {
        let (mut found, mut wanted, mut plans) = (0, 0, Vec::new());
        let (mut found_rest, mut wanted_rest) = (0, 0);
        for q in 0..20u64 {
            let q = vector(["a", "b", "c", "d"][(q % 4) as usize], 90_000 + q);
            let (hits, plan) = s.knn_explained(&q, 10, f).await.expect("knn");
            let plan = plan.expect("the embedded store explains");
            plans.push((plan.plan.to_string(), plan.partitions));
            let passes = |id: &str| {
                let (v, cat, price) = &data[id];
                let item = json!({"id": id, "vector": v, "category": cat, "price": price});
                f.matches(&recd_core::Item::from_json(&item, &schema(false)).expect("item"))
            };
            // `explain` counts what the filter admits, even where the search did not need
            // the filter's bitmap.
            if plan.plan == "partitioned" {
                let admitted = data.keys().filter(|id| passes(id)).count();
                assert_eq!(plan.allowed, admitted as u64, "allowed");
            }
            for h in &hits {
                let v = data[&h.item.id]
                    .0
                    .as_ref()
                    .expect("only items with a vector");
                assert!(
                    (h.score - cos(&q, v)).abs() < 1e-4,
                    "{}: stale score",
                    h.item.id
                );
                assert!(passes(&h.item.id), "{} is outside the filter", h.item.id);
            }
            let candidates = data
                .iter()
                .filter(|(id, _)| passes(id))
                .filter_map(|(id, (v, _, _))| Some((id, v.as_deref()?)));
            let (got, want) = found_of_top10(&q, candidates, &hits);
            found += got;
            wanted += want;
            // The same search hiding its five best (a user's seen items): the same plan,
            // none of them, and the best ten of the rest.
            let seen: Vec<&str> = hits.iter().take(5).map(|h| h.item.id.as_str()).collect();
            let exclude = Exclusions::ids(seen.iter().copied());
            let (rest, rest_plan) = s
                .knn_excluding(&q, 10, f, &exclude, true)
                .await
                .expect("knn");
            let rest_plan = rest_plan.expect("the embedded store explains");
            assert_eq!(
                (rest_plan.plan, rest_plan.partitions),
                (plan.plan, plan.partitions)
            );
            assert_eq!(rest_plan.excluded, seen.len() as u64, "explain counts them");
            assert!(rest.iter().all(|h| !seen.contains(&h.item.id.as_str())));
            let candidates = data
                .iter()
                .filter(|(id, _)| passes(id) && !seen.contains(&id.as_str()))
                .filter_map(|(id, (v, _, _))| Some((id, v.as_deref()?)));
            let (got, want) = found_of_top10(&q, candidates, &rest);
            found_rest += got;
            wanted_rest += want;
        }
        assert!(found * 100 >= wanted * 95, "recall {found}/{wanted}");
        assert!(
            found_rest * 100 >= wanted_rest * 95,
            "recall excluding {found_rest}/{wanted_rest}"
        );
        plans
    }

    fn all_partitioned(plans: &[(String, Option<usize>)], graphs: usize) -> bool {
        plans
            .iter()
            .all(|(p, n)| p == "partitioned" && *n == Some(graphs))
    }

    fn none_partitioned(plans: &[(String, Option<usize>)]) -> bool {
        plans.iter().all(|(p, n)| p != "partitioned" && n.is_none())
    }

    #[test]
    fn graphs_walked_whole_share_the_default_beam() {
        assert_eq!(super::shared_ef(64, 10, 1), 64);
        assert_eq!(super::shared_ef(64, 10, 4), 32);
        assert_eq!(super::shared_ef(64, 10, 5), 29);
        // Never below k, whatever the share.
        assert_eq!(super::shared_ef(64, 50, 5), 50);
        assert_eq!(super::shared_ef(64, 10, 0), 64);
    }

    #[tokio::test]
    async fn filters_on_the_field_are_answered_by_the_values_graphs() {
        let s = EmbeddedStore::in_memory(schema(true), ModelSettings::default()).expect("store");
        let data = catalog(&s).await;
        // a, b, c reach MIN_ITEMS; d (20 items) does not.
        assert_eq!(s.partition_graphs().graphs, 3);
        let cases = [
            (json!({"category": {"any": ["a"]}}), Some(1)),
            (json!({"category": {"any": ["b", "c"]}}), Some(2)),
            // d has no graph: its items are searched in the main index, beside a's graph.
            (json!({"category": {"any": ["a", "d"]}}), Some(1)),
            // Another condition inside the value: the graph's walk takes the filter.
            (
                json!({"category": {"any": ["a"]}, "price": {"lt": 30}}),
                Some(1),
            ),
            // Not for the graphs: no graph among the values, another field, a negation.
            (json!({"category": {"any": ["d"]}}), None),
            (json!({"brand": {"any": ["x"]}}), None),
            (json!({"category": {"none": ["a"]}}), None),
            (json!({}), None),
        ];
        for (f, graphs) in cases {
            let plans = check(&s, &data, &filter(f.clone())).await;
            match graphs {
                Some(n) => assert!(all_partitioned(&plans, n), "{f}: {plans:?}"),
                None => assert!(none_partitioned(&plans), "{f}: {plans:?}"),
            }
        }
        // Too many values for separate walks: the main index.
        let many: Vec<String> = (0..=super::MAX_VALUES_PER_QUERY)
            .map(|i| format!("v{i}"))
            .chain(["a".into()])
            .collect();
        let plans = check(&s, &data, &filter(json!({"category": {"any": many}}))).await;
        assert!(none_partitioned(&plans), "{plans:?}");
        // Without `partition_by` nothing is partitioned, and the answers are as right.
        let plain =
            EmbeddedStore::in_memory(schema(false), ModelSettings::default()).expect("store");
        let data = catalog(&plain).await;
        assert_eq!(plain.partition_graphs().graphs, 0);
        let plans = check(&plain, &data, &filter(json!({"category": {"any": ["a"]}}))).await;
        assert!(none_partitioned(&plans), "{plans:?}");
    }

    #[tokio::test]
    async fn the_graphs_answer_only_when_the_planner_prices_them_cheaper() {
        let s = EmbeddedStore::in_memory(schema(true), ModelSettings::default()).expect("store");
        s.inner
            .partitions
            .force
            .store(false, std::sync::atomic::Ordering::Relaxed);
        let mut data = Data::new();
        // x and y: 6,000 items each, where one walk of a value's graph beats the main index's
        // scan of half the catalogue; z: 100 items, scanned as fast in the main index.
        put(&s, &mut data, "x", 0..6_000).await;
        put(&s, &mut data, "y", 0..6_000).await;
        put(&s, &mut data, "z", 0..100).await;
        assert_eq!(s.partition_graphs().graphs, 3);
        let plans = check(&s, &data, &filter(json!({"category": {"any": ["x"]}}))).await;
        assert!(all_partitioned(&plans, 1), "{plans:?}");
        let plans = check(&s, &data, &filter(json!({"category": {"any": ["z"]}}))).await;
        assert!(none_partitioned(&plans), "{plans:?}");
    }

    #[tokio::test]
    async fn item_writes_move_items_in_and_out_of_the_graphs() {
        let s = EmbeddedStore::in_memory(schema(true), ModelSettings::default()).expect("store");
        let mut data = catalog(&s).await;
        let only = |cat: &str| filter(json!({"category": {"any": [cat]}}));
        let top = |s: &EmbeddedStore, v: Vec<f32>, f: Filter| {
            let s = s.clone();
            async move {
                s.knn(&v, 1, &f)
                    .await
                    .expect("knn")
                    .first()
                    .map(|h| h.item.id.clone())
            }
        };
        // a7 moves to b (same vector): found under b, not under a.
        let v = data["a7"].0.clone().expect("vector");
        let j = json!({"id": "a7", "vector": v, "category": "b", "price": 7});
        s.upsert_items(vec![
            ItemUpsert::from_json(&j, &schema(false)).expect("item"),
        ])
        .await
        .expect("upsert");
        data.insert("a7".into(), (Some(v.clone()), "b".into(), 7.0));
        assert_eq!(top(&s, v.clone(), only("b")).await.as_deref(), Some("a7"));
        assert_ne!(top(&s, v.clone(), only("a")).await.as_deref(), Some("a7"));
        // a8 gets a new vector (training write-back): found by it in a's graph.
        let fresh = vector("c", 5_555);
        s.set_item_vectors(vec![("a8".into(), fresh.clone())])
            .await
            .expect("write-back");
        data.get_mut("a8").expect("a8").0 = Some(fresh.clone());
        assert_eq!(top(&s, fresh, only("a")).await.as_deref(), Some("a8"));
        // a9 is deleted, a10 loses its vector: neither is found any more.
        let (v9, v10) = (
            data["a9"].0.clone().expect("v"),
            data["a10"].0.clone().expect("v"),
        );
        assert!(s.delete_item("a9").await.expect("delete"));
        data.remove("a9");
        let j = json!({"id": "a10", "vector": null, "category": "a", "price": 10});
        s.upsert_items(vec![
            ItemUpsert::from_json(&j, &schema(false)).expect("item"),
        ])
        .await
        .expect("upsert");
        data.insert("a10".into(), (None, "a".into(), 10.0));
        assert_ne!(top(&s, v9, only("a")).await.as_deref(), Some("a9"));
        assert_ne!(top(&s, v10, only("a")).await.as_deref(), Some("a10"));
        let plans = check(&s, &data, &only("a")).await;
        assert!(all_partitioned(&plans, 1), "{plans:?}");
        check(&s, &data, &only("b")).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn searches_racing_with_moves_between_values_never_leave_the_filter() {
        let s = EmbeddedStore::in_memory(schema(true), ModelSettings::default()).expect("store");
        let data = catalog(&s).await;
        let mover = {
            let s = s.clone();
            let data = data.clone();
            tokio::spawn(async move {
                // a0..a49 go to b and back, twenty times, same vectors.
                for round in 0..20 {
                    let to = if round % 2 == 0 { "b" } else { "a" };
                    let batch = (0..50)
                        .map(|i| {
                            let id = format!("a{i}");
                            let v = data[&id].0.clone();
                            let j = json!({"id": id, "vector": v, "category": to, "price": 1});
                            ItemUpsert::from_json(&j, &schema(false)).expect("item")
                        })
                        .collect();
                    s.upsert_items(batch).await.expect("upsert");
                }
            })
        };
        let only_a = filter(json!({"category": {"any": ["a"]}}));
        let mut searched = 0;
        while !mover.is_finished() || searched < 50 {
            let q = vector("a", 40_000 + searched);
            let (hits, plan) = s.knn_explained(&q, 10, &only_a).await.expect("knn");
            assert_eq!(plan.expect("plan").plan, "partitioned");
            for h in hits {
                let tags = h
                    .item
                    .field("category")
                    .and_then(recd_core::FieldValue::as_tags);
                assert_eq!(
                    tags,
                    Some(&["a".to_string()][..]),
                    "{} is not in a",
                    h.item.id
                );
            }
            searched += 1;
        }
        mover.await.expect("mover");
    }

    #[tokio::test]
    async fn a_value_gets_its_graph_when_it_reaches_the_threshold() {
        let s = EmbeddedStore::in_memory(schema(true), ModelSettings::default()).expect("store");
        let mut data = catalog(&s).await;
        let e = filter(json!({"category": {"any": ["e"]}}));
        put(&s, &mut data, "e", 0..MIN_ITEMS - 1).await;
        assert!(none_partitioned(&check(&s, &data, &e).await));
        put(&s, &mut data, "e", MIN_ITEMS - 1..MIN_ITEMS + 40).await;
        assert_eq!(s.partition_graphs().graphs, 4);
        assert!(all_partitioned(&check(&s, &data, &e).await, 1));
    }

    fn options() -> EmbeddedOptions {
        EmbeddedOptions {
            fsync: Fsync::Always,
            ..EmbeddedOptions::default()
        }
    }

    fn open(dir: &std::path::Path, partitioned: bool) -> EmbeddedStore {
        EmbeddedStore::open(
            dir,
            Some(schema(partitioned)),
            ModelSettings::default(),
            options(),
        )
        .expect("open")
    }

    async fn answers(s: &EmbeddedStore) -> Vec<Vec<(String, f32)>> {
        let mut out = Vec::new();
        for q in 0..20u64 {
            let q = vector("b", 70_000 + q);
            for f in [
                json!({"category": {"any": ["a"]}}),
                json!({"category": {"any": ["b", "d"]}}),
            ] {
                let hits = s.knn(&q, 10, &filter(f)).await.expect("knn");
                out.push(
                    hits.into_iter()
                        .map(|h| (h.item.id.clone(), h.score))
                        .collect(),
                );
            }
        }
        out
    }

    /// The inode of each per-value graph's file (a rewrite renames a new file over it).
    fn inodes(dir: &std::path::Path) -> BTreeMap<String, u64> {
        use std::os::unix::fs::MetadataExt;
        std::fs::read_dir(super::super::partition_files::dir(dir))
            .expect("partition files")
            .flatten()
            .map(|e| {
                let ino = e.metadata().expect("metadata").ino();
                (e.file_name().to_string_lossy().into_owned(), ino)
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_save_rewrites_only_the_graphs_that_changed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut data = {
            let s = open(dir.path(), true);
            catalog(&s).await
        };
        let first = inodes(dir.path());
        assert_eq!(first.len(), 3, "a, b and c have graphs: {first:?}");
        // Loaded unchanged: the shutdown writes none of them.
        {
            let s = open(dir.path(), true);
            assert_eq!(s.partition_graphs().loaded, 3);
        }
        assert_eq!(inodes(dir.path()), first);
        let after = {
            let s = open(dir.path(), true);
            // Items of one value: that value's file only. A file of no known value (left
            // by a start that could not read the files) is deleted by the save.
            let stray = super::super::partition_files::dir(dir.path()).join("p99.snapshot");
            std::fs::write(&stray, b"stray").expect("stray file");
            put(&s, &mut data, "a", 1_000..1_010).await;
            s.snapshot_index().expect("snapshot");
            assert!(!stray.exists(), "the stray file is deleted");
            let after = inodes(dir.path());
            let rewritten = first.iter().filter(|(f, ino)| after[*f] != **ino).count();
            assert_eq!(rewritten, 1, "{first:?} -> {after:?}");
            // A value that grows a graph: one more file, the others as they were.
            put(&s, &mut data, "e", 0..MIN_ITEMS + 1).await;
            s.snapshot_index().expect("snapshot");
            let grown = inodes(dir.path());
            assert_eq!(grown.len(), 4);
            assert!(
                after.iter().all(|(f, ino)| grown[f] == *ino),
                "{after:?} -> {grown:?}"
            );
            grown
        };
        assert_eq!(
            inodes(dir.path()),
            after,
            "nothing left to write at shutdown"
        );
        // And the files are what the graphs were: loaded, answering within their values.
        let s = open(dir.path(), true);
        assert_eq!(s.partition_graphs().loaded, 4);
        for cat in ["a", "e"] {
            let plans = check(&s, &data, &filter(json!({"category": {"any": [cat]}}))).await;
            assert!(all_partitioned(&plans, 1), "{cat}: {plans:?}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_graphs_are_saved_loaded_checked_and_rebuilt_when_damaged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (before, mut data) = {
            let s = open(dir.path(), true);
            let data = catalog(&s).await;
            (answers(&s).await, data)
        };
        let files = super::super::partition_files::dir(dir.path());
        assert_eq!(
            std::fs::read_dir(&files)
                .expect("saved at shutdown")
                .count(),
            3
        );
        // Loaded, with the same answers.
        {
            let s = open(dir.path(), true);
            let opened = s.partition_graphs();
            assert_eq!((opened.graphs, opened.loaded, opened.built), (3, 3, 0));
            assert_eq!(answers(&s).await, before);
            // Written while running, then killed before any snapshot: the next start
            // finds graphs older than the items and brings them up to date.
            put(&s, &mut data, "a", 1_000..1_050).await;
            s.snapshot_index().expect("snapshot");
            put(&s, &mut data, "a", 2_000..2_030).await;
            assert!(s.delete_item("b3").await.expect("delete"));
            data.remove("b3");
            s.crash();
        }
        {
            let s = open(dir.path(), true);
            assert_eq!(s.partition_graphs().loaded, 3);
            assert!(all_partitioned(
                &check(&s, &data, &filter(json!({"category": {"any": ["a"]}}))).await,
                1
            ));
            check(&s, &data, &filter(json!({"category": {"any": ["b"]}}))).await;
        }
        // A damaged file and an unfinished save: that graph is rebuilt, answers stay right.
        let victim = std::fs::read_dir(&files)
            .expect("dir")
            .flatten()
            .next()
            .expect("a file")
            .path();
        let mut bytes = std::fs::read(&victim).expect("read");
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xFF;
        std::fs::write(&victim, bytes).expect("write");
        std::fs::create_dir_all(files.with_extension("tmp")).expect("temp dir");
        {
            let s = open(dir.path(), true);
            let opened = s.partition_graphs();
            assert_eq!((opened.loaded, opened.built), (2, 1));
            assert!(
                !files.with_extension("tmp").exists(),
                "the unfinished save is deleted"
            );
            for cat in ["a", "b", "c"] {
                let plans = check(&s, &data, &filter(json!({"category": {"any": [cat]}}))).await;
                assert!(all_partitioned(&plans, 1), "{cat}: {plans:?}");
            }
        }
        // Turned off: no graphs, no files after the next save; turned on again: built.
        {
            let s = open(dir.path(), false);
            assert_eq!(s.partition_graphs().graphs, 0);
            put(&s, &mut data, "c", 5_000..5_001).await;
        }
        assert!(!files.exists(), "no graphs, no files");
        let s = open(dir.path(), true);
        let opened = s.partition_graphs();
        assert_eq!((opened.graphs, opened.loaded, opened.built), (3, 0, 3));
        check(&s, &data, &filter(json!({"category": {"any": ["c"]}}))).await;
    }
}
