//! The quality gate of `recd train`: a newly trained model goes live only if, on the most
//! recent events held out of its training, it ranks about as well as the model serving now.
//!
//! The protocol:
//! 1. [`crate::split::SplitMethod::LeaveLastOut`]: each user's last item (for users with at
//!    least two) is held out; the candidate is trained on the rest. The version that goes
//!    live *is* that model, so the live model never saw its own hold-out either: when the
//!    next training holds out the same events (users with no new events), the comparison
//!    is fair, and a user's new last event is unseen by both.
//! 2. Each model ([`Factors`]: user and item vectors by the split's indices, the live one
//!    mapped from its stored ids) ranks every item it has a vector for by dot product for
//!    each held-out user, without the user's training items; a user the model has no
//!    vector for gets the popular list, as the server serves them. HR@k and NDCG@k
//!    ([`HoldoutScore`]) are macro averages over at most `max_users` users.
//! 3. [`decide`]: the candidate passes when its vectors are sane ([`Sanity`]: no NaN or
//!    infinite component anywhere, no all-zero vector for a user or item it trained on)
//!    and its NDCG@k is at least the live model's × (1 − margin). With no model live (the
//!    first training, or vectors that came with the items), sane vectors suffice: the
//!    candidate is compared with popularity and the figures are recorded, but a first
//!    model is not refused for ranking below it (the last item of each user is a hard
//!    test, and on a catalog whose users' last events stray from their taste popularity
//!    wins it while the model still serves better lists); the refusal that matters, of a
//!    worse replacement for a working model, needs a live model to compare with.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::als::AlsModel;
use crate::baselines::Popularity;
use crate::dataset::{IdMap, Interactions};
use crate::metrics::{hit_at_k, ndcg_at_k};
use crate::rank::top_k_iter;
use crate::split::Split;

/// A model's vectors by the split's user and item indices.
#[derive(Debug, Clone)]
pub struct Factors {
    dim: usize,
    users: Vec<Option<Vec<f32>>>,
    items: Vec<Option<Vec<f32>>>,
}

impl Factors {
    /// The vectors of `model` (trained on `train`, so it shares its id maps) for the users
    /// and items it trained on; rows it has no training data for stay without one.
    pub fn from_model(model: &AlsModel, train: &Interactions) -> Self {
        let trained_items = train.item_user_counts();
        let trained_users: Vec<bool> = train
            .items_by_user()
            .iter()
            .map(|v| !v.is_empty())
            .collect();
        let users = (0..model.n_users())
            .map(|u| {
                trained_users
                    .get(u)
                    .copied()
                    .unwrap_or(false)
                    .then(|| model.user_vector(u as u32).map(<[f32]>::to_vec))
                    .flatten()
            })
            .collect();
        let items = (0..model.n_items())
            .map(|i| {
                (trained_items.get(i).copied().unwrap_or(0) > 0)
                    .then(|| model.item_vector(i as u32).map(<[f32]>::to_vec))
                    .flatten()
            })
            .collect();
        Self {
            dim: model.factors,
            users,
            items,
        }
    }

