//! Feature definitions: what the config's `[features.NAME]` tables say, validated against
//! the item schema into a [`FeatureSet`] (one order, one meaning, shared by the online
//! stores, the offline export and the ranker).
//!
//! ```toml
//! [features.user_cat_clicks_24h]
//! kind = "count"          # count | sum | distinct | recency | ctr | conversion | field
//! entity = "user_tag"     # user | item | user_tag (count, sum, distinct); user | item (recency)
//! field = "category"      # user_tag: a tag field; field: a numeric or bool field
//! event = "click"         # count, sum, distinct, recency: the event type
//! window = "24h"          # count, sum, distinct, ctr, conversion: <n>s | <n>m | <n>h | <n>d
//! buckets = 24            # optional: the window's resolution (default 24)
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::event::EventType;
use crate::features::window::Window;
use crate::invalid;
use crate::schema::{FieldType, Schema};

/// How many buckets a window has unless `buckets` says otherwise.
pub const DEFAULT_BUCKETS: u32 = 24;
/// The most buckets a window may have (memory per slot is bounded by it).
pub const MAX_BUCKETS: u32 = 1024;
/// Recency is reported in hours and capped here (also the value of "never").
pub const RECENCY_CAP_HOURS: f64 = 720.0;
/// Rates are smoothed toward `PRIOR_SUCCESSES / PRIOR_TRIALS` (5 %), so that an item
/// shown twice and clicked once is not rated 50 %.
pub const PRIOR_SUCCESSES: f64 = 1.0;
/// See [`PRIOR_SUCCESSES`].
pub const PRIOR_TRIALS: f64 = 20.0;

/// One `[features.NAME]` table as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureSpec {
    /// count | sum | distinct | recency | ctr | conversion | field.
    pub kind: SpecKind,
    /// user | item | user_tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity: Option<EntityKind>,
    /// The event type counted, summed or timed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<EventType>,
    /// The window: `90s`, `30m`, `1h`, `24h`, `7d`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// The tag field of `user_tag`, or the item field of `field`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The window's resolution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buckets: Option<u32>,
}

/// The `kind` of a [`FeatureSpec`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpecKind {
    /// Events of a type in a window.
    Count,
    /// The sum of events' `value` (dwell seconds, ratings) in a window.
    Sum,
    /// Distinct counterparts of events of a type in a window: a user's distinct items, an
    /// item's distinct users ([`crate::features::distinct`]).
    Distinct,
    /// Hours since the last event of a type.
    Recency,
    /// An item's clicks per impression in a window (smoothed).
    Ctr,
    /// An item's purchases per impression in a window (smoothed).
    Conversion,
    /// A numeric or bool item field as it is.
    Field,
}

/// The `entity` of a [`FeatureSpec`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    /// Per user.
    User,
    /// Per item.
    Item,
    /// Per user and value of an item tag field (a user's clicks per category).
    UserTag,
}

/// Whose state a windowed feature or a recency lives in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Entity {
    /// The user's.
    User,
    /// The item's.
    Item,
    /// The user's, one slot per value of this tag field; read for an item as the sum over
    /// the item's values.
    UserTag(String),
}

/// A validated feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FeatureKind {
    /// Count (`sum: false`) or sum of values (`sum: true`) of `event` in `window`.
    Windowed {
        /// Whose.
        entity: Entity,
        /// Which events.
        event: EventType,
        /// Sum the values instead of counting.
        sum: bool,
        /// Over what window.
        window: Window,
    },
    /// Hours since the user's or item's last `event`, capped at [`RECENCY_CAP_HOURS`].
    Recency {
        /// User or item.
        entity: Entity,
        /// Which events.
        event: EventType,
    },
    /// An item's `(events + 1) / (max(impressions, events) + 20)` in `window`.
    Rate {
        /// Click (CTR) or purchase (conversion).
        event: EventType,
        /// Over what window.
        window: Window,
    },
    /// How many distinct items (a user's, or a user's per tag value, read for an item as
    /// the sum over its values) or users (an item's) had `event` in `window`: exact below
    /// [`crate::features::distinct::SKETCH`], estimated above it.
    Distinct {
        /// User or item.
        entity: Entity,
        /// Which events.
        event: EventType,
        /// Over what window.
        window: Window,
    },
    /// An item field: numbers as they are, bools as 0/1, absent as 0.
    Field {
        /// The field.
        field: String,
    },
}

/// One feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureDef {
    /// Its name (the config table's).
    pub name: String,
    /// What it computes.
    pub kind: FeatureKind,
}

