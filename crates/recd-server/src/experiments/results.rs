//! An experiment's results (`GET /v1/experiments/{id}`), computed from its counters with
//! `recd_core::experiment::stats`: per variant the users, impressions, clicks and
//! conversions; CTR and conversion rate per impression with 95 % intervals by the delta
//! method over users (a user's impressions are not independent); against the control
//! (the first variant) a two-sided z-test, an always-valid p-value (mSPRT, safe to look at
//! daily), the Bayesian probability to beat the control and the expected loss; a
//! sample-ratio-mismatch check (A/B); the sample size per variant for the configured
//! minimum detectable effect; and, for interleaving, the preference with a sign test.

use std::collections::HashMap;

use recd_core::experiment::interleave::sign_test;
use recd_core::experiment::stats::{
    Effect, PairSums, Proportion, compare_normal, msprt_p_value, ratio_interval, ratio_ztest,
    sample_ratio_mismatch, sample_size_per_variant,
};
use serde::Serialize;

use super::model::{ExperimentDef, Kind, Metric, Status};

/// A rate with its 95 % interval (absent while there are too few users to estimate it).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Rate {
    /// Σ successes / Σ impressions.
    pub value: f64,
    /// Lower end of the 95 % interval.
    pub low: Option<f64>,
    /// Upper end.
    pub high: Option<f64>,
}

/// One variant's results.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct VariantResult {
    /// Its name.
    pub name: String,
    /// The strategy it serves.
    pub strategy: String,
    /// Users shown at least one of its lists.
    pub users: u64,
    /// Lists shown.
    pub impressions: u64,
    /// Lists clicked.
    pub clicks: u64,
    /// Lists followed by a purchase of a listed item.
    pub conversions: u64,
    /// Clicked lists per list shown.
    pub ctr: Rate,
    /// Converted lists per list shown.
    pub conversion_rate: Rate,
    /// The experiment metric vs the control: two-sided z-test (delta method).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub p_value: Option<f64>,
    /// The same as an always-valid p-value (mSPRT): valid however often it is looked at.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub always_valid_p_value: Option<f64>,
    /// P(this variant's rate > the control's) under Beta posteriors.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub prob_beat_control: Option<f64>,
    /// The expected rate lost by choosing this variant over the control.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub expected_loss: Option<f64>,
    /// Its share of the experiment's impressions.
    pub traffic_share: f64,
    /// Its configured share (A/B).
    pub configured_share: f64,
}

/// The sample-ratio-mismatch check (A/B; a bandit moves traffic on purpose and interleaving
/// shows every user both strategies, so theirs is always `null`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Srm {
    /// χ² goodness of fit of users per variant to the configured weights; `null` until
    /// there are users to count (or for kinds without a configured split).
    pub p_value: Option<f64>,
    /// p < 0.001: the assignment or the logging is broken; do not trust the results.
    pub mismatch: bool,
}

/// The planned sample size.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SampleSize {
    /// The minimum detectable effect (relative lift of the control's rate).
    pub mde: f64,
    /// Users per variant for α = 0.05 (two-sided) and power 0.8; `null` until the control
    /// has a rate strictly between 0 and 1.
    pub required_per_variant: Option<u64>,
    /// Whether every variant has that many users.
    pub reached: bool,
}

/// Interleaving's verdict. Every list mixes both variants, so lists and users are counted
/// here, not per variant (whose rows stay at zero).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Interleaving {
    /// Users shown an interleaved list.
    pub users: u64,
    /// Interleaved lists shown.
    pub impressions: u64,
    /// Lists whose first click went to the control's pick.
    pub a_wins: u64,
    /// Lists whose first click went to the treatment's pick.
    pub b_wins: u64,
    /// Share of decided lists the treatment won, minus 0.5: > 0 prefers the treatment.
    pub preference: f64,
    /// Two-sided sign test of a_wins vs b_wins.
    pub p_value: f64,
    /// The preferred variant's name, when p < 0.05.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub winner: Option<String>,
}