    /// Vectors given by external id (the live model as stored), placed at the indices of
    /// `user_ids` / `item_ids`; ids the maps do not have, and vectors of another length
    /// than `dim`, are left out.
    pub fn from_ids<'a>(
        dim: usize,
        user_ids: &IdMap,
        item_ids: &IdMap,
        users: impl IntoIterator<Item = (&'a str, &'a [f32])>,
        items: impl IntoIterator<Item = (&'a str, &'a [f32])>,
    ) -> Self {
        let place = |ids: &IdMap, rows: &mut dyn Iterator<Item = (&'a str, &'a [f32])>| {
            let mut out = vec![None; ids.len()];
            for (id, v) in rows {
                if let Some(i) = ids.get(id)
                    && v.len() == dim
                {
                    out[i as usize] = Some(v.to_vec());
                }
            }
            out
        };
        Self {
            dim,
            users: place(user_ids, &mut users.into_iter()),
            items: place(item_ids, &mut items.into_iter()),
        }
    }

    /// (id, vector) of every user with a vector, by `ids` (the maps it was built with).
    pub fn user_rows(&self, ids: &IdMap) -> Vec<(String, Vec<f32>)> {
        rows(&self.users, ids)
    }

    /// (id, vector) of every item with a vector, by `ids` (the maps it was built with).
    pub fn item_rows(&self, ids: &IdMap) -> Vec<(String, Vec<f32>)> {
        rows(&self.items, ids)
    }

    /// The vectors' dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The vector of user `u`, if the model has one.
    pub fn user(&self, u: u32) -> Option<&[f32]> {
        self.users.get(u as usize)?.as_deref()
    }

    /// The vector of item `i`, if the model has one.
    pub fn item(&self, i: u32) -> Option<&[f32]> {
        self.items.get(i as usize)?.as_deref()
    }

    /// The users and items it has a vector for.
    pub fn counts(&self) -> (usize, usize) {
        (
            self.users.iter().filter(|v| v.is_some()).count(),
            self.items.iter().filter(|v| v.is_some()).count(),
        )
    }

    /// Whether every vector is usable (see [`Sanity`]).
    pub fn sanity(&self) -> Sanity {
        let mut s = Sanity::default();
        for v in self.users.iter().chain(&self.items).flatten() {
            s.vectors += 1;
            if v.iter().any(|x| !x.is_finite()) {
                s.non_finite += 1;
            } else if v.iter().all(|x| *x == 0.0) {
                s.zero += 1;
            }
        }
        s
    }

    /// The `k` best items for user vector `q`, without `exclude` (sorted).
    fn top(&self, q: &[f32], k: usize, exclude: &[u32]) -> Vec<u32> {
        let dim = self.dim;
        let scored = self.items.iter().enumerate().filter_map(|(i, v)| {
            let v = v.as_deref()?;
            let s: f32 = q.iter().zip(v).take(dim).map(|(a, b)| a * b).sum();
            Some((i as u32, s))
        });
        top_k_iter(scored, k, exclude)
            .into_iter()
            .map(|(i, _)| i)
            .collect()
    }
}

fn rows(vectors: &[Option<Vec<f32>>], ids: &IdMap) -> Vec<(String, Vec<f32>)> {
    vectors
        .iter()
        .enumerate()
        .filter_map(|(i, v)| Some((ids.id(i as u32)?.to_string(), v.clone()?)))
        .collect()
}

/// How many of a model's vectors are unusable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sanity {
    /// Vectors checked.
    pub vectors: usize,
    /// Vectors with a NaN or infinite component.
    pub non_finite: usize,
    /// All-zero vectors (of users and items the model trained on).
    pub zero: usize,
}

impl Sanity {
    /// No bad vector, and at least one vector.
    pub fn ok(&self) -> bool {
        self.vectors > 0 && self.non_finite == 0 && self.zero == 0
    }
}

/// A model's ranking quality on the held-out events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct HoldoutScore {
    /// Share of users with a held-out item in their top k.
    pub hit_rate: f64,
    /// NDCG@k (binary gains), averaged over users.
    pub ndcg: f64,
    /// Users evaluated.
    pub users: usize,
}

/// The users evaluated: those with held-out items, the first `max_users` by index.
fn evaluated(split: &Split, max_users: usize) -> (Vec<Vec<u32>>, Vec<Vec<u32>>, Vec<u32>) {
    let train = split.train.items_by_user();
    let test = split.test.items_by_user();
    let users: Vec<u32> = (0..test.len() as u32)
        .filter(|&u| !test[u as usize].is_empty())
        .take(max_users.max(1))
        .collect();
    (train, test, users)
}

/// Scores `model` on `split.test` at `k` (see the module doc).
pub fn score(split: &Split, model: &Factors, k: usize, max_users: usize) -> HoldoutScore {
    let popular = Popularity::fit(&split.train);
    let (train, test, users) = evaluated(split, max_users);
    let per_user: Vec<(f64, f64)> = users
        .par_iter()
        .map(|&u| {
            let seen = &train[u as usize];
            let recs = match model.user(u) {
                Some(q) => model.top(q, k, seen),
                None => popular.top(k, seen),
            };
            let rel = &test[u as usize];
            (hit_at_k(&recs, rel, k), ndcg_at_k(&recs, rel, k))
        })
        .collect();
    average(&per_user)
}

/// Scores popularity (distinct training users per item) on `split.test` at `k`.
pub fn score_popularity(split: &Split, k: usize, max_users: usize) -> HoldoutScore {
    let popular = Popularity::fit(&split.train);
    let (train, test, users) = evaluated(split, max_users);
    let per_user: Vec<(f64, f64)> = users
        .iter()
        .map(|&u| {
            let recs = popular.top(k, &train[u as usize]);
            let rel = &test[u as usize];
            (hit_at_k(&recs, rel, k), ndcg_at_k(&recs, rel, k))
        })
        .collect();
    average(&per_user)
}