impl FeatureDef {
    /// Whether the value is a non-negative count-like quantity (the ranker takes its log).
    pub fn is_count_like(&self) -> bool {
        matches!(
            self.kind,
            FeatureKind::Windowed { .. }
                | FeatureKind::Recency { .. }
                | FeatureKind::Distinct { .. }
        )
    }
}

/// The validated feature set, in name order, and how long idle state is kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSet {
    /// The features; a feature's index here is its slot id in stored state.
    pub defs: Vec<FeatureDef>,
    /// State untouched (no event) for this long is dropped: the longest window, or 7 days
    /// when there is none.
    pub ttl_ms: i64,
    /// FNV-1a of the definitions' JSON, 8 hex digits: stored state is keyed by it, so a
    /// changed definition starts afresh instead of reading another feature's slots.
    fingerprint: String,
}

fn fingerprint(defs: &[FeatureDef]) -> String {
    let json = serde_json::to_string(defs).unwrap_or_default();
    let mut h: u32 = 0x811c_9dc5;
    for b in json.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{h:08x}")
}

/// Parses `90s`, `30m`, `1h`, `24h`, `7d` into milliseconds.
pub fn parse_duration(s: &str) -> Result<i64, ValidationError> {
    let s = s.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = match digits.parse() {
        Ok(n) if n > 0 && n <= 10_000 => n,
        _ => {
            return invalid!(
                "window '{s}' must be a number from 1 to 10000 and a unit (s, m, h, d)"
            );
        }
    };
    let unit_ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return invalid!("window '{s}' must end in s, m, h or d"),
    };
    Ok(n * unit_ms)
}

impl FeatureSet {
    /// An empty set (no features: the learned ranker then sees retrieval signals only).
    pub fn empty() -> Self {
        Self {
            defs: Vec::new(),
            ttl_ms: 7 * 86_400_000,
            fingerprint: fingerprint(&[]),
        }
    }

    /// Validates `specs` (name → table) against `schema`.
    pub fn from_specs(
        specs: &BTreeMap<String, FeatureSpec>,
        schema: &Schema,
    ) -> Result<Self, ValidationError> {
        if specs.len() > usize::from(u16::MAX) {
            return invalid!("at most {} features", u16::MAX);
        }
        let mut defs = Vec::with_capacity(specs.len());
        for (name, spec) in specs {
            let kind = validate(name, spec, schema)
                .map_err(|e| ValidationError::new(format!("features.{name}: {}", e.message)))?;
            defs.push(FeatureDef {
                name: name.clone(),
                kind,
            });
        }
        let ttl_ms = defs
            .iter()
            .filter_map(|d| match &d.kind {
                FeatureKind::Windowed { window, .. }
                | FeatureKind::Rate { window, .. }
                | FeatureKind::Distinct { window, .. } => Some(window.width_ms),
                _ => None,
            })
            .max()
            .unwrap_or(7 * 86_400_000);
        let fingerprint = fingerprint(&defs);
        Ok(Self {
            defs,
            ttl_ms,
            fingerprint,
        })
    }

    /// The set used when the config has no `[features]`: a user's clicks and views in
    /// 24 h, their clicks and views per value of the schema's `category` tag field (else
    /// its first tag field) in 24 h and 7 d, hours since their last click, and an item's
    /// clicks in 24 h and CTR in 7 d.
    pub fn default_for(schema: &Schema) -> Self {
        let spec = |kind, entity, event, window: &str, field: Option<&str>| FeatureSpec {
            kind,
            entity,
            event,
            window: (!window.is_empty()).then(|| window.to_string()),
            field: field.map(str::to_string),
            buckets: None,
        };
        use EntityKind::*;
        use SpecKind::*;
        let mut specs = BTreeMap::new();
        specs.insert(
            "user_clicks_24h".into(),
            spec(Count, Some(User), Some(EventType::Click), "24h", None),
        );
        specs.insert(
            "user_views_24h".into(),
            spec(Count, Some(User), Some(EventType::View), "24h", None),
        );
        specs.insert(
            "user_last_click_hours".into(),
            spec(Recency, Some(User), Some(EventType::Click), "", None),
        );
        specs.insert(
            "item_clicks_24h".into(),
            spec(Count, Some(Item), Some(EventType::Click), "24h", None),
        );
        specs.insert("item_ctr_7d".into(), spec(Ctr, None, None, "7d", None));
        let tag = schema
            .field("category")
            .filter(|t| *t == FieldType::Tag)
            .map(|_| "category")
            .or_else(|| schema.fields_of(FieldType::Tag).next());
        if let Some(tag) = tag {
            for (name, event, window) in [
                ("user_tag_clicks_24h", EventType::Click, "24h"),
                ("user_tag_clicks_7d", EventType::Click, "7d"),
                ("user_tag_views_7d", EventType::View, "7d"),
            ] {
                specs.insert(
                    name.into(),
                    spec(Count, Some(UserTag), Some(event), window, Some(tag)),
                );
            }
        }
        Self::from_specs(&specs, schema).unwrap_or_else(|_| Self::empty())
    }