/// The whole answer.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ExperimentResults {
    /// Its id.
    pub id: String,
    /// ab, bandit or interleaving.
    pub kind: Kind,
    /// running or stopped.
    pub status: Status,
    /// The metric it is judged by.
    pub metric: Metric,
    /// Its layer.
    pub layer: String,
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339, once stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub stopped_at: Option<String>,
    /// Per variant, the control first.
    pub variants: Vec<VariantResult>,
    /// The sample-ratio-mismatch check.
    pub srm: Srm,
    /// The planned sample size.
    pub sample_size: SampleSize,
    /// Interleaving only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub interleaving: Option<Interleaving>,
}

/// One variant's per-user sums as the stats functions take them.
struct Sums {
    clicks: PairSums,
    conversions: PairSums,
    users: u64,
    impressions: u64,
    clicked: u64,
    converted: u64,
}

fn sums(counters: &HashMap<String, f64>, variant: &str) -> Sums {
    let get = |f: &str| {
        counters
            .get(&format!("{variant}|{f}"))
            .copied()
            .unwrap_or(0.0)
    };
    let users = get("users").max(0.0);
    let pair = |x: &str, xx: &str, xy: &str| PairSums {
        n: users as u64,
        sum_x: get(x),
        sum_y: get("imp"),
        sum_xx: get(xx),
        sum_yy: get("imp2"),
        sum_xy: get(xy),
    };
    Sums {
        clicks: pair("clk", "clk2", "clkimp"),
        conversions: pair("cnv", "cnv2", "cnvimp"),
        users: users as u64,
        impressions: get("imp").max(0.0) as u64,
        clicked: get("clk").max(0.0) as u64,
        converted: get("cnv").max(0.0) as u64,
    }
}

fn rate(sums: &PairSums) -> Rate {
    let value = if sums.sum_y > 0.0 {
        sums.sum_x / sums.sum_y
    } else {
        0.0
    };
    match ratio_interval(sums, 0.95) {
        Ok(i) => Rate {
            value,
            low: Some(i.lo.max(0.0)),
            high: Some(i.hi.min(1.0)),
        },
        Err(_) => Rate {
            value,
            low: None,
            high: None,
        },
    }
}

/// The variant name interleaved lists are counted under.
pub const INTERLEAVED: &str = "interleaved";

/// The field under which a variant's running minimum of the always-valid p-value is kept,
/// as 1 − p (counters start at 0, which is then "p = 1, no look yet").
pub fn msprt_field(variant: &str) -> String {
    format!("{variant}|msprt_gain")
}

