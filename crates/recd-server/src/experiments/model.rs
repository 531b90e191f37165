//! What strategies and experiments are, as configured and as stored: the definitions every
//! server of a deployment shares, validated once here.

use std::collections::BTreeMap;

use recd_core::ValidationError;
use recd_core::experiment::{
    Experiment, ExperimentSpec, Layer, LayerSlotSpec, LayerSpec, VariantSpec,
};
use recd_core::id::validate_id;
use recd_core::pipeline::{Diversity, RankParams};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The strategy that always exists: the configured `[ranking]`.
pub const DEFAULT_STRATEGY: &str = "default";

/// A named ranking configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Strategy {
    /// Candidate sources and their sizes, scoring weights, real-time blend: the keys of
    /// `[ranking]` (candidates, popular_candidates, transitions_candidates,
    /// transitions_weight, session_share_max, session_saturation, similarity_weight,
    /// popularity_weight, exclude_seen, rrf_k, ranker).
    #[schema(value_type = Object)]
    pub ranking: RankParams,
    /// A diversity cap applied when the request gives none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::openapi::shapes::diversity)]
    pub diversity: Option<Diversity>,
    /// The model version it serves; only the live model exists today (`"live"`).
    #[serde(default = "live")]
    pub model: String,
}

fn live() -> String {
    "live".into()
}

impl Strategy {
    /// The default strategy over `ranking`.
    pub fn from_ranking(ranking: RankParams) -> Self {
        Strategy {
            ranking,
            diversity: None,
            model: live(),
        }
    }

    /// Parses a strategy body: `{"ranking":{...}, "diversity":{...}?, "model":"live"?}`, where
    /// `ranking` gives only the keys that differ from `base` (the configured `[ranking]`).
    pub fn from_json(body: &Value, base: &RankParams) -> Result<Strategy, ValidationError> {
        let Value::Object(map) = body else {
            return Err(ValidationError::new("a strategy must be a JSON object"));
        };
        if let Some(key) = map
            .keys()
            .find(|k| !matches!(k.as_str(), "ranking" | "diversity" | "model"))
        {
            return Err(ValidationError::new(format!(
                "unknown strategy field '{key}' (ranking, diversity, model)"
            )));
        }
        let mut ranking = serde_json::to_value(base)
            .map_err(|e| ValidationError::new(format!("ranking: {e}")))?;
        match (map.get("ranking"), &mut ranking) {
            (None | Some(Value::Null), _) => {}
            (Some(Value::Object(over)), Value::Object(into)) => {
                for (k, v) in over {
                    into.insert(k.clone(), whole(v));
                }
            }
            _ => return Err(ValidationError::new("'ranking' must be an object")),
        }
        let ranking: RankParams = serde_json::from_value(ranking)
            .map_err(|e| ValidationError::new(format!("ranking: {e}")))?;
        check_ranking(&ranking)?;
        let diversity = match map.get("diversity") {
            None | Some(Value::Null) => None,
            Some(d) => Some(
                serde_json::from_value::<Diversity>(whole_counts(d))
                    .map_err(|e| ValidationError::new(format!("diversity: {e}")))?,
            ),
        };
        if diversity.as_ref().is_some_and(|d| d.max_per_value == 0) {
            return Err(ValidationError::new(
                "'diversity.max_per_value' must be at least 1",
            ));
        }
        let model = match map.get("model") {
            None | Some(Value::Null) => live(),
            Some(Value::String(m)) if m == "live" => m.clone(),
            Some(other) => {
                return Err(ValidationError::new(format!(
                    "model {other} is not available (only \"live\" is, until model versions exist)"
                )));
            }
        };
        Ok(Strategy {
            ranking,
            diversity,
            model,
        })
    }
}

/// A count spelled `6.0` as `6` (anything else as it is): JSON Schema's `integer` (what
/// the document says the counts are) takes both, serde's `usize` only the first.
pub(crate) fn whole(v: &Value) -> Value {
    match v.as_f64() {
        Some(f) if v.is_f64() && f >= 0.0 && f.fract() == 0.0 && f < u64::MAX as f64 => {
            Value::from(f as u64)
        }
        _ => v.clone(),
    }
}

/// A diversity object with `max_per_value` passed through [`whole`].
pub(crate) fn whole_counts(d: &Value) -> Value {
    let mut d = d.clone();
    if let Some(n) = d.get_mut("max_per_value") {
        *n = whole(n);
    }
    d
}

