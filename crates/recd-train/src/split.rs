//! Train/test splits, deterministic for a seed.
//!
//! - [`SplitMethod::Random`]: per user, a `test_fraction` of the user's distinct items
//!   (rounded; users with fewer than two items stay in train) goes to test;
//! - [`SplitMethod::Time`]: one global cutoff at the `1 − test_fraction` quantile of the
//!   timestamps: earlier events train, the rest test (new users in test are cold);
//! - [`SplitMethod::LeaveLastOut`]: each user's last item by time (ties broken at random)
//!   goes to test, for users with at least two distinct items.
//!
//! The random and leave-last-out splits move whole (user, item) pairs, so that a repeated
//! interaction never sits on both sides.

use std::collections::HashMap;

use rand::rngs::Xoshiro256PlusPlus;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::dataset::Interactions;
use crate::error::{Result, TrainError};

/// How to split.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "method")]
pub enum SplitMethod {
    /// A fraction of each user's items, at random.
    Random {
        /// Share of each user's items held out, in (0, 1).
        test_fraction: f64,
    },
    /// A global time cutoff.
    Time {
        /// Share of events (the latest) held out, in (0, 1).
        test_fraction: f64,
    },
    /// Each user's last item.
    LeaveLastOut,
    /// Given halves (`recd eval --train F --test F`): read, not made.
    Given,
}

impl SplitMethod {
    /// From the CLI's `--split random|time|leave-last-out`, with the test fraction for the
    /// first two.
    pub fn from_name(name: &str, test_fraction: f64) -> Result<Self> {
        let m = match name {
            "random" => SplitMethod::Random { test_fraction },
            "time" => SplitMethod::Time { test_fraction },
            "leave-last-out" => SplitMethod::LeaveLastOut,
            other => {
                return Err(TrainError::param(
                    "split",
                    format!("unknown split {other:?} (expected random, time or leave-last-out)"),
                ));
            }
        };
        m.validate()?;
        Ok(m)
    }

    /// The CLI name.
    pub fn name(&self) -> &'static str {
        match self {
            SplitMethod::Random { .. } => "random",
            SplitMethod::Time { .. } => "time",
            SplitMethod::LeaveLastOut => "leave-last-out",
            SplitMethod::Given => "given",
        }
    }

    fn validate(&self) -> Result<()> {
        match *self {
            SplitMethod::Random { test_fraction } | SplitMethod::Time { test_fraction }
                if !(test_fraction > 0.0 && test_fraction < 1.0) =>
            {
                Err(TrainError::param("test_fraction", "must be in (0, 1)"))
            }
            _ => Ok(()),
        }
    }
}

/// A split: both halves share the id maps of the input.
#[derive(Debug, Clone)]
pub struct Split {
    /// Training events.
    pub train: Interactions,
    /// Held-out events.
    pub test: Interactions,
    /// How it was made.
    pub method: SplitMethod,
}

/// Split `data` with `method`; `seed` drives every random choice.
pub fn split(data: &Interactions, method: SplitMethod, seed: u64) -> Result<Split> {
    let is_test = split_mask(data, method, seed)?;
    from_mask(data, &is_test, method)
}

/// Which events of `data` `method` puts in the test half; `seed` drives every random choice.
pub fn split_mask(data: &Interactions, method: SplitMethod, seed: u64) -> Result<Vec<bool>> {
    method.validate()?;
    if data.is_empty() {
        return Err(TrainError::Empty("no interactions to split".into()));
    }
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    Ok(match method {
        SplitMethod::Random { test_fraction } => random_per_user(data, test_fraction, &mut rng),
        SplitMethod::Time { test_fraction } => {
            let first = data.timestamps.first().copied();
            if data.timestamps.iter().all(|&t| Some(t) == first) {
                return Err(TrainError::param(
                    "split",
                    format!(
                        "the time split cannot run: all {} events have the same timestamp \
                         (use --split random or leave-last-out)",
                        data.len()
                    ),
                ));
            }
            time_cutoff(data, test_fraction)
        }
        SplitMethod::LeaveLastOut => leave_last_out(data, &mut rng),
        SplitMethod::Given => {
            return Err(TrainError::param(
                "split",
                "a given split is read (--train, --test), not made",
            ));
        }
    })
}

