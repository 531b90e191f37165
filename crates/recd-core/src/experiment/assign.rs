//! Deterministic assignment of users to experiment variants, holdouts and layers.
//!
//! A user's variant is a pure function of the experiment definition and the user id
//! (see [`super::hash`]): no assignment table is stored, every server agrees, and a
//! restart changes nothing. The rules, in order:
//! 1. a per-user override (for QA) forces a variant; such users are left out of the
//!    analysis ([`Assignment::is_analyzed`]);
//! 2. users whose holdout point is below the `holdout` share get no variant;
//! 3. everyone else gets the variant whose cumulative-weight range holds their
//!    [`bucket`].
//!
//! The holdout uses a hash of its own, so changing the holdout share moves users only in
//! and out of the holdout; changing weights moves only the users whose bucket changes
//! range. By convention the first variant is the control.
//!
//! Experiments that must not share users (they change the same thing) go into one
//! [`Layer`]: each owns a disjoint range `[lo, hi)` of the layer's
//! [`layer_bucket`], and a user takes part in at most the one
//! experiment whose range holds their layer point. Experiments of different layers are
//! independent of each other (orthogonal), because the layer ids hash differently.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::hash::{bucket, holdout_bucket, layer_bucket};
use crate::error::ValidationError;
use crate::id::validate_id;
use crate::invalid;

/// One variant of an experiment as configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantSpec {
    /// Unique within the experiment (an id: 1–256 bytes, no control characters).
    pub name: String,
    /// Relative share of the experiment's (non-holdout) traffic: finite, ≥ 0.
    #[serde(default = "one")]
    pub weight: f64,
}

fn one() -> f64 {
    1.0
}

/// An experiment as configured; [`Experiment::new`] validates it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentSpec {
    /// The experiment's id; it seeds the assignment, so renaming reshuffles users.
    pub id: String,
    /// At least two variants; the first is the control.
    pub variants: Vec<VariantSpec>,
    /// Share of the experiment's users who get no variant, in [0, 1).
    #[serde(default)]
    pub holdout: f64,
    /// Users forced into a variant (user id → variant name), checked first.
    #[serde(default)]
    pub overrides: BTreeMap<String, String>,
}

/// What a user gets in one experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Assignment {
    /// The variant at this index, by hash: the user counts in the analysis.
    Variant(usize),
    /// The variant at this index, forced by an override: shown it, but not analyzed.
    Override(usize),
    /// In the experiment's holdout: no variant (the default experience).
    Holdout,
    /// Not in this experiment: outside its range of a layer, or taken by another
    /// experiment of the layer.
    NotEnrolled,
}

impl Assignment {
    /// The index of the variant to show, if any.
    pub fn variant(self) -> Option<usize> {
        match self {
            Assignment::Variant(i) | Assignment::Override(i) => Some(i),
            Assignment::Holdout | Assignment::NotEnrolled => None,
        }
    }

    /// Whether the user's behaviour counts towards the variant's statistics: only users
    /// assigned by hash do (overridden QA users would bias them).
    pub fn is_analyzed(self) -> bool {
        matches!(self, Assignment::Variant(_))
    }
}

/// A validated experiment: assigns users to variants.
#[derive(Debug, Clone, PartialEq)]
pub struct Experiment {
    id: String,
    names: Vec<String>,
    /// Normalized weights (sum 1).
    weights: Vec<f64>,
    /// Upper ends of the variants' ranges of [0, 1); the last is exactly 1.
    cumulative: Vec<f64>,
    holdout: f64,
    overrides: HashMap<String, usize>,
}

