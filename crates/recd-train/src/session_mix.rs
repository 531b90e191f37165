//! Choosing `[model.session.fold_in] session_mix` on held-out data: how much of the
//! decayed-average session vector the real-time query mixes into the fold-in.
//!
//! Which real-time signal predicts the next event depends on the data: on ratings the
//! fold-in (the user's least-squares taste over their recent items) is ahead and a session
//! vector on top hurts, on shop sessions the next purchase follows the last few views,
//! which the session vector points at (BENCHMARKS.md, "Fold-in"). So the mix is chosen
//! per data set: the train half is split again by the same method (a validation split: the
//! test half is never an input here), ALS is trained on the inner train part, and the
//! validation events are replayed through [`FoldInAls`] with the session mixed in at each
//! value of a small grid — the query formula of `recd-core`'s `pipeline::query_vector`.
//! The best hit rate wins (then NDCG); a tie goes to the smaller mix (the fold-in alone
//! is the default).

use rayon::prelude::*;
use recd_core::user::SessionParams;
use serde::{Deserialize, Serialize};

use crate::als::{self, AlsParams};
use crate::baselines::Popularity;
use crate::dataset::Interactions;
use crate::error::Result;
use crate::replay::{self, FoldInAls};
use crate::split::{self, SplitMethod};

/// The mixes tried by default: none up to the decayed-average rule's own maximum
/// (`[ranking] session_share_max`, 0.8).
pub const DEFAULT_GRID: [f64; 5] = [0.0, 0.2, 0.4, 0.6, 0.8];

/// How to choose.
#[derive(Debug, Clone, PartialEq)]
pub struct MixSearch {
    /// The mixes to try (each in [0, 1]).
    pub grid: Vec<f64>,
    /// Split of the train half into inner train and validation (`Given` falls back to
    /// a random split of 20 % per user).
    pub method: SplitMethod,
    /// Seed of that split.
    pub seed: u64,
    /// List length of the replay.
    pub k: usize,
    /// Recent items per user (`recent_capacity`).
    pub capacity: usize,
    /// Share of the fold-in against the long-term vector (`fold_in.share`).
    pub share: f64,
    /// The session's half-life and weights (`[model.session]`).
    pub session: SessionParams,
    /// `[ranking] session_saturation`.
    pub saturation: f64,
}

/// One tried mix.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MixTrial {
    /// The mix.
    pub mix: f64,
    /// Validation replay hit rate @k.
    pub hit_rate: f64,
    /// Validation replay NDCG @k.
    pub ndcg: f64,
}

/// What [`choose_session_mix`] chose, and why (`recd eval --json`'s `session_mix`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MixChoice {
    /// The chosen mix.
    pub chosen: f64,
    /// The validation split's method.
    pub split: String,
    /// Validation events scored by the replay.
    pub validation_events: usize,
    /// Every tried mix, in grid order.
    pub trials: Vec<MixTrial>,
}

/// Chooses the session mix on a validation split of `train` (a train half: the test half
/// is not an argument), with ALS `params` trained on its inner train part.
pub fn choose_session_mix(
    train: &Interactions,
    params: &AlsParams,
    search: &MixSearch,
) -> Result<MixChoice> {
    let method = match search.method {
        SplitMethod::Given => SplitMethod::Random { test_fraction: 0.2 },
        m => m,
    };
    let validation = split::split(train, method, search.seed)?;
    let model = als::train(&validation.train, params)?;
    let popularity = Popularity::fit(&validation.train);
    let trials: Vec<MixTrial> = search
        .grid
        .par_iter()
        .map(|&mix| {
            let mut arm = FoldInAls::new(
                &model,
                &validation.train,
                popularity.clone(),
                search.capacity,
                search.share,
            )
            .with_solver_of(&search.session.fold_in)
            .with_session_mix(mix, search.session.clone(), search.saturation);
            let m = replay::replay(&validation, &mut arm, search.k);
            MixTrial {
                mix,
                hit_rate: m.hit_rate,
                ndcg: m.ndcg,
            }
        })
        .collect();
    let validation_events = replay::replay_events(&validation.test).len();
    // Best hit rate (the replay target's figure), then NDCG (a small validation split
    // can tie on hits); among equals the smallest mix.
    let mut best: Option<MixTrial> = None;
    for t in &trials {
        let better = match best {
            None => true,
            Some(b) => {
                (t.hit_rate, t.ndcg) > (b.hit_rate, b.ndcg)
                    || ((t.hit_rate, t.ndcg) == (b.hit_rate, b.ndcg) && t.mix < b.mix)
            }
        };
        if better {
            best = Some(*t);
        }
    }
    Ok(MixChoice {
        chosen: best.map_or(0.0, |b| b.mix),
        split: method.name().to_owned(),
        validation_events,
        trials,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Users whose next item is the one after their last (a "session" walk along the
    /// catalog), on top of a taste for one block of items: the session vector knows where
    /// the walk is, the fold-in only the block.
    fn walks() -> Interactions {
        let mut ev = Vec::new();
        let (users, items) = (60u32, 40u32);
        for u in 0..users {
            let start = (u * 7) % items;
            for step in 0..14u32 {
                let item = (start + step) % items;
                // one step a minute: all of a walk is one session
                ev.push((u, item, 1.0f32, i64::from(u * 10_000 + step) * 60_000));
            }
        }
        Interactions::from_indices(users as usize, items as usize, &ev)
    }

    fn search() -> MixSearch {
        MixSearch {
            grid: vec![0.0, 0.8],
            method: SplitMethod::Time { test_fraction: 0.3 },
            seed: 1,
            k: 5,
            capacity: 200,
            share: 1.0,
            session: SessionParams::default(),
            saturation: 1.0,
        }
    }

    #[test]
    fn it_reports_every_trial_and_picks_the_best_on_validation() {
        let data = walks();
        let params = AlsParams {
            factors: 8,
            iterations: 5,
            regularization: 0.1,
            threads: 1,
            ..Default::default()
        };
        let choice = choose_session_mix(&data, &params, &search()).unwrap();
        assert_eq!(choice.trials.len(), 2);
        assert!(choice.validation_events > 0);
        let chosen = choice
            .trials
            .iter()
            .find(|t| t.mix == choice.chosen)
            .unwrap();
        assert!(
            choice
                .trials
                .iter()
                .all(|t| (t.hit_rate, t.ndcg) <= (chosen.hit_rate, chosen.ndcg)),
            "{choice:?}"
        );
        // the same data, the same choice (seeded)
        assert_eq!(
            choose_session_mix(&data, &params, &search()).unwrap(),
            choice
        );
    }
}
