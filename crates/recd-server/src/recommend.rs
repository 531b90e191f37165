//! The request path of a recommendation: user features → query vector → candidates
//! (KNN + popular + text + transitions, fetched concurrently) → score → re-rank → answer.
//!
//! The transitions source (`[ranking] transitions_candidates`, 0 = off) reads the live
//! model version's successor lists of the user's most recent items (one store read),
//! scores them as `recd_core::pipeline::transitions` does, leaves out excluded items
//! before fetching the rest, and keeps those passing the request's filter (it has no
//! index to filter inside, so it checks each fetched item against `Filter::matches`).
//!
//! The IO lives here; every decision is a `recd_core::pipeline` function. The offline
//! replay drives this same [`Recommender`], so what it measures is what `/v1/recommend` does.
//! It knows nothing of caches: popular candidates come from a [`PopularSource`] (the store,
//! or the engine's cached view of it), and whole answers are cached by the engine around it.

use std::sync::Arc;
use std::time::Instant;

use futures_util::future::BoxFuture;
use recd_core::pipeline::rerank::exclusions;
use recd_core::pipeline::{
    Candidate, Diversity, RankParams, Ranked, Scored, merge, merge_with_next, query_vector, rerank,
    score_all, score_learned, transitions,
};
use recd_core::text::distinct_terms;
use recd_core::{Filter, SessionParams};
use recd_store::{PopularHit, Store, StoreError};
use serde_json::{Value, json};

use crate::answer::Source;
use crate::features::Features;
use crate::metrics;

/// Where popular candidates come from: the store itself, or a cache in front of it.
pub trait PopularSource: Send + Sync {
    /// The `k` most popular items passing `filter`; `use_cache: false` reads the store.
    fn popular<'a>(
        &'a self,
        k: usize,
        filter: &'a Filter,
        use_cache: bool,
    ) -> BoxFuture<'a, Result<Vec<PopularHit>, StoreError>>;
}

/// Popular candidates straight from the store.
struct FromStore(Arc<dyn Store>);

impl PopularSource for FromStore {
    fn popular<'a>(
        &'a self,
        k: usize,
        filter: &'a Filter,
        _use_cache: bool,
    ) -> BoxFuture<'a, Result<Vec<PopularHit>, StoreError>> {
        self.0.popular(k, filter)
    }
}

/// The most candidates asked of one source.
const MAX_CANDIDATES: usize = 5000;

/// How many feature contributions `explain` shows per item.
const TOP_CONTRIBUTIONS: usize = 5;

/// A validated recommendation request.
#[derive(Debug, Clone)]
pub struct Request {
    /// Who.
    pub user_id: String,
    /// How many items, 1–1000.
    pub count: usize,
    /// Pre-filter applied inside retrieval.
    pub filter: Filter,
    /// Items never to show.
    pub exclude: Vec<String>,
    /// Free text for hybrid retrieval.
    pub query: Option<String>,
    /// Diversity cap.
    pub diversity: Option<Diversity>,
    /// Whether to report per-stage detail.
    pub explain: bool,
    /// Whether cached candidate lists (popular) may be used.
    pub use_cache: bool,
    /// The strategy the request asks for (else its experiment's, else `default`).
    pub strategy: Option<String>,
}

/// A computed answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The items, best first.
    pub items: Vec<Ranked>,
    /// Personalized or popular.
    pub source: Source,
    /// Per-stage detail, when asked for.
    pub stages: Option<Value>,
}

/// Told about every query the pipeline computes (drift monitoring watches their norms).
pub trait QueryWatch: Send + Sync {
    /// The norm of the user's raw query vector: the long-term vector's, or, for a user
    /// without one, the session's (see `UserState::session_vector_norm`).
    fn query_norm(&self, norm: f64);
}

/// Runs the pipeline against a store.
#[derive(Clone)]
pub struct Recommender {
    store: Arc<dyn Store>,
    popular: Arc<dyn PopularSource>,
    ranking: RankParams,
    session: SessionParams,
    watch: Option<Arc<dyn QueryWatch>>,
    features: Option<Arc<Features>>,
}

impl std::fmt::Debug for Recommender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recommender")
            .field("backend", &self.store.backend())
            .finish()
    }
}

/// Times one stage into the metrics and, when explaining, into the answer.
struct Stopwatch {
    at: Instant,
    stages: Vec<(&'static str, f64)>,
}

impl Stopwatch {
    fn new() -> Self {
        Self {
            at: Instant::now(),
            stages: Vec::new(),
        }
    }