impl Experiment {
    /// Validates `spec`: a valid id, ≥ 2 variants with unique valid names, weights finite
    /// and ≥ 0 with a positive finite sum (they are normalized), holdout in [0, 1), and
    /// overrides naming valid users and existing variants.
    pub fn new(spec: ExperimentSpec) -> Result<Self, ValidationError> {
        validate_id(&spec.id, "experiment id")?;
        let id = spec.id;
        if spec.variants.len() < 2 {
            return invalid!(
                "experiment {id:?} has {} variant(s); it needs at least 2",
                spec.variants.len()
            );
        }
        let mut seen = HashSet::new();
        for v in &spec.variants {
            validate_id(&v.name, "variant name")?;
            if !seen.insert(v.name.as_str()) {
                return invalid!("experiment {id:?} has two variants named {:?}", v.name);
            }
            if !(v.weight.is_finite() && v.weight >= 0.0) {
                return invalid!(
                    "variant {:?} of experiment {id:?} has weight {}; it must be finite and >= 0",
                    v.name,
                    v.weight
                );
            }
        }
        let total: f64 = spec.variants.iter().map(|v| v.weight).sum();
        if !(total.is_finite() && total > 0.0) {
            return invalid!(
                "the variant weights of experiment {id:?} sum to {total}; it must be positive and finite"
            );
        }
        if !(spec.holdout.is_finite() && (0.0..1.0).contains(&spec.holdout)) {
            return invalid!(
                "experiment {id:?} has holdout {}; it must be in [0, 1)",
                spec.holdout
            );
        }
        let names: Vec<String> = spec.variants.iter().map(|v| v.name.clone()).collect();
        let weights: Vec<f64> = spec.variants.iter().map(|v| v.weight / total).collect();
        let mut cumulative = Vec::with_capacity(weights.len());
        let mut acc = 0.0;
        for w in &weights {
            acc += w;
            cumulative.push(acc);
        }
        // Rounding may leave the sum a hair below 1; the last non-empty range must
        // reach 1 so that every bucket in [0, 1) lands somewhere. Trailing zero-weight
        // variants keep their empty ranges (their upper end equals the previous one).
        let last_positive = weights.iter().rposition(|&w| w > 0.0).unwrap_or(0);
        for c in &mut cumulative[last_positive..] {
            *c = 1.0;
        }
        let mut overrides = HashMap::with_capacity(spec.overrides.len());
        for (user, variant) in spec.overrides {
            validate_id(&user, "override user id")?;
            let Some(index) = names.iter().position(|n| *n == variant) else {
                return invalid!(
                    "the override of user {user:?} in experiment {id:?} names variant {variant:?}, which it does not have"
                );
            };
            overrides.insert(user, index);
        }
        Ok(Self {
            id,
            names,
            weights,
            cumulative,
            holdout: spec.holdout,
            overrides,
        })
    }

    /// The experiment's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The variants' names; index 0 is the control.
    pub fn variant_names(&self) -> &[String] {
        &self.names
    }

    /// The index of the variant called `name`.
    pub fn variant_index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// The normalized weights (summing to 1): the expected share of each variant among
    /// analyzed users, as the sample-ratio check wants them.
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }

    /// The holdout share.
    pub fn holdout(&self) -> f64 {
        self.holdout
    }

    /// The variant that a bucket point in [0, 1) falls into.
    fn variant_at(&self, point: f64) -> usize {
        // The first range whose upper end lies above the point; zero-weight variants
        // have empty ranges and are never found. `cumulative` ends with 1 > point.
        self.cumulative
            .iter()
            .position(|&c| point < c)
            .unwrap_or(self.names.len() - 1)
    }

    /// Assigns `user_id` as if it takes part (ignoring layers): override, then holdout,
    /// then variant by bucket. Never returns [`Assignment::NotEnrolled`].
    pub fn assign(&self, user_id: &str) -> Assignment {
        if let Some(&i) = self.overrides.get(user_id) {
            return Assignment::Override(i);
        }
        if self.holdout > 0.0 && holdout_bucket(&self.id, user_id) < self.holdout {
            return Assignment::Holdout;
        }
        Assignment::Variant(self.variant_at(bucket(&self.id, user_id)))
    }

    fn has_override(&self, user_id: &str) -> bool {
        self.overrides.contains_key(user_id)
    }
}

/// An experiment's place in a layer, as configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerSlotSpec {
    /// The range `[lo, hi)` of the layer bucket the experiment owns: 0 ≤ lo < hi ≤ 1.
    pub range: [f64; 2],
    /// The experiment.
    pub experiment: ExperimentSpec,
}