    /// A short, stable fingerprint of the definitions (see [`FeatureSet::fingerprint`]).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The features' names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.defs.iter().map(|d| d.name.as_str())
    }

    /// How many features.
    pub fn len(&self) -> usize {
        self.defs.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.defs.is_empty()
    }
}

fn window_of(spec: &FeatureSpec) -> Result<Window, ValidationError> {
    let Some(w) = &spec.window else {
        return invalid!("needs a window (e.g. window = \"24h\")");
    };
    let width_ms = parse_duration(w)?;
    let buckets = spec.buckets.unwrap_or(DEFAULT_BUCKETS);
    if buckets == 0 || buckets > MAX_BUCKETS {
        return invalid!("buckets must be from 1 to {MAX_BUCKETS}");
    }
    if width_ms % i64::from(buckets) != 0 {
        return invalid!("window {w} does not split into {buckets} whole-millisecond buckets");
    }
    Ok(Window { width_ms, buckets })
}

/// The entity of a windowed kind (count, sum, distinct): user, item, or user_tag with a tag
/// field of the schema; `missing` is the message when none is given.
fn windowed_entity(
    spec: &FeatureSpec,
    schema: &Schema,
    missing: &str,
) -> Result<Entity, ValidationError> {
    match (spec.entity, &spec.field) {
        (Some(EntityKind::User), None) => Ok(Entity::User),
        (Some(EntityKind::Item), None) => Ok(Entity::Item),
        (Some(EntityKind::UserTag), Some(f)) => {
            if schema.field(f) != Some(FieldType::Tag) {
                return invalid!("field '{f}' is not a tag field of the schema");
            }
            Ok(Entity::UserTag(f.clone()))
        }
        (Some(EntityKind::UserTag), None) => {
            invalid!("user_tag needs a tag field (field = \"category\")")
        }
        (Some(_), Some(_)) => invalid!("'field' applies to entity user_tag only"),
        (None, _) => Err(ValidationError::new(missing)),
    }
}