    fn lap(&mut self, stage: &'static str) {
        let now = Instant::now();
        let secs = (now - self.at).as_secs_f64();
        metrics::stage(stage, secs);
        self.stages.push((stage, secs * 1000.0));
        self.at = now;
    }

    fn to_json(&self) -> Value {
        Value::Object(
            self.stages
                .iter()
                .map(|(s, ms)| (s.to_string(), json!(ms)))
                .collect(),
        )
    }
}

impl Recommender {
    /// A recommender over `store`, taking popular candidates from the store too.
    pub fn new(store: Arc<dyn Store>, ranking: RankParams, session: SessionParams) -> Self {
        let popular = Arc::new(FromStore(Arc::clone(&store)));
        Self {
            store,
            popular,
            ranking,
            session,
            watch: None,
            features: None,
        }
    }

    /// The same recommender, with online features (and the learned rankers they feed).
    pub fn with_features(mut self, features: Arc<Features>) -> Self {
        self.features = Some(features);
        self
    }

    /// Scores with the strategy's learned ranker when it names one that is loaded (and
    /// its features can be read); otherwise with the fixed blend. The second value is what
    /// `explain` says about it.
    async fn score(
        &self,
        req: &Request,
        candidates: Vec<Candidate>,
        ranking: &RankParams,
        fusion: bool,
        now_ms: i64,
    ) -> (Vec<Scored>, Value) {
        let Some(name) = &ranking.ranker else {
            return (
                score_all(candidates, ranking, fusion),
                json!({"scorer": "blend"}),
            );
        };
        let found = self
            .features
            .as_ref()
            .and_then(|f| f.ranker(name).map(|r| (f, r)));
        let Some((features, (seq, ranker))) = found else {
            ::metrics::counter!("recd_ranker_fallbacks_total", "reason" => "missing").increment(1);
            let why = if self.features.is_none() {
                "features are off ([features] enabled = false)"
            } else {
                "no such ranker is loaded (recd train-ranker makes one)"
            };
            return (
                score_all(candidates, ranking, fusion),
                json!({"scorer": "blend", "ranker": name, "fallback": why}),
            );
        };
        let items: Vec<&Arc<recd_core::Item>> = candidates.iter().map(|c| &c.item).collect();
        let values = match features
            .store()
            .values(features.set(), &req.user_id, &items, now_ms)
            .await
        {
            Ok(v) => v,
            Err(e) => {
                ::metrics::counter!("recd_ranker_fallbacks_total", "reason" => "features")
                    .increment(1);
                tracing::warn!(cause = %e, "features unreadable; scoring with the blend");
                return (
                    score_all(candidates, ranking, fusion),
                    json!({"scorer": "blend", "ranker": name, "fallback": "features unreadable"}),
                );
            }
        };
        let version = crate::engine::models::version_name(seq);
        let explained = if req.explain {
            // Each candidate's contributions, kept by id for the items the list returns.
            let d = features.set().len();
            let floor = recd_core::pipeline::score::similarity_floor(&candidates);
            let by_id: std::collections::HashMap<String, Value> = candidates
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let sig = recd_core::pipeline::score::signals(c, floor);
                    let row = values.get(i * d..(i + 1) * d).unwrap_or(&[]);
                    // The position is the same constant for every candidate: not a reason.
                    let top: Vec<_> = ranker
                        .contributions(row, &sig)
                        .into_iter()
                        .filter(|c| c.feature != "position")
                        .take(TOP_CONTRIBUTIONS)
                        .collect();
                    (c.item.id.clone(), json!(top))
                })
                .collect();
            json!({"scorer": "learned", "ranker": version, "contributions": by_id})
        } else {
            json!({"scorer": "learned", "ranker": version})
        };
        (score_learned(candidates, &values, &ranker), explained)
    }

    /// The same recommender, telling `watch` about each query.
    pub fn with_watch(mut self, watch: Arc<dyn QueryWatch>) -> Self {
        self.watch = Some(watch);
        self
    }

    /// The same recommender, taking popular candidates from `popular`.
    pub fn with_popular(mut self, popular: Arc<dyn PopularSource>) -> Self {
        self.popular = popular;
        self
    }

    /// The ranking settings.
    pub fn ranking(&self) -> &RankParams {
        &self.ranking
    }

    /// Fills the popular candidates a cold user's default request asks for (cache warming);
    /// returns their ids, most popular first.
    pub async fn warm_popular(&self) -> Result<Vec<String>, StoreError> {
        let k = self.ranking.popular_candidates.max(10);
        let hits = self.popular(k, &Filter::all(), true).await?;
        Ok(hits.into_iter().map(|(item, _)| item.id.clone()).collect())
    }

    /// The popular candidates as (item, log score) pairs.
    async fn popular(
        &self,
        k: usize,
        filter: &Filter,
        use_cache: bool,
    ) -> Result<Vec<(Arc<recd_core::Item>, f64)>, StoreError> {
        let hits = self.popular.popular(k, filter, use_cache).await?;
        Ok(hits.into_iter().map(|h| (h.item, h.log_score)).collect())
    }

    /// The store it reads.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Recommends for `req.user_id` as of `now_ms` with the configured ranking.
    pub async fn recommend(&self, req: &Request, now_ms: i64) -> Result<Answer, StoreError> {
        self.recommend_with(req, now_ms, &self.ranking).await
    }

    /// Recommends for `req.user_id` as of `now_ms` with `ranking` (a strategy's settings).
    pub async fn recommend_with(
        &self,
        req: &Request,
        now_ms: i64,
        ranking: &RankParams,
    ) -> Result<Answer, StoreError> {
        let mut watch = Stopwatch::new();
        let user = self.store.get_user(&req.user_id).await?;
        watch.lap("user");

        let query = user
            .as_ref()
            .and_then(|u| query_vector(u, now_ms, &self.session, ranking));
        if let (Some(watch), Some(u), Some(_)) = (&self.watch, &user, &query) {
            let norm = match &u.long_term {
                Some(v) => recd_core::vector::norm_squared_f64(v).sqrt(),
                None => u.session_vector_norm(),
            };
            watch.query_norm(norm);
        }
        let excluded = exclusions(user.as_ref(), &req.exclude, ranking);
        let terms = req
            .query
            .as_deref()
            .map(distinct_terms)
            .filter(|t| !t.is_empty());
        // Ask for enough that the diversity cap (and, but for the KNN, which leaves the
        // excluded items out itself, exclusions) still leaves `count` items.
        let diversity_slack = req.diversity.as_ref().map_or(0, |_| req.count * 2);
        let slack = excluded.len() + diversity_slack;
        let knn_k = (ranking.candidates.max(req.count) + diversity_slack).min(MAX_CANDIDATES);
        let text_k = (ranking.candidates.max(req.count) + slack).min(MAX_CANDIDATES);
        let popular_k = match query {
            Some(_) => ranking.popular_candidates,
            None => ranking.popular_candidates.max(req.count) + slack,
        }
        .min(MAX_CANDIDATES);

        let knn = async {
            match &query {
                // Only `explain` asks how the index searched (it costs an allocation or two).
                Some(q) => {
                    self.store
                        .knn_excluding(&q.vector, knn_k, &req.filter, &excluded, req.explain)
                        .await
                }
                None => Ok((Vec::new(), None)),
            }
        };
        let popular = self.popular(popular_k, &req.filter, req.use_cache);
        let text = async {
            match &terms {
                Some(t) => self.store.text_search(t, text_k, &req.filter).await,
                None => Ok(Vec::new()),
            }
        };
        let recent = match (&user, ranking.transitions_candidates) {
            (Some(u), k) if k > 0 => transitions::recent_items(&u.recent),
            _ => Vec::new(),
        };
        let next = self.next_candidates(
            &recent,
            ranking.transitions_candidates.min(MAX_CANDIDATES),
            &excluded,
            &req.filter,
        );
        let ((knn, knn_plan), popular, text, next) = tokio::try_join!(knn, popular, text, next)?;
        watch.lap("retrieve");

        let counts = (knn.len(), popular.len(), text.len(), next.len());
        let candidates = merge_with_next(
            knn.into_iter().map(|h| (h.item, h.score)).collect(),
            popular,
            text,
            next,
        );
        let merged = candidates.len();
        let (scored, mut scorer) = self
            .score(req, candidates, ranking, terms.is_some(), now_ms)
            .await;
        watch.lap("score");

        let session_share = query.as_ref().map_or(0.0, |q| q.session_share);
        let out = rerank(
            scored,
            req.count,
            &excluded,
            req.diversity.as_ref(),
            session_share,
        );
        watch.lap("rerank");

        // A user with no vector yet whose recent items have usual successors still gets a
        // list built from what they did, not the cold-start one.
        let source = if query.is_some() || counts.3 > 0 {
            Source::Personalized
        } else {
            Source::Popular
        };
        // Contributions of the returned items only.
        if let Some(Value::Object(all)) = scorer.get_mut("contributions") {
            let kept: serde_json::Map<String, Value> = out
                .items
                .iter()
                .filter_map(|r| all.get(&r.item.id).map(|c| (r.item.id.clone(), c.clone())))
                .collect();
            *all = kept;
        }
        let stages = req.explain.then(|| {
            json!({
                "score": scorer,
                "query": {
                    "has_long_term": user.as_ref().is_some_and(|u| u.long_term.is_some()),
                    "has_session": user.as_ref().is_some_and(|u| u.session.is_some()),
                    "update": self.session.update.as_str(),
                    "has_fold_in": user.as_ref().is_some_and(|u| u.fold.vector.is_some()),
                    "session_share": session_share,
                    "text_terms": terms,
                },
                "retrieve": {"knn": counts.0, "knn_k": knn_k, "knn_plan": knn_plan, "popular": counts.1, "text": counts.2, "transitions": counts.3, "transitions_after": recent, "merged": merged},
                "rerank": {"excluded": out.excluded, "diversity_capped": out.diversity_capped, "returned": out.items.len()},
                "timings_ms": watch.to_json(),
            })
        });
        Ok(Answer {
            items: out.items,
            source,
            stages,
        })
    }

    /// Up to `k` items that often come next after `recent` (most recent first), best
    /// first, with their transitions score and the recent item they follow most: none
    /// excluded, each passing `filter`, none deleted.
    async fn next_candidates(
        &self,
        recent: &[String],
        k: usize,
        excluded: &recd_core::pipeline::rerank::Exclusions<'_>,
        filter: &Filter,
    ) -> Result<Vec<(Arc<recd_core::Item>, f32, String)>, StoreError> {
        if recent.is_empty() || k == 0 {
            return Ok(Vec::new());
        }
        let lists = self.store.transitions(recent).await?;
        let pairs: Vec<(&str, &[(String, f32)])> = recent
            .iter()
            .map(String::as_str)
            .zip(lists.iter().map(Vec::as_slice))
            .collect();
        // Every proposal, so that exclusions (the recent items themselves, purchases...)
        // do not eat into the `k`; then the first `k` allowed ones are fetched.
        let mut next = transitions::next_items(&pairs, usize::MAX);
        next.retain(|n| !excluded.contains(&n.item));
        next.truncate(k);
        if next.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = next.iter().map(|n| n.item.clone()).collect();
        let items = self.store.get_items(&ids).await?;
        Ok(next
            .into_iter()
            .zip(items)
            .filter_map(|(n, item)| {
                let item = item.filter(|i| filter.is_all() || filter.matches(i))?;
                Some((Arc::new(item), n.score, n.after))
            })
            .collect())
    }

    /// Items similar to `item_id` (its own vector as the query), passing `filter`.
    /// `Ok(None)` when the item does not exist.
    pub async fn similar(
        &self,
        item_id: &str,
        count: usize,
        filter: &Filter,
    ) -> Result<Option<Answer>, StoreError> {
        let Some(item) = self
            .store
            .get_items(&[item_id.to_string()])
            .await?
            .pop()
            .flatten()
        else {
            return Ok(None);
        };
        let excluded = recd_core::pipeline::rerank::Exclusions::ids([item_id]);
        let (hits, source) = match &item.vector {
            Some(v) => {
                let (hits, _) = self
                    .store
                    .knn_excluding(v, count, filter, &excluded, false)
                    .await?;
                (
                    merge(
                        hits.into_iter().map(|h| (h.item, h.score)).collect(),
                        vec![],
                        vec![],
                    ),
                    Source::Personalized,
                )
            }
            None => {
                let hits = self.store.popular(count + 1, filter).await?;
                (
                    merge(
                        vec![],
                        hits.into_iter().map(|h| (h.item, h.log_score)).collect(),
                        vec![],
                    ),
                    Source::Popular,
                )
            }
        };
        let scored = score_all(hits, &self.ranking, false);
        let mut out = rerank(scored, count, &excluded, None, 0.0);
        if source == Source::Personalized {
            for r in &mut out.items {
                r.reasons = vec![format!("similar to {item_id}")];
            }
        }
        Ok(Some(Answer {
            items: out.items,
            source,
            stages: None,
        }))
    }
}
