//! Confidence scaling: how a user's events on an item become ALS's confidence `c_ui`.
//!
//! Three steps, in this order:
//! 1. each event's weight `w` is recd-core's [`recd_core::EventWeights`] (per event type,
//!    rating stars, dwell seconds: the serving side's one definition), already in
//!    [`Interactions::weights`];
//! 2. **recency** (optional): each event's `w` is multiplied by `2^(−age / half_life)`, the
//!    age counted from the newest event of the data (the training time: deterministic,
//!    and the same as the wall clock for a log that is being written);
//! 3. the summed `r_ui` of each user–item pair is **scaled** into `s_ui` and the confidence is
//!    `c_ui = 1 + alpha · s_ui`:
//!    - `linear`: `s = r` (Hu, Koren & Volinsky; recd's behaviour before scaling existed);
//!    - `log`: `s = ln(1 + r / epsilon)` (the paper's alternative: a heavy user's hundredth
//!      play counts little more than their tenth);
//!    - `bm25`: `implicit.nearest_neighbours.bm25_weight` on the user × item matrix
//!      (`K1`, `B`): `s = r (K1 + 1) / (K1 · norm_u + r) · idf_i` with
//!      `idf_i = ln(N_users) − ln(1 + users_i)` and `norm_u = (1 − B) + B · len_u / mean len`
//!      (`len_u`: the user's summed `r`). An item that nearly every user has gets an idf at
//!      or below 0 there; here `s` is floored at 0 (the pair stays observed with `c = 1`)
//!      because a confidence below 1 would make the solve's matrix indefinite;
//!    - `tfidf`: `implicit`'s `tfidf_weight`: `s = sqrt(r) · idf_i` (same idf and floor).
//!
//! The real-time fold-in (recd-core) weighs each event linearly whatever the scaling: it
//! sees one user's stream, without the catalog-wide statistics bm25 needs.

use serde::{Deserialize, Serialize};

use crate::dataset::{Csr, Interactions};
use crate::error::{Result, TrainError};

/// How summed event weights become confidences (see the module doc).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scaling {
    /// `s = r`.
    #[default]
    Linear,
    /// `s = ln(1 + r / epsilon)`.
    Log,
    /// `implicit`'s `bm25_weight`.
    Bm25,
    /// `implicit`'s `tfidf_weight`.
    Tfidf,
}

impl Scaling {
    /// The config and CLI name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scaling::Linear => "linear",
            Scaling::Log => "log",
            Scaling::Bm25 => "bm25",
            Scaling::Tfidf => "tfidf",
        }
    }

    /// From the config and CLI name.
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "linear" => Ok(Scaling::Linear),
            "log" => Ok(Scaling::Log),
            "bm25" => Ok(Scaling::Bm25),
            "tfidf" => Ok(Scaling::Tfidf),
            other => Err(TrainError::param(
                "scaling",
                format!("unknown scaling {other:?} (expected linear, log, bm25 or tfidf)"),
            )),
        }
    }
}

/// Confidence settings of a training run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Confidence {
    /// How the summed weight of a pair is scaled.
    pub scaling: Scaling,
    /// `epsilon` of the log scaling.
    pub log_epsilon: f32,
    /// `K1` of bm25 (implicit's default 100).
    pub bm25_k1: f32,
    /// `B` of bm25 (implicit's default 0.8).
    pub bm25_b: f32,
    /// Half-life of an event's weight by its age, in days; 0 = every event counts fully.
    pub recency_half_life_days: f64,
}

impl Default for Confidence {
    fn default() -> Self {
        Self {
            scaling: Scaling::Linear,
            log_epsilon: 1.0,
            bm25_k1: 100.0,
            bm25_b: 0.8,
            recency_half_life_days: 0.0,
        }
    }
}

impl Confidence {
    /// Reject settings that cannot train.
    pub fn validate(&self) -> Result<()> {
        if !(self.log_epsilon.is_finite() && self.log_epsilon > 0.0) {
            return Err(TrainError::param("log_epsilon", "must be finite and > 0"));
        }
        if !(self.bm25_k1.is_finite() && self.bm25_k1 >= 0.0) {
            return Err(TrainError::param("bm25_k1", "must be finite and >= 0"));
        }
        if !(0.0..=1.0).contains(&self.bm25_b) {
            return Err(TrainError::param("bm25_b", "must be in [0, 1]"));
        }
        if !(self.recency_half_life_days.is_finite() && self.recency_half_life_days >= 0.0) {
            return Err(TrainError::param(
                "recency_half_life_days",
                "must be finite and >= 0 (0 = off)",
            ));
        }
        Ok(())
    }