/// Ranking settings that parse but cannot work.
pub fn check_ranking(r: &RankParams) -> Result<(), ValidationError> {
    if r.candidates == 0 || r.candidates > 10_000 {
        return Err(ValidationError::new(
            "ranking.candidates must be 1 to 10000",
        ));
    }
    if r.popular_candidates > 10_000 {
        return Err(ValidationError::new(
            "ranking.popular_candidates must be at most 10000",
        ));
    }
    if r.transitions_candidates > 10_000 {
        return Err(ValidationError::new(
            "ranking.transitions_candidates must be at most 10000",
        ));
    }
    // Weights may be negative (e.g. to push popular items down), never NaN or infinite.
    let weights = [
        r.session_saturation,
        r.similarity_weight,
        r.popularity_weight,
        r.transitions_weight,
        r.rrf_k,
    ];
    if weights.iter().any(|x| !x.is_finite()) {
        return Err(ValidationError::new(
            "ranking weights must be finite numbers",
        ));
    }
    if !(0.0..=1.0).contains(&r.session_share_max) {
        return Err(ValidationError::new(
            "ranking.session_share_max must be between 0 and 1",
        ));
    }
    if let Some(name) = &r.ranker {
        crate::features::check_ranker_name(name)?;
    }
    Ok(())
}

/// How an experiment decides what a user sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = ExperimentKind)]
pub enum Kind {
    /// Fixed traffic weights; users keep their variant.
    Ab,
    /// Thompson sampling per request, moving traffic to the variant that gets clicked.
    Bandit,
    /// Two strategies interleaved (team draft) into every list.
    Interleaving,
}

/// What an experiment is judged by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = ExperimentMetric)]
pub enum Metric {
    /// A list is clicked.
    #[default]
    Click,
    /// A listed item is bought.
    Conversion,
}

/// Running or stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = ExperimentStatus)]
pub enum Status {
    /// Assigning users.
    Running,
    /// No longer assigning; results stay.
    Stopped,
}

/// One variant: a strategy and its share of traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VariantDef {
    /// Unique in the experiment; the first is the control.
    pub name: String,
    /// The strategy it serves.
    pub strategy: String,
    /// Relative share of the experiment's traffic (A/B).
    #[serde(default = "one")]
    pub weight: f64,
}

fn one() -> f64 {
    1.0
}

fn main_layer() -> String {
    "main".into()
}

fn default_explore() -> f64 {
    0.05
}

fn default_mde() -> f64 {
    0.05
}

/// An experiment as created through `POST /v1/experiments`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExperimentRequest {
    /// Its id.
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub id: String,
    /// `ab`, `bandit` or `interleaving`.
    pub kind: Kind,
    /// At least two variants (exactly two for interleaving); the first is the control.
    #[schema(min_items = 2)]
    pub variants: Vec<VariantDef>,
    /// Share of its users who see the default strategy and are not analyzed.
    #[serde(default)]
    pub holdout: f64,
    /// The metric it is judged by.
    #[serde(default)]
    pub metric: Metric,
    /// Experiments of one layer never share a user.
    #[serde(default = "main_layer")]
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub layer: String,
    /// Its share of the layer's users; by default whatever the layer has left.
    #[serde(default)]
    pub traffic: Option<f64>,
    /// Users forced into a variant (QA): shown it, not analyzed.
    #[serde(default)]
    pub overrides: BTreeMap<String, String>,
    /// Bandits: the least share of traffic spread uniformly over the variants.
    #[serde(default = "default_explore")]
    pub min_explore: f64,
    /// The minimum detectable effect (relative lift) the sample size is planned for.
    #[serde(default = "default_mde")]
    pub mde: f64,
    /// Mixing variance τ² of the always-valid p-value; by default (mde · baseline)².
    #[serde(default)]
    pub msprt_tau2: Option<f64>,
}

/// A stored experiment: the request, where it sits in its layer, and its lifecycle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentDef {
    /// As created.
    #[serde(flatten)]
    pub spec: ExperimentRequest,
    /// Its range of the layer's buckets, `[lo, hi)`.
    pub range: [f64; 2],
    /// Running or stopped.
    pub status: Status,
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339, once stopped.
    #[serde(default)]
    pub stopped_at: Option<String>,
}

// Derived, the request's `additionalProperties: false` (deny_unknown_fields) inside the
// `allOf` of the flattened spec would refuse this type's own fields: its schema is the
// request's properties plus its own, built from the same types.
impl utoipa::PartialSchema for ExperimentDef {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        use utoipa::openapi::{RefOr, Schema};
        let RefOr::T(Schema::Object(mut object)) =
            <ExperimentRequest as utoipa::PartialSchema>::schema()
        else {
            return <ExperimentRequest as utoipa::PartialSchema>::schema();
        };
        object.additional_properties = None;
        let own = serde_json::json!({
            "range": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2,
                "description": "Its range of the layer's buckets, [lo, hi)"},
            "status": {"$ref": "#/components/schemas/ExperimentStatus"},
            "started_at": {"type": "string", "description": "RFC 3339"},
            "stopped_at": {"type": ["string", "null"], "description": "RFC 3339, once stopped"},
        });
        if let Ok(own) =
            serde_json::from_value::<std::collections::BTreeMap<String, RefOr<Schema>>>(own)
        {
            object.properties.extend(own);
        }
        object
            .required
            .extend(["range", "status", "started_at"].map(String::from));
        object.description = Some(
            "An experiment as stored: the request, its range of the layer, its lifecycle".into(),
        );
        RefOr::T(Schema::Object(object))
    }
}