/// A layer as configured; [`Layer::new`] validates it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerSpec {
    /// The layer's id; it seeds the layer bucket.
    pub id: String,
    /// Mutually exclusive experiments with disjoint ranges.
    pub experiments: Vec<LayerSlotSpec>,
}

/// One experiment of a layer with its range of the layer bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerSlot {
    /// Lower end (inclusive) of the owned range.
    pub lo: f64,
    /// Upper end (exclusive) of the owned range.
    pub hi: f64,
    /// The experiment.
    pub experiment: Experiment,
}

/// Mutually exclusive experiments: each user takes part in at most one of them.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    id: String,
    /// Sorted by `lo`, ranges disjoint.
    slots: Vec<LayerSlot>,
}

impl Layer {
    /// Validates `spec`: a valid id, valid experiments with unique ids, and ranges with
    /// 0 ≤ lo < hi ≤ 1 that do not overlap. Ranges need not cover [0, 1): users in a gap
    /// are in none of the layer's experiments.
    pub fn new(spec: LayerSpec) -> Result<Self, ValidationError> {
        validate_id(&spec.id, "layer id")?;
        let id = spec.id;
        let mut slots = Vec::with_capacity(spec.experiments.len());
        let mut ids = HashSet::new();
        for s in spec.experiments {
            let [lo, hi] = s.range;
            let experiment = Experiment::new(s.experiment)?;
            if !(lo.is_finite() && hi.is_finite() && 0.0 <= lo && lo < hi && hi <= 1.0) {
                return invalid!(
                    "experiment {:?} of layer {id:?} has range [{lo}, {hi}); it needs 0 <= lo < hi <= 1",
                    experiment.id()
                );
            }
            if !ids.insert(experiment.id().to_owned()) {
                return invalid!("layer {id:?} has experiment {:?} twice", experiment.id());
            }
            slots.push(LayerSlot { lo, hi, experiment });
        }
        slots.sort_by(|a, b| a.lo.total_cmp(&b.lo));
        for pair in slots.windows(2) {
            if pair[0].hi > pair[1].lo {
                return invalid!(
                    "experiments {:?} [{}, {}) and {:?} [{}, {}) of layer {id:?} overlap",
                    pair[0].experiment.id(),
                    pair[0].lo,
                    pair[0].hi,
                    pair[1].experiment.id(),
                    pair[1].lo,
                    pair[1].hi
                );
            }
        }
        Ok(Self { id, slots })
    }

    /// The layer's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The layer's experiments with their ranges, by increasing range.
    pub fn slots(&self) -> &[LayerSlot] {
        &self.slots
    }

    /// The one experiment of the layer that `user_id` takes part in, with the assignment
    /// there; `None` if the user falls in no experiment's range. An override in one of
    /// the layer's experiments takes the user into that experiment whatever their layer
    /// point (the first such experiment by range, should there be several).
    pub fn assign(&self, user_id: &str) -> Option<(&Experiment, Assignment)> {
        if let Some(s) = self
            .slots
            .iter()
            .find(|s| s.experiment.has_override(user_id))
        {
            return Some((&s.experiment, s.experiment.assign(user_id)));
        }
        let point = layer_bucket(&self.id, user_id);
        self.slots
            .iter()
            .find(|s| s.lo <= point && point < s.hi)
            .map(|s| (&s.experiment, s.experiment.assign(user_id)))
    }