    /// The `n_users × n_items` matrix of confidences `c_ui = 1 + alpha · s_ui`.
    pub fn matrix(&self, data: &Interactions, alpha: f32) -> Result<Csr> {
        self.validate()?;
        let summed = self.summed(data);
        let scaled = self.scale(&summed);
        let c = scaled.map_values(|s| 1.0 + alpha * s);
        if c.data.iter().any(|c| !c.is_finite()) {
            return Err(TrainError::param(
                "alpha",
                "alpha times the scaled weights overflows f32",
            ));
        }
        Ok(c)
    }

    /// The summed `r_ui`, each event weighed by its recency.
    pub fn summed(&self, data: &Interactions) -> Csr {
        let half_life_ms = self.recency_half_life_days * 86_400_000.0;
        if half_life_ms <= 0.0 {
            return data.user_item_matrix();
        }
        let newest = data.timestamps.iter().copied().max().unwrap_or(0);
        let decayed = (0..data.len()).map(|e| {
            let age = (newest - data.timestamps[e]).max(0) as f64;
            let w = f64::from(data.weights[e]) * (-age / half_life_ms).exp2();
            (data.users[e], data.items[e], w as f32)
        });
        Csr::from_triplets(data.n_users(), data.n_items(), decayed)
    }

    /// `r_ui` → `s_ui` by the scaling.
    pub fn scale(&self, r: &Csr) -> Csr {
        match self.scaling {
            Scaling::Linear => r.clone(),
            Scaling::Log => {
                let eps = self.log_epsilon;
                r.map_values(|v| (v / eps).ln_1p())
            }
            Scaling::Bm25 => bm25(r, self.bm25_k1, self.bm25_b),
            Scaling::Tfidf => tfidf(r),
        }
    }
}

/// `ln(N_users) − ln(1 + users_i)` per item (column) of `x`, as `implicit`.
fn idf(x: &Csr) -> Vec<f64> {
    let n = x.rows as f64;
    let mut users_per_item = vec![0u32; x.cols];
    for &i in &x.indices {
        users_per_item[i as usize] += 1;
    }
    users_per_item
        .iter()
        .map(|&m| n.ln() - f64::from(m).ln_1p())
        .collect()
}

/// `implicit.nearest_neighbours.tfidf_weight(X)` on the user × item matrix `x`, floored at 0.
fn tfidf(x: &Csr) -> Csr {
    let idf = idf(x);
    let mut out = x.clone();
    for (v, &i) in out.data.iter_mut().zip(&x.indices) {
        *v = (f64::from(*v).sqrt() * idf[i as usize]).max(0.0) as f32;
    }
    out
}

