//! `recd eval --ranker`: the serving pipeline scored by a learned ranker, against the same
//! pipeline with the fixed blend (`pipeline`), on the same split.
//!
//! Rating data has no impressions, so the ranker's training log is made by replaying the
//! train half, never the test half:
//! 1. the train half is cut by time; ALS is trained on its earlier part only, and a
//!    pipeline (store, online features) is loaded with that part, so the retrieval signals
//!    of the replayed lists are out-of-sample as they are for the test users (ALS trained
//!    on the whole train half would already "know" the interactions used as labels);
//! 2. the later part is replayed in time order: at a user's event, unless they were shown
//!    a list within [`SESSION_GAP_MS`], every candidate the pipeline retrieves for them then
//!    is an impression (the features read online at that moment, the position set to 0:
//!    nothing was displayed, so there is no position bias to learn); an item of it is a
//!    click if the user interacts with it later in the train half. Then the event is
//!    applied to the store and the features. Every candidate, not the blend's top few: the
//!    ranker orders all of them when it serves, so it must learn from all of them (trained
//!    on the blend's top 50 only, it never saw the candidates the blend ranks low, and
//!    ordered them by extrapolation). The list asks for `candidates + popular_candidates`
//!    items, so the KNN source retrieves up to that many (more than at serving, where the
//!    count is 10): the extra ones are less similar than any served candidate;
//! 3. the ranker is fit on those rows (`recd_train::ctr::fit`; pooled over lists or
//!    within each list, whichever ranks the replay's latest lists better when fit on the
//!    earlier ones: a validation inside the train half), then serves as the
//!    scoring stage of a pipeline loaded with the whole train half (the features as they
//!    stand at its end) and is evaluated like `pipeline`: `pipeline_learned`; unless
//!    `--no-replay`, the test events are then replayed through it as through `realtime`
//!    (each applied to the store and the features after asking): `realtime_learned`.
//!
//! The features come from the config's `[features.define]`, else [`rating_features`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use recd_core::features::{FeatureSet, FeatureSpec, RankerInputs};
use recd_server::features::Features;
use recd_store::features::MemoryFeatures;
use recd_train::ctr::export::Row;
use recd_train::ctr::fit::{FitParams, fit};
use recd_train::eval::{EvalReport, Evaluation};
use recd_train::movielens::Loaded;
use recd_train::split::{self, SplitMethod};
use tokio::runtime::Handle;

use crate::eval::{EventKinds, Live, Pipeline, Scoring, build_pipeline, without_transitions};
use crate::progress::Progress;
use crate::train::train_error;

/// The share of the train half (its latest events) replayed for impressions.
pub(crate) const REPLAY_FRACTION: f64 = 0.25;
/// A user shown a list is not shown another one within this span (a rating session of
/// MovieLens is dozens of events in minutes; one list per session).
pub(crate) const SESSION_GAP_MS: i64 = 6 * 3_600_000;

/// The default features for rating data: the user's ratings, and their ratings per genre
/// (30 days, 1 year); the item's ratings (7 days, 30 days, 1 year), its stars in a year,
/// hours since its last rating, and its year.
pub(crate) fn rating_features(tag: &str) -> Result<BTreeMap<String, FeatureSpec>> {
    let json = format!(
        r#"{{"user_ratings_30d":{{"kind":"count","entity":"user","event":"rating","window":"30d"}},
            "user_tag_ratings_30d":{{"kind":"count","entity":"user_tag","field":"{tag}","event":"rating","window":"30d"}},
            "user_tag_ratings_365d":{{"kind":"count","entity":"user_tag","field":"{tag}","event":"rating","window":"365d"}},
            "item_ratings_7d":{{"kind":"count","entity":"item","event":"rating","window":"7d"}},
            "item_ratings_30d":{{"kind":"count","entity":"item","event":"rating","window":"30d"}},
            "item_ratings_365d":{{"kind":"count","entity":"item","event":"rating","window":"365d"}},
            "item_stars_365d":{{"kind":"sum","entity":"item","event":"rating","window":"365d"}},
            "item_last_rating_hours":{{"kind":"recency","entity":"item","event":"rating"}},
            "year":{{"kind":"field","field":"year"}}}}"#
    );
    serde_json::from_str(&json).context("the rating features")
}