/// The split of `data` whose test events are those marked in `is_test` (one per event).
pub fn from_mask(data: &Interactions, is_test: &[bool], method: SplitMethod) -> Result<Split> {
    let (test_idx, train_idx): (Vec<usize>, Vec<usize>) =
        (0..data.len()).partition(|&i| is_test.get(i).copied().unwrap_or(false));
    if train_idx.is_empty() || test_idx.is_empty() {
        return Err(TrainError::Empty(format!(
            "the {} split left {} train and {} test events",
            method.name(),
            train_idx.len(),
            test_idx.len()
        )));
    }
    Ok(Split {
        train: data.subset(&train_idx),
        test: data.subset(&test_idx),
        method,
    })
}

/// Event positions grouped by user, then by item in first-seen order.
fn pairs_by_user(data: &Interactions) -> Vec<Vec<(u32, Vec<usize>)>> {
    let mut by_user: Vec<Vec<(u32, Vec<usize>)>> = vec![Vec::new(); data.n_users()];
    let mut slot: HashMap<(u32, u32), usize> = HashMap::new();
    for (e, (&u, &i)) in data.users.iter().zip(&data.items).enumerate() {
        let list = &mut by_user[u as usize];
        let s = *slot.entry((u, i)).or_insert_with(|| {
            list.push((i, Vec::new()));
            list.len() - 1
        });
        list[s].1.push(e);
    }
    for list in &mut by_user {
        // a canonical order, independent of the file's event order
        list.sort_unstable_by_key(|p| p.0);
    }
    by_user
}

fn random_per_user(data: &Interactions, frac: f64, rng: &mut Xoshiro256PlusPlus) -> Vec<bool> {
    let mut is_test = vec![false; data.len()];
    for mut pairs in pairs_by_user(data) {
        let n = pairs.len();
        if n < 2 {
            continue;
        }
        let n_test = ((n as f64 * frac).round() as usize).min(n - 1);
        pairs.shuffle(rng);
        for (_, events) in &pairs[..n_test] {
            for &e in events {
                is_test[e] = true;
            }
        }
    }
    is_test
}

fn time_cutoff(data: &Interactions, frac: f64) -> Vec<bool> {
    let mut ts = data.timestamps.clone();
    ts.sort_unstable();
    let pos = (((1.0 - frac) * ts.len() as f64).floor() as usize).min(ts.len() - 1);
    let cutoff = ts[pos];
    data.timestamps.iter().map(|&t| t >= cutoff).collect()
}