/// `implicit.nearest_neighbours.bm25_weight(X, K1, B)` on the user × item matrix `x`,
/// floored at 0 (see the module doc).
fn bm25(x: &Csr, k1: f32, b: f32) -> Csr {
    let n = x.rows as f64;
    let idf = idf(x);
    let len: Vec<f64> = (0..x.rows)
        .map(|u| x.row(u).1.iter().map(|&v| f64::from(v)).sum())
        .collect();
    let mean = len.iter().sum::<f64>() / n.max(1.0);
    let (k1, b) = (f64::from(k1), f64::from(b));
    let mut out = x.clone();
    for (u, &len_u) in len.iter().enumerate() {
        let norm = if mean > 0.0 {
            (1.0 - b) + b * len_u / mean
        } else {
            1.0
        };
        for p in x.indptr[u]..x.indptr[u + 1] {
            let r = f64::from(x.data[p]);
            let s = r * (k1 + 1.0) / (k1 * norm + r) * idf[x.indices[p] as usize];
            out.data[p] = s.max(0.0) as f32;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    fn close(a: f32, b: f64) -> bool {
        (f64::from(a) - b).abs() < 1e-4 * b.abs().max(1.0)
    }

    #[test]
    fn linear_is_one_plus_alpha_times_the_summed_weight() {
        let d = Interactions::from_indices(1, 2, &[(0, 0, 2.0, 0), (0, 0, 3.0, 1), (0, 1, 1.0, 2)]);
        let c = Confidence::default().matrix(&d, 0.5).unwrap();
        assert_eq!(c.data, vec![3.5, 1.5]);
    }

    #[test]
    fn log_scaling_compresses_large_counts() {
        let d = Interactions::from_indices(1, 2, &[(0, 0, 100.0, 0), (0, 1, 1.0, 0)]);
        let conf = Confidence {
            scaling: Scaling::Log,
            log_epsilon: 0.5,
            ..Confidence::default()
        };
        let c = conf.matrix(&d, 2.0).unwrap();
        assert!(close(c.data[0], 1.0 + 2.0 * (1.0f64 + 200.0).ln()), "{c:?}");
        assert!(close(c.data[1], 1.0 + 2.0 * 3.0f64.ln()), "{c:?}");
    }

    #[test]
    fn bm25_matches_implicit_on_a_small_matrix() {
        // 3 users × 2 items: item 0 seen by u0 and u1, item 1 by u1 and u2.
        let d = Interactions::from_indices(
            3,
            2,
            &[
                (0, 0, 1.0, 0),
                (1, 0, 2.0, 0),
                (1, 1, 1.0, 0),
                (2, 1, 4.0, 0),
            ],
        );
        let (k1, b) = (100.0f64, 0.8f64);
        let conf = Confidence {
            scaling: Scaling::Bm25,
            ..Confidence::default()
        };
        let s = conf.scale(&conf.summed(&d));
        // by hand, with implicit's formulas
        // each item has 2 of 3 users: idf = ln 3 − ln(1 + 2) = 0 (to rounding)
        assert!(s.data.iter().all(|&v| v.abs() < 1e-9), "idf 0: {s:?}");
        // 4 users, item 0 seen by one: idf = ln 4 − ln 2
        let d = Interactions::from_indices(
            4,
            2,
            &[
                (0, 0, 3.0, 0),
                (1, 1, 1.0, 0),
                (2, 1, 1.0, 0),
                (3, 1, 1.0, 0),
            ],
        );
        let s = conf.scale(&conf.summed(&d));
        let lens = [3.0, 1.0, 1.0, 1.0];
        let mean: f64 = lens.iter().sum::<f64>() / 4.0;
        let norm0 = (1.0 - b) + b * 3.0 / mean;
        let want = 3.0 * (k1 + 1.0) / (k1 * norm0 + 3.0) * (4.0f64.ln() - 2.0f64.ln());
        assert!(close(s.data[0], want), "{} vs {want}", s.data[0]);
        // item 1, seen by 3 of 4: ln 4 − ln 4 = 0
        assert!(s.data[1..].iter().all(|&v| v.abs() < 1e-9), "{s:?}");
        // an item every user has: idf = ln 2 − ln 3 < 0, floored so that c stays ≥ 1
        let all = Interactions::from_indices(2, 1, &[(0, 0, 1.0, 0), (1, 0, 5.0, 0)]);
        let c = conf.matrix(&all, 10.0).unwrap();
        assert_eq!(c.data, vec![1.0, 1.0]);
        let tfidf = Confidence {
            scaling: Scaling::Tfidf,
            ..Confidence::default()
        };
        let t = tfidf.scale(&tfidf.summed(&d));
        assert!(
            close(t.data[0], 3.0f64.sqrt() * (4.0f64.ln() - 2.0f64.ln())),
            "{t:?}"
        );
    }

    #[test]
    fn recency_halves_an_event_per_half_life() {
        let d = Interactions::from_indices(
            1,
            3,
            &[(0, 0, 4.0, 0), (0, 1, 4.0, 10 * DAY), (0, 2, 4.0, 20 * DAY)],
        );
        let conf = Confidence {
            recency_half_life_days: 10.0,
            ..Confidence::default()
        };
        let r = conf.summed(&d);
        assert!(close(r.data[0], 1.0) && close(r.data[1], 2.0) && close(r.data[2], 4.0));
        // off: every event counts fully
        assert_eq!(Confidence::default().summed(&d).data, vec![4.0, 4.0, 4.0]);
    }

    #[test]
    fn bad_settings_are_named() {
        for (conf, name) in [
            (
                Confidence {
                    log_epsilon: 0.0,
                    ..Confidence::default()
                },
                "log_epsilon",
            ),
            (
                Confidence {
                    bm25_b: 1.5,
                    ..Confidence::default()
                },
                "bm25_b",
            ),
            (
                Confidence {
                    recency_half_life_days: -1.0,
                    ..Confidence::default()
                },
                "recency_half_life_days",
            ),
        ] {
            let err = conf.validate().unwrap_err().to_string();
            assert!(err.contains(name), "{err}");
        }
        assert!(Scaling::from_name("tf-idf").is_err());
        assert_eq!(Scaling::from_name("bm25").unwrap(), Scaling::Bm25);
    }
}