fn average(per_user: &[(f64, f64)]) -> HoldoutScore {
    let n = per_user.len();
    if n == 0 {
        return HoldoutScore::default();
    }
    // `+ 0.0`: a sum of zeros starts at -0.0, which would print as "-0.0000"
    HoldoutScore {
        hit_rate: per_user.iter().map(|p| p.0).sum::<f64>() / n as f64 + 0.0,
        ndcg: per_user.iter().map(|p| p.1).sum::<f64>() / n as f64 + 0.0,
        users: n,
    }
}

/// What the candidate was compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Baseline {
    /// The live model.
    Live,
    /// Popularity (no model was live).
    Popularity,
}

/// The gate's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Whether the candidate may go live.
    pub passed: bool,
    /// Why, in one sentence.
    pub reason: String,
}

/// The gate's rule (module doc): sane vectors, and, against the live model, NDCG@k at
/// least `baseline.ndcg × (1 − margin)`. `margin` is relative (0.05: up to 5 % worse
/// passes). Against popularity (nothing live) sane vectors pass; the reason says how the
/// candidate compares.
pub fn decide(
    candidate: &HoldoutScore,
    sanity: &Sanity,
    baseline: &HoldoutScore,
    against: Baseline,
    margin: f64,
) -> Decision {
    let name = match against {
        Baseline::Live => "the live model",
        Baseline::Popularity => "popularity",
    };
    if sanity.vectors == 0 {
        return Decision {
            passed: false,
            reason: "the model has no vectors".into(),
        };
    }
    if sanity.non_finite > 0 || sanity.zero > 0 {
        return Decision {
            passed: false,
            reason: format!(
                "{} of its {} vectors are unusable ({} with NaN or infinite components, {} all zeros)",
                sanity.non_finite + sanity.zero,
                sanity.vectors,
                sanity.non_finite,
                sanity.zero
            ),
        };
    }
    if against == Baseline::Popularity {
        let (word, cmp) = if candidate.ndcg + 1e-12 >= baseline.ndcg {
            ("at least", "")
        } else {
            ("below", "; no model is live, so sane vectors suffice")
        };
        return Decision {
            passed: true,
            reason: format!(
                "no model is live; NDCG {:.4} on the held-out events is {word} popularity's {:.4}{cmp}",
                candidate.ndcg, baseline.ndcg
            ),
        };
    }
    let floor = baseline.ndcg * (1.0 - margin);
    // A relative margin around a zero baseline is zero: any candidate passes it.
    if candidate.ndcg + 1e-12 >= floor {
        Decision {
            passed: true,
            reason: format!(
                "NDCG {:.4} on the held-out events is at least {:.4} ({name}'s {:.4} less {:.0} %)",
                candidate.ndcg,
                floor,
                baseline.ndcg,
                margin * 100.0
            ),
        }
    } else {
        Decision {
            passed: false,
            reason: format!(
                "NDCG {:.4} on the held-out events is below {:.4} ({name}'s {:.4} less {:.0} %)",
                candidate.ndcg,
                floor,
                baseline.ndcg,
                margin * 100.0
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use recd_core::EventType;

    use super::*;
    use crate::dataset::{ConfidenceWeights, Interaction};
    use crate::split::{SplitMethod, split};

    fn score_of(ndcg: f64) -> HoldoutScore {
        HoldoutScore {
            hit_rate: ndcg,
            ndcg,
            users: 100,
        }
    }

    const SANE: Sanity = Sanity {
        vectors: 10,
        non_finite: 0,
        zero: 0,
    };

    #[test]
    fn a_candidate_within_the_margin_passes_and_one_below_it_fails() {
        let live = score_of(0.40);
        let d = |c: f64| decide(&score_of(c), &SANE, &live, Baseline::Live, 0.05).passed;
        assert!(d(0.50), "better");
        assert!(d(0.40), "equal");
        assert!(d(0.381), "4.75 % worse, within 5 %");
        assert!(!d(0.379), "5.25 % worse");
        assert!(!d(0.0), "useless");
        // margin 0: not worse at all
        assert!(!decide(&score_of(0.399), &SANE, &live, Baseline::Live, 0.0).passed);
        // the reason names the figures
        let r = decide(&score_of(0.1), &SANE, &live, Baseline::Live, 0.05);
        assert!(
            r.reason.contains("0.1000") && r.reason.contains("0.4000"),
            "{}",
            r.reason
        );
    }

    #[test]
    fn with_nothing_live_sane_vectors_pass_even_below_popularity() {
        let popular = score_of(0.40);
        let d = decide(&score_of(0.1), &SANE, &popular, Baseline::Popularity, 0.05);
        assert!(
            d.passed && d.reason.contains("below popularity"),
            "{}",
            d.reason
        );
        let bad = Sanity { zero: 1, ..SANE };
        assert!(!decide(&score_of(0.9), &bad, &popular, Baseline::Popularity, 0.05).passed);
    }

    #[test]
    fn unusable_vectors_fail_whatever_the_scores() {
        let live = score_of(0.1);
        for bad in [
            Sanity {
                non_finite: 1,
                ..SANE
            },
            Sanity { zero: 2, ..SANE },
            Sanity::default(),
        ] {
            let d = decide(&score_of(0.9), &bad, &live, Baseline::Live, 0.05);
            assert!(!d.passed, "{bad:?}");
        }
    }

    #[test]
    fn a_zero_baseline_is_passed_by_any_sane_model() {
        assert!(decide(&score_of(0.0), &SANE, &score_of(0.0), Baseline::Live, 0.05).passed);
    }

    /// Two groups of users, each liking its own half of the items: vectors that encode the
    /// groups hit every held-out item; vectors that swap them hit none.
    type Rows = Vec<(String, Vec<f32>)>;

    fn planted() -> (Split, Rows, Rows) {
        let mut raw = Vec::new();
        for u in 0..20u32 {
            let group = u % 2;
            for j in 0..6u32 {
                raw.push(Interaction {
                    user: format!("u{u}"),
                    item: format!("i{}", group * 10 + (u + j) % 10),
                    kind: EventType::Purchase,
                    value: None,
                    timestamp_ms: i64::from(u * 100 + j),
                });
            }
        }
        let (data, _) = Interactions::from_raw(raw, &ConfidenceWeights::default());
        let s = split(&data, SplitMethod::LeaveLastOut, 1).expect("split");
        let users = (0..20u32)
            .map(|u| {
                let v = if u % 2 == 0 {
                    vec![1.0, 0.0]
                } else {
                    vec![0.0, 1.0]
                };
                (format!("u{u}"), v)
            })
            .collect();
        let items = (0..20u32)
            .map(|i| {
                let v = if i < 10 {
                    vec![1.0, 0.0]
                } else {
                    vec![0.0, 1.0]
                };
                (format!("i{i}"), v)
            })
            .collect();
        (s, users, items)
    }

    fn factors(s: &Split, users: &[(String, Vec<f32>)], items: &[(String, Vec<f32>)]) -> Factors {
        Factors::from_ids(
            2,
            s.train.user_ids(),
            s.train.item_ids(),
            users.iter().map(|(id, v)| (id.as_str(), v.as_slice())),
            items.iter().map(|(id, v)| (id.as_str(), v.as_slice())),
        )
    }

    #[test]
    fn scores_tell_a_good_model_from_a_bad_one() {
        let (s, users, items) = planted();
        let good = score(&s, &factors(&s, &users, &items), 10, 1000);
        assert_eq!(good.users, 20);
        assert!((good.hit_rate - 1.0).abs() < 1e-9, "{good:?}");
        // swapped groups: every user's top 10 is the other group's items
        let swapped: Vec<(String, Vec<f32>)> = users
            .iter()
            .map(|(id, v)| (id.clone(), vec![v[1], v[0]]))
            .collect();
        let bad = score(&s, &factors(&s, &swapped, &items), 10, 1000);
        assert_eq!(bad.hit_rate, 0.0, "{bad:?}");
        let d = decide(&bad, &SANE, &good, Baseline::Live, 0.05);
        assert!(!d.passed, "{}", d.reason);
        // a model without user vectors serves popularity, as the server does
        let none = score(&s, &factors(&s, &[], &items), 10, 1000);
        assert_eq!(none, score_popularity(&s, 10, 1000));
        // the cap on users
        assert_eq!(score(&s, &factors(&s, &users, &items), 10, 5).users, 5);
    }

    #[test]
    fn sanity_counts_nan_and_zero_vectors() {
        let (s, users, mut items) = planted();
        assert!(factors(&s, &users, &items).sanity().ok());
        items[0].1 = vec![f32::NAN, 1.0];
        items[1].1 = vec![0.0, 0.0];
        let got = factors(&s, &users, &items).sanity();
        assert_eq!((got.non_finite, got.zero, got.vectors), (1, 1, 40));
        assert!(!got.ok());
    }
}