fn leave_last_out(data: &Interactions, rng: &mut Xoshiro256PlusPlus) -> Vec<bool> {
    let mut is_test = vec![false; data.len()];
    for pairs in pairs_by_user(data) {
        if pairs.len() < 2 {
            continue;
        }
        // latest timestamp of each pair; the pair with the latest one goes to test
        let latest: Vec<i64> = pairs
            .iter()
            .map(|(_, ev)| {
                ev.iter()
                    .map(|&e| data.timestamps[e])
                    .max()
                    .unwrap_or(i64::MIN)
            })
            .collect();
        let max = latest.iter().copied().max().unwrap_or(i64::MIN);
        let tied: Vec<usize> = (0..pairs.len()).filter(|&p| latest[p] == max).collect();
        let pick = tied[rng.random_range(0..tied.len())];
        for &e in &pairs[pick].1 {
            is_test[e] = true;
        }
    }
    is_test
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 4 users: u0 has 10 items, u1 5, u2 2, u3 1; timestamps increase with position.
    fn data() -> Interactions {
        let mut ev = Vec::new();
        let mut t = 0;
        for (u, n) in [(0u32, 10u32), (1, 5), (2, 2), (3, 1)] {
            for i in 0..n {
                ev.push((u, i, 1.0, t));
                t += 10;
            }
        }
        // a repeated pair: u1 views item 0 again at the very end
        ev.push((1, 0, 1.0, 1000));
        Interactions::from_indices(4, 10, &ev)
    }

    #[test]
    fn random_is_per_user_deterministic_and_moves_whole_pairs() {
        let d = data();
        let m = SplitMethod::Random { test_fraction: 0.2 };
        let a = split(&d, m, 1).unwrap();
        let b = split(&d, m, 1).unwrap();
        assert_eq!(a.test.items, b.test.items);
        let test_by_user = a.test.items_by_user();
        let train_by_user = a.train.items_by_user();
        assert_eq!(test_by_user[0].len(), 2); // round(10 · 0.2)
        assert_eq!(test_by_user[1].len(), 1); // round(5 · 0.2)
        assert_eq!(test_by_user[2].len(), 0); // round(0.4)
        assert_eq!(test_by_user[3].len(), 0); // a single item stays in train
        for u in 0..4 {
            for i in &test_by_user[u] {
                assert!(!train_by_user[u].contains(i), "pair on both sides");
            }
        }
        assert_eq!(a.train.len() + a.test.len(), d.len());
        let other = split(&d, m, 2).unwrap();
        let any_diff = (0..20).any(|s| split(&d, m, s).unwrap().test.items != other.test.items);
        assert!(any_diff, "the seed should matter");
    }

    #[test]
    fn time_split_uses_a_global_quantile() {
        let d = data(); // 19 events, timestamps 0..170 step 10, plus 1000
        let s = split(
            &d,
            SplitMethod::Time {
                test_fraction: 0.25,
            },
            0,
        )
        .unwrap();
        // cutoff = ts[floor(0.75 · 19)] = ts[14] = 140
        assert!(s.train.timestamps.iter().all(|&t| t < 140));
        assert!(s.test.timestamps.iter().all(|&t| t >= 140));
        assert_eq!(s.test.len(), 5);
    }

    #[test]
    fn leave_last_out_takes_each_users_latest_pair() {
        let d = data();
        let s = split(&d, SplitMethod::LeaveLastOut, 0).unwrap();
        let test = s.test.items_by_user();
        assert_eq!(test[0], vec![9]);
        assert_eq!(
            test[1],
            vec![0],
            "the pair seen last (repeat at t=1000) goes, with all its events"
        );
        assert_eq!(s.test.users.iter().filter(|&&u| u == 1).count(), 2);
        assert_eq!(test[2], vec![1]);
        assert!(test[3].is_empty());
    }

    #[test]
    fn leave_last_out_breaks_ties_by_seed() {
        let d = Interactions::from_indices(
            1,
            5,
            &[
                (0, 0, 1.0, 5),
                (0, 1, 1.0, 5),
                (0, 2, 1.0, 5),
                (0, 3, 1.0, 5),
                (0, 4, 1.0, 1),
            ],
        );
        let picks: std::collections::BTreeSet<u32> = (0..30)
            .map(|seed| {
                split(&d, SplitMethod::LeaveLastOut, seed)
                    .unwrap()
                    .test
                    .items[0]
            })
            .collect();
        assert!(picks.len() > 1 && !picks.contains(&4), "{picks:?}");
    }

    #[test]
    fn names_and_bad_parameters() {
        assert_eq!(
            SplitMethod::from_name("leave-last-out", 0.2)
                .unwrap()
                .name(),
            "leave-last-out"
        );
        assert!(SplitMethod::from_name("kfold", 0.2).is_err());
        assert!(SplitMethod::from_name("random", 1.5).is_err());
        let one = Interactions::from_indices(1, 1, &[(0, 0, 1.0, 0)]);
        assert!(matches!(
            split(&one, SplitMethod::LeaveLastOut, 0),
            Err(TrainError::Empty(_))
        ));
    }
}