impl utoipa::ToSchema for ExperimentDef {
    fn schemas(schemas: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::Schema>)>) {
        schemas.push((
            "ExperimentStatus".into(),
            <Status as utoipa::PartialSchema>::schema(),
        ));
        <ExperimentRequest as utoipa::ToSchema>::schemas(schemas);
    }
}

impl ExperimentDef {
    /// The assignment spec of this experiment.
    pub fn assignment_spec(&self) -> ExperimentSpec {
        ExperimentSpec {
            id: self.spec.id.clone(),
            variants: self
                .spec
                .variants
                .iter()
                .map(|v| VariantSpec {
                    name: v.name.clone(),
                    weight: v.weight,
                })
                .collect(),
            holdout: self.spec.holdout,
            overrides: self.spec.overrides.clone(),
        }
    }

    /// The assignment core of this experiment.
    pub fn assigner(&self) -> Result<Experiment, ValidationError> {
        Experiment::new(self.assignment_spec())
    }
}

/// Everything a deployment's servers share about strategies and experiments.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Definitions {
    /// Named strategies (besides `default`, which is the configured `[ranking]`).
    pub strategies: BTreeMap<String, Strategy>,
    /// Experiments by id, running and stopped.
    pub experiments: BTreeMap<String, ExperimentDef>,
}

impl Definitions {
    /// Validates a new experiment against the definitions and places it in its layer.
    pub fn admit(
        &self,
        spec: ExperimentRequest,
        started_at: String,
    ) -> Result<ExperimentDef, ValidationError> {
        validate_id(&spec.id, "experiment id")?;
        validate_id(&spec.layer, "layer")?;
        if self.experiments.contains_key(&spec.id) {
            return Err(ValidationError::new(format!(
                "experiment '{}' already exists (ids are never reused: results stay)",
                spec.id
            )));
        }
        for v in &spec.variants {
            if v.strategy != DEFAULT_STRATEGY && !self.strategies.contains_key(&v.strategy) {
                return Err(ValidationError::new(format!(
                    "variant '{}' names strategy '{}', which does not exist (PUT /v1/strategies/{} first)",
                    v.name, v.strategy, v.strategy
                )));
            }
        }
        if spec.kind == Kind::Interleaving && spec.variants.len() != 2 {
            return Err(ValidationError::new(
                "an interleaving experiment has exactly two variants",
            ));
        }
        if spec.kind != Kind::Ab && spec.holdout > 0.0 {
            return Err(ValidationError::new(
                "a holdout is for A/B experiments only",
            ));
        }
        if !(0.0..=1.0).contains(&spec.min_explore) {
            return Err(ValidationError::new("'min_explore' must be in [0, 1]"));
        }
        if !(spec.mde > 0.0 && spec.mde.is_finite()) {
            return Err(ValidationError::new("'mde' must be a positive number"));
        }
        if spec.msprt_tau2.is_some_and(|t| !(t > 0.0 && t.is_finite())) {
            return Err(ValidationError::new(
                "'msprt_tau2' must be a positive number",
            ));
        }
        // The layer's free share: running experiments keep theirs, stopped ones free it.
        let lo = self
            .experiments
            .values()
            .filter(|e| e.spec.layer == spec.layer && e.status == Status::Running)
            .map(|e| e.range[1])
            .fold(0.0, f64::max);
        let free = 1.0 - lo;
        let share = spec.traffic.unwrap_or(free);
        if !(share > 0.0 && share <= free + 1e-12) {
            return Err(ValidationError::new(format!(
                "layer '{}' has {free:.3} of its users free; 'traffic' {share} does not fit \
                 (stop an experiment of the layer, or use another 'layer')",
                spec.layer
            )));
        }
        let def = ExperimentDef {
            range: [lo, (lo + share).min(1.0)],
            spec,
            status: Status::Running,
            started_at,
            stopped_at: None,
        };
        def.assigner()?;
        Ok(def)
    }

    /// The running experiments as layers (sorted by layer name), for assignment.
    pub fn layers(&self) -> Vec<Layer> {
        let mut by_layer: BTreeMap<&str, Vec<&ExperimentDef>> = BTreeMap::new();
        for e in self.experiments.values() {
            if e.status == Status::Running {
                by_layer.entry(&e.spec.layer).or_default().push(e);
            }
        }
        by_layer
            .into_iter()
            .filter_map(|(layer, exps)| {
                let spec = LayerSpec {
                    id: layer.to_string(),
                    experiments: exps
                        .iter()
                        .map(|e| LayerSlotSpec {
                            range: e.range,
                            experiment: e.assignment_spec(),
                        })
                        .collect(),
                };
                match Layer::new(spec) {
                    Ok(l) => Some(l),
                    Err(e) => {
                        tracing::error!(layer, cause = %e.message, "experiment layer is invalid; skipped");
                        None
                    }
                }
            })
            .collect()
    }
}