/// Computes the results; returns them with the always-valid p-values of this look (the
/// caller keeps their running minimum in the counters).
pub fn compute(
    def: &ExperimentDef,
    counters: &HashMap<String, f64>,
) -> (ExperimentResults, Vec<(String, f64)>) {
    let spec = &def.spec;
    let all: Vec<Sums> = spec
        .variants
        .iter()
        .map(|v| sums(counters, &v.name))
        .collect();
    let total_impressions: u64 = all.iter().map(|s| s.impressions).sum();
    let weight_sum: f64 = spec.variants.iter().map(|v| v.weight).sum();
    let metric_of = |s: &Sums| match spec.metric {
        Metric::Click => (s.clicks, s.clicked),
        Metric::Conversion => (s.conversions, s.converted),
    };
    let control = &all[0];
    let (control_pairs, control_successes) = metric_of(control);
    let control_rate = if control_pairs.sum_y > 0.0 {
        control_pairs.sum_x / control_pairs.sum_y
    } else {
        0.0
    };
    let mut looks = Vec::new();
    let mut variants = Vec::with_capacity(all.len());
    for (i, (v, s)) in spec.variants.iter().zip(&all).enumerate() {
        let (pairs, successes) = metric_of(s);
        let mut out = VariantResult {
            name: v.name.clone(),
            strategy: v.strategy.clone(),
            users: s.users,
            impressions: s.impressions,
            clicks: s.clicked,
            conversions: s.converted,
            ctr: rate(&s.clicks),
            conversion_rate: rate(&s.conversions),
            p_value: None,
            always_valid_p_value: None,
            prob_beat_control: None,
            expected_loss: None,
            traffic_share: if total_impressions > 0 {
                s.impressions as f64 / total_impressions as f64
            } else {
                0.0
            },
            configured_share: if weight_sum > 0.0 {
                v.weight / weight_sum
            } else {
                0.0
            },
        };
        if i > 0 && spec.kind != Kind::Interleaving {
            if let Ok(z) = ratio_ztest(&control_pairs, &pairs) {
                out.p_value = Some(z.p_value);
                // τ²: the squared smallest effect worth finding, unless configured.
                let tau2 = spec
                    .msprt_tau2
                    .unwrap_or_else(|| (spec.mde * control_rate).powi(2).max(1e-8));
                let variance = z.std_error * z.std_error;
                if variance > 0.0 {
                    let previous = (1.0
                        - counters.get(&msprt_field(&v.name)).copied().unwrap_or(0.0))
                    .clamp(0.0, 1.0);
                    if let Ok(p) = msprt_p_value(previous, z.difference, variance, tau2) {
                        out.always_valid_p_value = Some(p);
                        looks.push((v.name.clone(), p));
                    }
                }
            }
            let proportions = (
                Proportion::new(control_successes, control.impressions),
                Proportion::new(successes, s.impressions),
            );
            if let (Ok(c), Ok(t)) = proportions
                && let Ok(b) = compare_normal(c, t)
            {
                out.prob_beat_control = Some(b.prob_treatment_better);
                out.expected_loss = Some(b.loss_choosing_treatment);
            }
        }
        variants.push(out);
    }
    let srm = (spec.kind == Kind::Ab)
        .then(|| {
            let users: Vec<u64> = all.iter().map(|s| s.users).collect();
            let weights: Vec<f64> = spec.variants.iter().map(|v| v.weight).collect();
            sample_ratio_mismatch(&users, &weights).ok()
        })
        .flatten()
        .map_or(
            Srm {
                p_value: None,
                mismatch: false,
            },
            |r| Srm {
                p_value: Some(r.p_value),
                mismatch: r.mismatch,
            },
        );
    let required = (control_rate > 0.0 && control_rate < 1.0)
        .then(|| sample_size_per_variant(control_rate, Effect::Relative(spec.mde)).ok())
        .flatten();
    let sample_size = SampleSize {
        mde: spec.mde,
        required_per_variant: required,
        reached: required.is_some_and(|r| all.iter().all(|s| s.users >= r)),
    };
    let interleaving = (spec.kind == Kind::Interleaving).then(|| {
        let a = counters.get("a_wins").copied().unwrap_or(0.0).max(0.0) as u64;
        let b = counters.get("b_wins").copied().unwrap_or(0.0).max(0.0) as u64;
        let decided = a + b;
        let preference = if decided > 0 {
            b as f64 / decided as f64 - 0.5
        } else {
            0.0
        };
        let p_value = sign_test(a, b);
        let winner = (p_value < 0.05 && decided > 0).then(|| {
            let i = usize::from(b > a);
            spec.variants[i].name.clone()
        });
        let mixed = sums(counters, INTERLEAVED);
        Interleaving {
            users: mixed.users,
            impressions: mixed.impressions,
            a_wins: a,
            b_wins: b,
            preference,
            p_value,
            winner,
        }
    });
    (
        ExperimentResults {
            id: spec.id.clone(),
            kind: spec.kind,
            status: def.status,
            metric: spec.metric,
            layer: spec.layer.clone(),
            started_at: def.started_at.clone(),
            stopped_at: def.stopped_at.clone(),
            variants,
            srm,
            sample_size,
            interleaving,
        },
        looks,
    )
}