fn validate(
    name: &str,
    spec: &FeatureSpec,
    schema: &Schema,
) -> Result<FeatureKind, ValidationError> {
    let ok_name = name.len() <= 64
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok_name {
        return invalid!("a feature name must be an identifier of at most 64 characters");
    }
    let unused = |what: &str, present: bool| -> Result<(), ValidationError> {
        if present {
            invalid!("'{what}' does not apply to kind {:?}", spec.kind)
        } else {
            Ok(())
        }
    };
    let event = || {
        spec.event
            .ok_or_else(|| ValidationError::new("needs an event type (event = \"click\")"))
    };
    match spec.kind {
        SpecKind::Count | SpecKind::Sum => {
            let entity = windowed_entity(spec, schema, "needs an entity (user, item or user_tag)")?;
            Ok(FeatureKind::Windowed {
                entity,
                event: event()?,
                sum: spec.kind == SpecKind::Sum,
                window: window_of(spec)?,
            })
        }
        SpecKind::Distinct => {
            let entity = windowed_entity(
                spec,
                schema,
                "distinct needs an entity: user (its items), item (its users) or user_tag (its \
                 items per tag value)",
            )?;
            Ok(FeatureKind::Distinct {
                entity,
                event: event()?,
                window: window_of(spec)?,
            })
        }
        SpecKind::Recency => {
            unused("window", spec.window.is_some())?;
            unused("field", spec.field.is_some())?;
            unused("buckets", spec.buckets.is_some())?;
            let entity = match spec.entity {
                Some(EntityKind::User) => Entity::User,
                Some(EntityKind::Item) => Entity::Item,
                _ => return invalid!("recency needs entity user or item"),
            };
            Ok(FeatureKind::Recency {
                entity,
                event: event()?,
            })
        }
        SpecKind::Ctr | SpecKind::Conversion => {
            unused("entity", spec.entity.is_some())?;
            unused("event", spec.event.is_some())?;
            unused("field", spec.field.is_some())?;
            Ok(FeatureKind::Rate {
                event: if spec.kind == SpecKind::Ctr {
                    EventType::Click
                } else {
                    EventType::Purchase
                },
                window: window_of(spec)?,
            })
        }
        SpecKind::Field => {
            unused("entity", spec.entity.is_some())?;
            unused("event", spec.event.is_some())?;
            unused("window", spec.window.is_some())?;
            unused("buckets", spec.buckets.is_some())?;
            let Some(f) = &spec.field else {
                return invalid!("needs a field");
            };
            match schema.field(f) {
                Some(FieldType::Numeric | FieldType::Bool) => {
                    Ok(FeatureKind::Field { field: f.clone() })
                }
                _ => invalid!("field '{f}' is not a numeric or bool field of the schema"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_like: &str) -> Result<FeatureSet, ValidationError> {
        let specs: BTreeMap<String, FeatureSpec> = serde_json::from_str(toml_like).unwrap();
        FeatureSet::from_specs(&specs, &Schema::demo(4))
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap(), 90_000);
        assert_eq!(parse_duration("24h").unwrap(), 86_400_000);
        assert_eq!(parse_duration("7d").unwrap(), 604_800_000);
        for bad in ["", "h", "0h", "1w", "-1h", "1.5h", "99999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn valid_set_is_ordered_and_ttl_is_the_longest_window() {
        let set = parse(
            r#"{"b":{"kind":"count","entity":"user_tag","field":"category","event":"click","window":"24h"},
                "a":{"kind":"ctr","window":"7d","buckets":7},
                "c":{"kind":"recency","entity":"user","event":"view"},
                "d":{"kind":"field","field":"price"}}"#,
        )
        .unwrap();
        assert_eq!(set.names().collect::<Vec<_>>(), ["a", "b", "c", "d"]);
        assert_eq!(set.ttl_ms, 604_800_000);
        assert!(
            matches!(&set.defs[1].kind, FeatureKind::Windowed { entity: Entity::UserTag(f), .. } if f == "category")
        );
    }

    #[test]
    fn invalid_definitions_name_the_feature() {
        for (body, needle) in [
            (
                r#"{"x":{"kind":"count","entity":"user_tag","field":"price","event":"click","window":"1h"}}"#,
                "not a tag field",
            ),
            (
                r#"{"x":{"kind":"count","entity":"user","event":"click"}}"#,
                "needs a window",
            ),
            (
                r#"{"x":{"kind":"count","entity":"user","window":"1h"}}"#,
                "event type",
            ),
            (
                r#"{"x":{"kind":"recency","entity":"user_tag","event":"click"}}"#,
                "entity user or item",
            ),
            (
                r#"{"x":{"kind":"field","field":"category"}}"#,
                "numeric or bool",
            ),
            (
                r#"{"x":{"kind":"distinct","entity":"user_tag","event":"view","window":"1h"}}"#,
                "user_tag needs a tag field",
            ),
            (
                r#"{"x":{"kind":"distinct","event":"view","window":"1h"}}"#,
                "distinct needs an entity",
            ),
            (
                r#"{"x":{"kind":"distinct","entity":"item","event":"view"}}"#,
                "needs a window",
            ),
            (
                r#"{"x":{"kind":"distinct","entity":"user","window":"1h"}}"#,
                "event type",
            ),
            (
                r#"{"x":{"kind":"distinct","entity":"user","event":"view","window":"1h","field":"category"}}"#,
                "applies to entity user_tag only",
            ),
            (
                r#"{"x":{"kind":"ctr","window":"7d","buckets":0}}"#,
                "buckets",
            ),
            (
                r#"{"x":{"kind":"ctr","window":"7s","buckets":3000}}"#,
                "buckets",
            ),
            (
                r#"{"x":{"kind":"ctr","window":"1s","buckets":7}}"#,
                "whole-millisecond",
            ),
            (
                r#"{"x":{"kind":"ctr","window":"1h","event":"click"}}"#,
                "does not apply",
            ),
        ] {
            let err = parse(body).unwrap_err().message;
            assert!(
                err.starts_with("features.x: ") && err.contains(needle),
                "{body}: {err}"
            );
        }
    }

    #[test]
    fn default_set_uses_the_category_field() {
        let set = FeatureSet::default_for(&Schema::demo(4));
        assert_eq!(set.len(), 8);
        assert!(set.defs.iter().any(|d| matches!(&d.kind, FeatureKind::Windowed { entity: Entity::UserTag(f), .. } if f == "category")));
    }
}