/// Trains the ranker from the train half and adds `pipeline_learned` to `report`.
pub(crate) fn add_learned(
    handle: &Handle,
    ev: &Evaluation,
    loaded: &Loaded,
    kinds: &EventKinds,
    config: &recd_server::Config,
    replay: bool,
    report: &mut EvalReport,
) -> Result<()> {
    let t = Instant::now();
    let schema = crate::movielens::schema(ev.als.factors);
    let set = if config.features.define.is_empty() {
        FeatureSet::from_specs(&rating_features("genres")?, &schema)
    } else {
        config.features.feature_set(&schema)
    }
    .map_err(|e| anyhow::anyhow!("the ranker's features: {e}"))?;
    let features = || -> Result<Arc<Features>> {
        Ok(Arc::new(
            Features::new(set.clone(), Arc::new(MemoryFeatures::new()), None)
                .context("features")?,
        ))
    };

    // 1. the earlier part of the train half: ALS and a pipeline of its own
    let train = &ev.split.train;
    let method = SplitMethod::Time {
        test_fraction: REPLAY_FRACTION,
    };
    let mask = split::split_mask(train, method, ev.config.seed).map_err(train_error)?;
    let inner = split::from_mask(train, &mask, method).map_err(train_error)?;
    let mut params = ev.config.als.clone();
    if let Some(stop) = &ev.early_stopping {
        params.iterations = stop.iterations;
    }
    let als = recd_train::als::train(&inner.train, &params).map_err(train_error)?;
    let earlier = build_pipeline(
        handle,
        &inner.train,
        &als,
        loaded,
        kinds,
        config,
        Scoring {
            ranking: without_transitions(config),
            features: Some(features()?),
        },
    )?;
    eprintln!(
        "recd eval: ranker: ALS on the first {} train events; replaying the last {}",
        inner.train.len(),
        inner.test.len()
    );

    // 2. the later part, replayed
    let (rows, lists) = replay_rows(&earlier, &set, &inner.train, &inner.test, kinds)?;
    earlier.check()?;
    drop(earlier);
    let clicks = rows.iter().filter(|r| r.label).count();
    eprintln!(
        "recd eval: ranker: {lists} replayed lists, {} impressions, {clicks} clicks",
        rows.len()
    );

    // 3. the fit (pooled or within lists, whichever ranks the replay's latest lists
    //    better when fit on the earlier ones), then the pipeline of the whole train half
    //    scored by it
    let mut params = FitParams::default();
    let mut best = None;
    for within_list in [false, true] {
        let p = FitParams {
            within_list,
            ..FitParams::default()
        };
        if let Some((learned, blend)) = crate::ranker_report::validate(&set, &rows, &p) {
            eprintln!(
                "recd eval: ranker: validation (the replay's latest lists, fit on the earlier; \
                 NDCG@10 of the clicks within a list): within lists {within_list}: \
                 learned {learned:.4}, blend {blend:.4}"
            );
            if best.is_none_or(|b| learned > b) {
                best = Some(learned);
                params = p;
            }
        }
    }
    eprintln!(
        "recd eval: ranker: fit within lists: {} (chosen on validation)",
        params.within_list
    );
    let ranker = fit(&set, &rows, &params).map_err(train_error)?;
    crate::ranker_report::print_weights(&ranker);
    let served = features()?;
    served.insert_ranker(1, ranker, true);
    let mut pipeline = build_pipeline(
        handle,
        train,
        &ev.als,
        loaded,
        kinds,
        config,
        Scoring {
            ranking: without_transitions(config),
            features: Some(served),
        },
    )?;
    pipeline.ranking.ranker = Some("latest".into());
    crate::ranker_report::print_tops(&mut pipeline, &set, ev);
    let users = Progress::new("pipeline_learned users", None);
    ev.add_model(
        report,
        "pipeline_learned",
        &Counted(&pipeline, users.clone()),
        ev.als.train_seconds + t.elapsed().as_secs_f64(),
    );
    users.finish();
    pipeline.check()?;
    eprintln!(
        "recd eval: pipeline_learned done in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    if replay {
        // The test events through the learned pipeline as through `realtime`'s: each
        // applied (store and features) after asking.
        let t = Instant::now();
        let progress = Progress::new("replayed events", Some(ev.split.test.len() as u64));
        let mut live = Live {
            pipeline: &pipeline,
            kinds,
            progress: progress.clone(),
        };
        ev.add_replay(report, "realtime_learned", &mut live);
        progress.finish();
        pipeline.check()?;
        eprintln!(
            "recd eval: realtime_learned replay done in {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// The pipeline as an offline model, counting the users it answers.
struct Counted<'a>(&'a Pipeline, Progress);

impl recd_train::recommender::Recommender for Counted<'_> {
    fn recommend(&self, user: u32, k: usize, exclude: &[u32]) -> Vec<u32> {
        self.1.add(1);
        recd_train::recommender::Recommender::recommend(self.0, user, k, exclude)
    }
}

/// Replays `later` (in time order) through `p`, loaded with `earlier`: the impressions
/// and their labels (see the module doc), and how many lists were served.
fn replay_rows(
    p: &Pipeline,
    set: &FeatureSet,
    earlier: &recd_train::Interactions,
    later: &recd_train::Interactions,
    kinds: &EventKinds,
) -> Result<(Vec<Row>, usize)> {
    let features = p
        .features
        .as_ref()
        .context("the replay pipeline has no features")?;
    // What each user has interacted with so far (never listed), and their later items
    // with the time of the last interaction (the labels).
    let mut seen: HashMap<u32, HashSet<u32>> = HashMap::new();
    for (&u, &i) in earlier.users.iter().zip(&earlier.items) {
        seen.entry(u).or_default().insert(i);
    }
    let mut last_at: HashMap<(u32, u32), i64> = HashMap::new();
    for e in 0..later.len() {
        let at = last_at.entry((later.users[e], later.items[e])).or_default();
        *at = (*at).max(later.timestamps[e]);
    }
    let mut order: Vec<usize> = (0..later.len()).collect();
    order.sort_by_key(|&e| (later.timestamps[e], e));
    let mut shown: HashMap<u32, i64> = HashMap::new();
    let mut rows = Vec::new();
    let mut lists = 0;
    let progress = Progress::new("ranker replay events", Some(order.len() as u64));
    for e in order {
        progress.add(1);
        let (u, i, t) = (later.users[e], later.items[e], later.timestamps[e]);
        let due = shown.get(&u).is_none_or(|&s| t - s >= SESSION_GAP_MS);
        if due {
            shown.insert(u, t);
            let exclude: Vec<u32> = seen
                .get(&u)
                .map(|s| s.iter().copied().collect())
                .unwrap_or_default();
            let every = p.ranking.candidates + p.ranking.popular_candidates;
            if let Some(answer) = p.answer(u, every, &exclude, t)
                && !answer.items.is_empty()
            {
                lists += 1;
                let user_id = p.users.id(u).unwrap_or_default().to_string();
                let items: Vec<&Arc<recd_core::Item>> =
                    answer.items.iter().map(|r| &r.item).collect();
                let values = p
                    .handle
                    .block_on(features.store().values(set, &user_id, &items, t))
                    .context("reading the replay's features")?;
                let d = set.len().max(1);
                for (position, (r, row)) in answer.items.iter().zip(values.chunks(d)).enumerate() {
                    let label = p
                        .items
                        .get(&r.item.id)
                        .and_then(|j| last_at.get(&(u, j)))
                        .is_some_and(|&at| at >= t);
                    rows.push(Row {
                        at_ms: t,
                        recommendation_id: format!("replay-{lists}"),
                        user_id: user_id.clone(),
                        item_id: r.item.id.clone(),
                        position,
                        label,
                        served_score: r.score,
                        features: row.to_vec(),
                        signals: RankerInputs {
                            position: 0.0,
                            ..r.signals
                        },
                    });
                }
            }
        }
        seen.entry(u).or_default().insert(i);
        if let Some(event) = kinds.event(u, i, t, later.weights[e], p) {
            p.apply(&[event]);
        }
    }
    progress.finish();
    Ok((rows, lists))
}