    /// The assignment of `user_id` in the layer's experiment `experiment_id`:
    /// [`Assignment::NotEnrolled`] when the user is in another or none of the layer's
    /// experiments; `None` when the layer has no such experiment.
    pub fn assign_in(&self, experiment_id: &str, user_id: &str) -> Option<Assignment> {
        if !self
            .slots
            .iter()
            .any(|s| s.experiment.id() == experiment_id)
        {
            return None;
        }
        Some(match self.assign(user_id) {
            Some((e, a)) if e.id() == experiment_id => a,
            _ => Assignment::NotEnrolled,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(id: &str, weights: &[f64], holdout: f64) -> ExperimentSpec {
        ExperimentSpec {
            id: id.to_owned(),
            variants: weights
                .iter()
                .enumerate()
                .map(|(i, &w)| VariantSpec {
                    name: format!("v{i}"),
                    weight: w,
                })
                .collect(),
            holdout,
            overrides: BTreeMap::new(),
        }
    }

    fn exp(id: &str, weights: &[f64], holdout: f64) -> Experiment {
        Experiment::new(spec(id, weights, holdout)).unwrap()
    }

    const USERS: usize = 100_000;

    fn user(u: usize) -> String {
        format!("user-{u}")
    }

    #[test]
    fn validation_rejects_bad_definitions() {
        let bad = [
            spec("e", &[1.0], 0.0),
            spec("e", &[], 0.0),
            spec("e", &[1.0, -0.5], 0.0),
            spec("e", &[1.0, f64::NAN], 0.0),
            spec("e", &[1.0, f64::INFINITY], 0.0),
            spec("e", &[0.0, 0.0], 0.0),
            spec("e", &[f64::MAX, f64::MAX], 0.0),
            spec("e", &[1.0, 1.0], 1.0),
            spec("e", &[1.0, 1.0], -0.1),
            spec("e", &[1.0, 1.0], f64::NAN),
            spec("", &[1.0, 1.0], 0.0),
        ];
        for s in bad {
            assert!(Experiment::new(s.clone()).is_err(), "accepted {s:?}");
        }
        let mut dup = spec("e", &[1.0, 1.0], 0.0);
        dup.variants[1].name = "v0".into();
        assert!(Experiment::new(dup).is_err());
        let mut unknown = spec("e", &[1.0, 1.0], 0.0);
        unknown.overrides.insert("qa".into(), "v7".into());
        let err = Experiment::new(unknown).unwrap_err();
        assert!(err.message.contains("v7"), "{err}");
    }

    #[test]
    fn weights_are_normalized_and_parse_from_json() {
        let e = exp("e", &[1.0, 3.0], 0.0);
        assert_eq!(e.weights(), &[0.25, 0.75]);
        let s: ExperimentSpec = serde_json::from_str(
            r#"{"id": "e", "variants": [{"name": "control"}, {"name": "new", "weight": 3}],
                "holdout": 0.1, "overrides": {"qa-1": "new"}}"#,
        )
        .unwrap();
        let e = Experiment::new(s).unwrap();
        assert_eq!(e.weights(), &[0.25, 0.75]);
        assert_eq!(e.variant_index("new"), Some(1));
        assert_eq!(e.assign("qa-1"), Assignment::Override(1));
    }

    #[test]
    fn split_is_within_one_percent_of_the_configuration() {
        // 100k users, weights 5:3:2 after a 10 % holdout: each share within ±0.01 of the
        // configured one (its standard deviation is ≤ 0.0016).
        let e = exp("split", &[5.0, 3.0, 2.0], 0.1);
        let mut counts = [0usize; 3];
        let mut holdout = 0usize;
        for u in 0..USERS {
            match e.assign(&user(u)) {
                Assignment::Variant(i) => counts[i] += 1,
                Assignment::Holdout => holdout += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        let share = |c: usize| c as f64 / USERS as f64;
        assert!((share(holdout) - 0.1).abs() < 0.01, "holdout {holdout}");
        for (c, expected) in counts.iter().zip([0.45, 0.27, 0.18]) {
            assert!((share(*c) - expected).abs() < 0.01, "{counts:?}");
        }
    }

    #[test]
    fn zero_weight_variants_get_nobody() {
        for weights in [[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0]] {
            let e = exp("zero", &weights, 0.0);
            let zero = weights.iter().position(|&w| w == 0.0).unwrap();
            for u in 0..10_000 {
                assert_ne!(e.assign(&user(u)), Assignment::Variant(zero), "{weights:?}");
            }
        }
    }

    #[test]
    fn assignment_is_stable_and_pinned() {
        let e = exp("stable", &[1.0, 1.0], 0.0);
        let again = exp("stable", &[1.0, 1.0], 0.0);
        for u in 0..1_000 {
            assert_eq!(e.assign(&user(u)), again.assign(&user(u)));
        }
        // Golden values: these users' variants must never change.
        let got: Vec<Assignment> = (0..8).map(|u| e.assign(&user(u))).collect();
        assert_eq!(got, GOLDEN);
    }
    // From a separate Python transcription of the hash (bucket < 0.5 → v0).
    const GOLDEN: [Assignment; 8] = {
        use Assignment::Variant as V;
        [V(1), V(0), V(1), V(1), V(0), V(0), V(1), V(1)]
    };

    #[test]
    fn experiments_are_decorrelated() {
        // Two 50/50 experiments over the same users: each of the four combinations
        // holds a quarter of the users (±0.01), so one's split says nothing of the other's.
        let a = exp("exp-a", &[1.0, 1.0], 0.0);
        let b = exp("exp-b", &[1.0, 1.0], 0.0);
        let mut table = [[0usize; 2]; 2];
        for u in 0..USERS {
            let (Some(i), Some(j)) = (a.assign(&user(u)).variant(), b.assign(&user(u)).variant())
            else {
                panic!("no variant");
            };
            table[i][j] += 1;
        }
        for row in table {
            for c in row {
                assert!((c as f64 / USERS as f64 - 0.25).abs() < 0.01, "{table:?}");
            }
        }
    }

    #[test]
    fn changing_the_holdout_moves_nobody_between_variants() {
        let small = exp("h", &[1.0, 1.0, 1.0], 0.1);
        let large = exp("h", &[1.0, 1.0, 1.0], 0.3);
        let mut left = 0;
        for u in 0..20_000 {
            match (small.assign(&user(u)), large.assign(&user(u))) {
                (Assignment::Variant(i), Assignment::Variant(j)) => assert_eq!(i, j),
                (Assignment::Holdout, Assignment::Variant(_)) => {
                    panic!("a larger holdout released a user")
                }
                (Assignment::Variant(_), Assignment::Holdout) => left += 1,
                _ => {}
            }
        }
        // About 20 % of the users moved into the holdout.
        assert!((left as f64 / 20_000.0 - 0.2).abs() < 0.02, "{left}");
    }

    #[test]
    fn overrides_come_first_and_are_not_analyzed() {
        let mut s = spec("o", &[1.0, 1.0], 0.5);
        for u in 0..100 {
            s.overrides.insert(user(u), "v1".into());
        }
        let e = Experiment::new(s).unwrap();
        for u in 0..100 {
            let a = e.assign(&user(u));
            assert_eq!(a, Assignment::Override(1));
            assert_eq!(a.variant(), Some(1));
            assert!(!a.is_analyzed());
        }
        assert!(Assignment::Variant(0).is_analyzed());
        assert!(!Assignment::Holdout.is_analyzed());
        assert_eq!(Assignment::Holdout.variant(), None);
    }

    fn layer(id: &str, ranges: &[(f64, f64)]) -> Result<Layer, ValidationError> {
        Layer::new(LayerSpec {
            id: id.to_owned(),
            experiments: ranges
                .iter()
                .enumerate()
                .map(|(i, &(lo, hi))| LayerSlotSpec {
                    range: [lo, hi],
                    experiment: spec(&format!("{id}-e{i}"), &[1.0, 1.0], 0.0),
                })
                .collect(),
        })
    }

    #[test]
    fn layer_validation_rejects_overlaps_and_bad_ranges() {
        assert!(layer("l", &[(0.0, 0.5), (0.5, 1.0)]).is_ok());
        assert!(layer("l", &[(0.5, 1.0), (0.0, 0.6)]).is_err());
        assert!(layer("l", &[(0.2, 0.2)]).is_err());
        assert!(layer("l", &[(-0.1, 0.2)]).is_err());
        assert!(layer("l", &[(0.0, 1.1)]).is_err());
        assert!(layer("l", &[(0.0, f64::NAN)]).is_err());
        let mut twice = LayerSpec {
            id: "l".into(),
            experiments: vec![],
        };
        for r in [[0.0, 0.5], [0.5, 1.0]] {
            twice.experiments.push(LayerSlotSpec {
                range: r,
                experiment: spec("same", &[1.0, 1.0], 0.0),
            });
        }
        assert!(Layer::new(twice).is_err());
    }

    #[test]
    fn layer_experiments_are_exclusive_and_get_their_ranges() {
        // Ranges 0.3 + 0.2 + 0.4 with a gap of 0.1 at [0.5, 0.6).
        let l = layer("lay", &[(0.0, 0.3), (0.3, 0.5), (0.6, 1.0)]).unwrap();
        let ids: Vec<&str> = l.slots().iter().map(|s| s.experiment.id()).collect();
        let mut counts = [0usize; 4];
        for u in 0..USERS {
            let uid = user(u);
            let enrolled: Vec<usize> = ids
                .iter()
                .enumerate()
                .filter(|(_, e)| l.assign_in(e, &uid) != Some(Assignment::NotEnrolled))
                .map(|(i, _)| i)
                .collect();
            assert!(enrolled.len() <= 1, "{uid} is in {enrolled:?}");
            match enrolled.first() {
                Some(&i) => {
                    counts[i] += 1;
                    assert_eq!(l.assign(&uid).map(|(e, _)| e.id()), Some(ids[i]));
                }
                None => {
                    counts[3] += 1;
                    assert!(l.assign(&uid).is_none());
                }
            }
        }
        for (c, expected) in counts.iter().zip([0.3, 0.2, 0.4, 0.1]) {
            assert!(
                (*c as f64 / USERS as f64 - expected).abs() < 0.01,
                "{counts:?}"
            );
        }
        assert_eq!(l.assign_in("nope", "u"), None);
    }

    #[test]
    fn variants_split_evenly_inside_a_layer_range_and_layers_are_orthogonal() {
        let l1 = layer("one", &[(0.0, 0.5)]).unwrap();
        let l2 = layer("two", &[(0.0, 0.5)]).unwrap();
        let mut in_both = 0usize;
        let mut variants = [0usize; 2];
        for u in 0..USERS {
            let uid = user(u);
            let a = l1.assign(&uid);
            if let Some((_, Assignment::Variant(i))) = a {
                variants[i] += 1;
            }
            if a.is_some() && l2.assign(&uid).is_some() {
                in_both += 1;
            }
        }
        // Half of the layer's half each; a quarter in both layers' experiments.
        for c in variants {
            assert!(
                (c as f64 / USERS as f64 - 0.25).abs() < 0.01,
                "{variants:?}"
            );
        }
        assert!(
            (in_both as f64 / USERS as f64 - 0.25).abs() < 0.01,
            "{in_both}"
        );
    }

    #[test]
    fn an_override_takes_a_user_into_its_experiment_of_the_layer() {
        let mut s = LayerSpec {
            id: "qa".into(),
            experiments: vec![
                LayerSlotSpec {
                    range: [0.0, 0.5],
                    experiment: spec("first", &[1.0, 1.0], 0.0),
                },
                LayerSlotSpec {
                    range: [0.5, 1.0],
                    experiment: spec("second", &[1.0, 1.0], 0.0),
                },
            ],
        };
        // A user whose layer point is in the first experiment's range...
        let uid = (0..)
            .map(user)
            .find(|u| layer_bucket("qa", u) < 0.5)
            .unwrap();
        s.experiments[1]
            .experiment
            .overrides
            .insert(uid.clone(), "v1".into());
        let l = Layer::new(s).unwrap();
        // ...is forced into the second, and so is not in the first.
        let (e, a) = l.assign(&uid).unwrap();
        assert_eq!((e.id(), a), ("second", Assignment::Override(1)));
        assert_eq!(l.assign_in("first", &uid), Some(Assignment::NotEnrolled));
    }
}
