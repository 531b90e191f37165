//! The online state behind the features, and what an event or an impression changes in it.
//!
//! One definition serves everyone: [`FeatureSet::event_updates`] and
//! [`FeatureSet::impression_updates`] say which slots move, [`EntityState::apply`] moves
//! them, and [`FeatureSet::values`] reads the feature vector of a (user, item) pair at a
//! time. The embedded store keeps [`EntityState`]s in memory, the redis store applies the
//! same [`Update`]s in a script on a Hash per entity (fields named by
//! [`SlotKey::encode`], values by [`Buckets::encode`]), and the offline export replays the
//! logs through the same functions: online and offline values agree by construction, and
//! the parity test holds them to it.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::event::Event;
use crate::features::distinct::{Sketches, id_hash};
use crate::features::spec::{
    Entity, FeatureDef, FeatureKind, FeatureSet, PRIOR_SUCCESSES, PRIOR_TRIALS, RECENCY_CAP_HOURS,
};
use crate::features::window::{Buckets, Window};
use crate::item::{FieldValue, Item};

/// Which state of one entity a slot is: the feature's index, a part (0, or 1 for a rate's
/// impressions) and, for `user_tag` features, the tag value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SlotKey {
    /// Index of the feature in its [`FeatureSet`].
    pub feature: u16,
    /// 0: the events; 1: a rate's impressions.
    pub part: u8,
    /// The tag value of a `user_tag` feature.
    pub tag: Option<Box<str>>,
}

impl SlotKey {
    /// `"{feature}.{part}"`, then `":{tag}"` for a tag slot (a tag may hold anything,
    /// including ':', since only the first ':' separates).
    pub fn encode(&self) -> String {
        match &self.tag {
            Some(t) => format!("{}.{}:{t}", self.feature, self.part),
            None => format!("{}.{}", self.feature, self.part),
        }
    }

    /// Reads [`SlotKey::encode`]'s form back.
    pub fn decode(s: &str) -> Option<Self> {
        let (head, tag) = match s.split_once(':') {
            Some((h, t)) => (h, Some(t.into())),
            None => (s, None),
        };
        let (f, p) = head.split_once('.')?;
        Some(Self {
            feature: f.parse().ok()?,
            part: p.parse().ok()?,
            tag,
        })
    }
}

/// The state of one slot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Slot {
    /// A windowed sum.
    Buckets(Buckets),
    /// The time of the last event.
    Last(i64),
    /// A windowed distinct count. Boxed: unboxed, it made every slot (and every map entry
    /// holding one) 8 bytes larger, 32 instead of 24 (`slot_stays_24_bytes`).
    Distinct(Box<Sketches>),
}

/// What one update does to one slot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    /// Adds `value` to `bucket` of a window.
    Add {
        /// The window (for pruning).
        window: Window,
        /// The bucket of the event's time.
        bucket: i64,
        /// What to add.
        value: f64,
    },
    /// The slot's last-event time becomes at least `at_ms`.
    Last {
        /// The event's time.
        at_ms: i64,
    },
    /// Counts an id (by its hash) in `bucket` of a distinct count's window.
    Insert {
        /// The window (for pruning).
        window: Window,
        /// The bucket of the event's time.
        bucket: i64,
        /// The id's [`id_hash`].
        hash: u32,
    },
}

/// Whose state an update changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// The event's user.
    User,
    /// The event's (or impression's) item.
    Item,
}

/// One change to one slot of one entity.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    /// The user's or the item's state.
    pub target: Target,
    /// Which slot.
    pub key: SlotKey,
    /// What happens to it.
    pub op: Op,
}

type Fast = foldhash::fast::RandomState;

/// Every slot of one user or item, and the latest event time that touched it (its TTL
/// counts from there). Tag slots are kept by tag value first, so that reading an item's
/// tags looks them up by `&str`, without building a key (a request reads hundreds).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EntityState {
    /// Slots without a tag, by (feature, part).
    plain: HashMap<(u16, u8), Slot, Fast>,
    /// Tag slots: tag value → (feature, part, slot).
    tagged: HashMap<Box<str>, Vec<(u16, u8, Slot)>, Fast>,
    /// The latest time of an update applied.
    pub touched_ms: i64,
}

impl EntityState {
    /// The slot of (feature, part, tag), if it has one.
    pub fn get(&self, feature: u16, part: u8, tag: Option<&str>) -> Option<&Slot> {
        match tag {
            None => self.plain.get(&(feature, part)),
            Some(t) => self
                .tagged
                .get(t)?
                .iter()
                .find(|(f, p, _)| *f == feature && *p == part)
                .map(|(_, _, s)| s),
        }
    }

    fn slot_mut(&mut self, key: &SlotKey, init: Slot) -> &mut Slot {
        match &key.tag {
            None => self.plain.entry((key.feature, key.part)).or_insert(init),
            Some(t) => {
                let list = self.tagged.entry(t.clone()).or_default();
                let at = match list
                    .iter()
                    .position(|(f, p, _)| *f == key.feature && *p == key.part)
                {
                    Some(i) => i,
                    None => {
                        list.push((key.feature, key.part, init));
                        list.len() - 1
                    }
                };
                &mut list[at].2
            }
        }
    }

    /// Every tag value with its slots (feature, part, slot).
    pub fn tag_slots(&self) -> impl Iterator<Item = (&str, &[(u16, u8, Slot)])> {
        self.tagged.iter().map(|(t, l)| (&**t, l.as_slice()))
    }

    /// Every slot with its key.
    pub fn slots(&self) -> impl Iterator<Item = (SlotKey, &Slot)> {
        let plain = self.plain.iter().map(|(&(feature, part), s)| {
            (
                SlotKey {
                    feature,
                    part,
                    tag: None,
                },
                s,
            )
        });
        let tagged = self.tagged.iter().flat_map(|(t, list)| {
            list.iter().map(move |(feature, part, s)| {
                (
                    SlotKey {
                        feature: *feature,
                        part: *part,
                        tag: Some(t.clone()),
                    },
                    s,
                )
            })
        });
        plain.chain(tagged)
    }

    /// Applies one update made at `at_ms`.
    pub fn apply(&mut self, key: &SlotKey, op: &Op, at_ms: i64) {
        self.touched_ms = self.touched_ms.max(at_ms);
        match *op {
            Op::Add {
                window,
                bucket,
                value,
            } => {
                let slot = self.slot_mut(key, Slot::Buckets(Buckets::default()));
                match slot {
                    Slot::Buckets(b) => b.add(&window, bucket, value),
                    _ => *slot = Slot::Buckets(Buckets(vec![(bucket, value)])),
                }
            }
            Op::Last { at_ms } => {
                let slot = self.slot_mut(key, Slot::Last(at_ms));
                match slot {
                    Slot::Last(t) => *t = (*t).max(at_ms),
                    _ => *slot = Slot::Last(at_ms),
                }
            }
            Op::Insert {
                window,
                bucket,
                hash,
            } => {
                let slot = self.slot_mut(key, Slot::Distinct(Box::default()));
                if !matches!(slot, Slot::Distinct(_)) {
                    *slot = Slot::Distinct(Box::default());
                }
                if let Slot::Distinct(s) = slot {
                    s.insert(&window, bucket, hash);
                }
            }
        }
    }

    /// Whether the state has expired at `now_ms` under `ttl_ms`.
    pub fn expired(&self, now_ms: i64, ttl_ms: i64) -> bool {
        now_ms - self.touched_ms > ttl_ms
    }

    /// About how many bytes of heap and inline memory it takes (the memory-per-user figure).
    pub fn approx_bytes(&self) -> usize {
        let bucket = std::mem::size_of::<(i64, f64)>();
        let slot = |s: &Slot| match s {
            Slot::Buckets(b) => b.0.capacity() * bucket,
            Slot::Last(_) => 0,
            // The box, then each bucket's hashes.
            Slot::Distinct(d) => {
                std::mem::size_of::<Sketches>()
                    + d.0.capacity() * std::mem::size_of::<(i64, Vec<u32>)>()
                    + d.0.iter().map(|(_, h)| h.capacity() * 4).sum::<usize>()
            }
        };
        // A map entry: key, value and a control byte, at the map's capacity.
        let plain = self.plain.capacity() * (std::mem::size_of::<((u16, u8), Slot)>() + 1)
            + self.plain.values().map(slot).sum::<usize>();
        let tagged = self.tagged.capacity()
            * (std::mem::size_of::<(Box<str>, Vec<(u16, u8, Slot)>)>() + 1)
            + self
                .tagged
                .iter()
                .map(|(t, list)| {
                    t.len()
                        + list.capacity() * std::mem::size_of::<(u16, u8, Slot)>()
                        + list.iter().map(|(_, _, s)| slot(s)).sum::<usize>()
                })
                .sum::<usize>();
        std::mem::size_of::<Self>() + plain + tagged
    }

    /// The state as `(field, value)` pairs of a Hash: `t` → touched time, and one field per
    /// slot ([`SlotKey::encode`] → [`Buckets::encode`], [`Sketches::encode`], or `@{ms}`
    /// for a last time).
    pub fn to_fields(&self) -> Vec<(String, String)> {
        let mut out = vec![("t".to_string(), self.touched_ms.to_string())];
        for (k, s) in self.slots() {
            let v = match s {
                Slot::Buckets(b) => b.encode(),
                Slot::Last(t) => format!("@{t}"),
                Slot::Distinct(d) => d.encode(),
            };
            out.push((k.encode(), v));
        }
        out
    }

    /// Reads [`EntityState::to_fields`]'s pairs back; unreadable pairs are skipped (a
    /// feature value is then 0, never an error on the request path).
    pub fn from_fields<'a>(fields: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut out = Self::default();
        for (f, v) in fields {
            if f == "t" {
                out.touched_ms = v.parse().unwrap_or(0);
                continue;
            }
            let Some(key) = SlotKey::decode(f) else {
                continue;
            };
            let slot = match v.strip_prefix('@') {
                Some(t) => match t.parse() {
                    Ok(t) => Slot::Last(t),
                    Err(_) => continue,
                },
                None if v.starts_with('#') => match Sketches::decode(v) {
                    Some(d) => Slot::Distinct(Box::new(d)),
                    None => continue,
                },
                None => match Buckets::decode(v) {
                    Some(b) => Slot::Buckets(b),
                    None => continue,
                },
            };
            *out.slot_mut(&key, Slot::Last(0)) = slot;
        }
        out
    }
}

impl Buckets {
    /// `"b:v b:v ..."`, oldest first, values in full precision (`{:?}` round-trips f64).
    pub fn encode(&self) -> String {
        let mut s = String::new();
        for (i, (b, v)) in self.0.iter().enumerate() {
            if i > 0 {
                s.push(' ');
            }
            s.push_str(&format!("{b}:{v:?}"));
        }
        s
    }

    /// Reads [`Buckets::encode`]'s form back (the redis script writes the same form).
    pub fn decode(s: &str) -> Option<Self> {
        let mut out = Vec::new();
        for pair in s.split_ascii_whitespace() {
            let (b, v) = pair.split_once(':')?;
            out.push((b.parse().ok()?, v.parse().ok()?));
        }
        out.sort_by_key(|(b, _)| *b);
        Some(Buckets(out))
    }
}

pub(crate) fn tags<'a>(item: &'a Item, field: &str) -> &'a [String] {
    match item.fields.get(field) {
        Some(FieldValue::Tags(t)) => t,
        _ => &[],
    }
}

fn key(feature: usize, part: u8, tag: Option<&str>) -> SlotKey {
    SlotKey {
        feature: feature as u16,
        part,
        tag: tag.map(Into::into),
    }
}

impl FeatureSet {
    /// The slots `event` changes; `item` is the event's item (its tags feed `user_tag`
    /// features; an unknown item changes no tag slot).
    pub fn event_updates(&self, event: &Event, item: Option<&Item>) -> Vec<Update> {
        let mut out = Vec::new();
        for (i, def) in self.defs.iter().enumerate() {
            match &def.kind {
                FeatureKind::Windowed {
                    entity,
                    event: kind,
                    sum,
                    window,
                } if *kind == event.kind => {
                    let value = if *sum {
                        event.value.unwrap_or(0.0)
                    } else {
                        1.0
                    };
                    let op = Op::Add {
                        window: *window,
                        bucket: window.bucket_of(event.timestamp_ms),
                        value,
                    };
                    match entity {
                        Entity::User => out.push(Update {
                            target: Target::User,
                            key: key(i, 0, None),
                            op,
                        }),
                        Entity::Item => out.push(Update {
                            target: Target::Item,
                            key: key(i, 0, None),
                            op,
                        }),
                        Entity::UserTag(field) => {
                            for t in item.map_or(&[][..], |it| tags(it, field)) {
                                out.push(Update {
                                    target: Target::User,
                                    key: key(i, 0, Some(t)),
                                    op,
                                });
                            }
                        }
                    }
                }
                FeatureKind::Recency {
                    entity,
                    event: kind,
                } if *kind == event.kind => {
                    let target = match entity {
                        Entity::Item => Target::Item,
                        _ => Target::User,
                    };
                    out.push(Update {
                        target,
                        key: key(i, 0, None),
                        op: Op::Last {
                            at_ms: event.timestamp_ms,
                        },
                    });
                }
                FeatureKind::Rate {
                    event: kind,
                    window,
                } if *kind == event.kind => {
                    out.push(Update {
                        target: Target::Item,
                        key: key(i, 0, None),
                        op: Op::Add {
                            window: *window,
                            bucket: window.bucket_of(event.timestamp_ms),
                            value: 1.0,
                        },
                    });
                }
                FeatureKind::Distinct {
                    entity,
                    event: kind,
                    window,
                } if *kind == event.kind => {
                    // A user counts the items (per tag value of the item for user_tag), an
                    // item the users.
                    let op = |counted: &str| Op::Insert {
                        window: *window,
                        bucket: window.bucket_of(event.timestamp_ms),
                        hash: id_hash(counted),
                    };
                    match entity {
                        Entity::Item => out.push(Update {
                            target: Target::Item,
                            key: key(i, 0, None),
                            op: op(&event.user_id),
                        }),
                        Entity::User => out.push(Update {
                            target: Target::User,
                            key: key(i, 0, None),
                            op: op(&event.item_id),
                        }),
                        Entity::UserTag(field) => {
                            for t in item.map_or(&[][..], |it| tags(it, field)) {
                                out.push(Update {
                                    target: Target::User,
                                    key: key(i, 0, Some(t)),
                                    op: op(&event.item_id),
                                });
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// The slots an impression of an item at `at_ms` changes (rates' denominators).
    pub fn impression_updates(&self, at_ms: i64) -> Vec<Update> {
        self.defs
            .iter()
            .enumerate()
            .filter_map(|(i, def)| match &def.kind {
                FeatureKind::Rate { window, .. } => Some(Update {
                    target: Target::Item,
                    key: key(i, 1, None),
                    op: Op::Add {
                        window: *window,
                        bucket: window.bucket_of(at_ms),
                        value: 1.0,
                    },
                }),
                _ => None,
            })
            .collect()
    }

    /// Whether any feature keeps per-item state (else item state need not be read).
    pub fn has_item_state(&self) -> bool {
        self.defs.iter().any(|d| {
            matches!(
                &d.kind,
                FeatureKind::Rate { .. }
                    | FeatureKind::Windowed {
                        entity: Entity::Item,
                        ..
                    }
                    | FeatureKind::Recency {
                        entity: Entity::Item,
                        ..
                    }
                    | FeatureKind::Distinct {
                        entity: Entity::Item,
                        ..
                    }
            )
        })
    }

    /// The feature vector of `item` for the user at `now_ms`, in [`FeatureSet::defs`]
    /// order, from the user's and the item's state (`None`, or expired: no history).
    pub fn values(
        &self,
        user: Option<&EntityState>,
        item_state: Option<&EntityState>,
        item: &Item,
        now_ms: i64,
    ) -> Vec<f64> {
        let mut out = vec![0.0; self.defs.len()];
        self.values_into(user, item_state, item, now_ms, &mut out);
        out
    }

    /// [`FeatureSet::values`] into `out` (`out.len() == self.len()`).
    pub fn values_into(
        &self,
        user: Option<&EntityState>,
        item_state: Option<&EntityState>,
        item: &Item,
        now_ms: i64,
        out: &mut [f64],
    ) {
        let ttl = self.ttl_ms;
        let user = user.filter(|s| !s.expired(now_ms, ttl));
        let item_state = item_state.filter(|s| !s.expired(now_ms, ttl));
        for (i, (def, o)) in self.defs.iter().zip(out.iter_mut()).enumerate() {
            *o = match &def.kind {
                FeatureKind::Windowed {
                    entity: Entity::UserTag(field),
                    window,
                    ..
                }
                | FeatureKind::Distinct {
                    entity: Entity::UserTag(field),
                    window,
                    ..
                } => tags(item, field)
                    .iter()
                    .map(|t| window_sum(user, (i, 0, Some(t.as_str())), window, now_ms))
                    .sum(),
                FeatureKind::Windowed {
                    entity: Entity::User,
                    ..
                }
                | FeatureKind::Recency {
                    entity: Entity::User | Entity::UserTag(_),
                    ..
                }
                | FeatureKind::Distinct {
                    entity: Entity::User,
                    ..
                } => user_value(i, def, user, now_ms),
                _ => item_value(i, def, item_state, item, now_ms),
            };
        }
    }
}

/// Slot `k` (feature, part, tag) of `s` summed over `w` at `now_ms`, or its distinct
/// count for a distinct count's slot (0 without it).
fn window_sum(
    s: Option<&EntityState>,
    k: (usize, u8, Option<&str>),
    w: &Window,
    now_ms: i64,
) -> f64 {
    match s.and_then(|s| s.get(k.0 as u16, k.1, k.2)) {
        Some(Slot::Buckets(b)) => b.sum(w, now_ms),
        // A user_tag distinct count's tag slot, read as the tag counts are.
        Some(Slot::Distinct(d)) => d.count(w, now_ms),
        _ => 0.0,
    }
}

/// Distinct-count feature `i`'s value in `s` at `now_ms`.
fn distinct_count(s: Option<&EntityState>, i: usize, w: &Window, now_ms: i64) -> f64 {
    match s.and_then(|s| s.get(i as u16, 0, None)) {
        Some(Slot::Distinct(d)) => d.count(w, now_ms),
        _ => 0.0,
    }
}

/// Rate feature `i`'s windowed (successes, impressions) in `s` at `now_ms`.
pub(crate) fn rate_parts(
    s: Option<&EntityState>,
    i: usize,
    window: &Window,
    now_ms: i64,
) -> (f64, f64) {
    (
        window_sum(s, (i, 0, None), window, now_ms),
        window_sum(s, (i, 1, None), window, now_ms),
    )
}

/// A rate from its windowed successes and impressions, smoothed toward the prior.
pub(crate) fn rate_value(hits: f64, shown: f64) -> f64 {
    (hits + PRIOR_SUCCESSES) / (shown.max(hits) + PRIOR_TRIALS)
}

/// Hours since the last event of slot `i` of `s`, capped (the cap without one).
fn recency(s: Option<&EntityState>, i: usize, now_ms: i64) -> f64 {
    match s.and_then(|s| s.get(i as u16, 0, None)) {
        Some(Slot::Last(t)) => ((now_ms - t).max(0) as f64 / 3_600_000.0).min(RECENCY_CAP_HOURS),
        _ => RECENCY_CAP_HOURS,
    }
}

/// The value of feature `i` (`def`) that depends on the user's state only: a user window
/// or a user recency (0 for any other kind). `user` is unexpired.
pub(crate) fn user_value(
    i: usize,
    def: &FeatureDef,
    user: Option<&EntityState>,
    now_ms: i64,
) -> f64 {
    match &def.kind {
        FeatureKind::Windowed { window, .. } => window_sum(user, (i, 0, None), window, now_ms),
        FeatureKind::Recency { .. } => recency(user, i, now_ms),
        FeatureKind::Distinct { window, .. } => distinct_count(user, i, window, now_ms),
        _ => 0.0,
    }
}

/// The value of feature `i` (`def`) read from the item: its windows, recency and rates
/// (`item_state`, unexpired) or its fields (0 for a user-side kind).
pub(crate) fn item_value(
    i: usize,
    def: &FeatureDef,
    item_state: Option<&EntityState>,
    item: &Item,
    now_ms: i64,
) -> f64 {
    match &def.kind {
        FeatureKind::Windowed {
            entity: Entity::Item,
            window,
            ..
        } => window_sum(item_state, (i, 0, None), window, now_ms),
        FeatureKind::Recency {
            entity: Entity::Item,
            ..
        } => recency(item_state, i, now_ms),
        FeatureKind::Distinct {
            entity: Entity::Item,
            window,
            ..
        } => distinct_count(item_state, i, window, now_ms),
        FeatureKind::Rate { window, .. } => {
            let (hits, shown) = rate_parts(item_state, i, window, now_ms);
            rate_value(hits, shown)
        }
        FeatureKind::Field { field } => match item.fields.get(field) {
            Some(FieldValue::Number(x)) => *x,
            Some(FieldValue::Bool(b)) => f64::from(u8::from(*b)),
            _ => 0.0,
        },
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::event::EventType;
    use crate::features::spec::FeatureSpec;
    use crate::schema::Schema;

    /// Every slot and map entry of every user and item carries a `Slot`: a variant may not
    /// make it larger than the sums' buckets make it.
    #[test]
    fn slot_stays_24_bytes() {
        assert_eq!(std::mem::size_of::<Slot>(), 24);
    }

    const H: i64 = 3_600_000;

    fn set() -> FeatureSet {
        let specs: BTreeMap<String, FeatureSpec> = serde_json::from_str(
            r#"{"cat_clicks_1h":{"kind":"count","entity":"user_tag","field":"category","event":"click","window":"1h","buckets":4},
                "ctr":{"kind":"ctr","window":"1h","buckets":4},
                "dwell_1h":{"kind":"sum","entity":"user","event":"dwell","window":"1h","buckets":4},
                "last_click":{"kind":"recency","entity":"user","event":"click"},
                "price":{"kind":"field","field":"price"}}"#,
        )
        .unwrap();
        FeatureSet::from_specs(&specs, &Schema::demo(2)).unwrap()
    }

    fn item(id: &str, cats: &[&str], price: f64) -> Item {
        let mut fields = BTreeMap::new();
        fields.insert(
            "category".into(),
            FieldValue::Tags(cats.iter().map(|c| c.to_string()).collect()),
        );
        fields.insert("price".into(), FieldValue::Number(price));
        Item {
            id: id.into(),
            vector: None,
            fields,
        }
    }

    fn ev(kind: EventType, item: &str, at: i64, value: Option<f64>) -> Event {
        Event {
            user_id: "u".into(),
            item_id: item.into(),
            kind,
            value,
            timestamp_ms: at,
            recommendation_id: None,
        }
    }

    #[test]
    fn values_by_hand() {
        let set = set();
        let shoes = item("a", &["shoes", "sale"], 20.0);
        let bags = item("b", &["bags"], 50.0);
        let mut user = EntityState::default();
        let mut items: HashMap<&str, EntityState> = HashMap::new();
        let mut apply = |e: Event, it: &Item| {
            for u in set.event_updates(&e, Some(it)) {
                let s = match u.target {
                    Target::User => &mut user,
                    Target::Item => items
                        .entry(if it.id == "a" { "a" } else { "b" })
                        .or_default(),
                };
                s.apply(&u.key, &u.op, e.timestamp_ms);
            }
        };
        apply(ev(EventType::Click, "a", 10 * H, None), &shoes);
        apply(ev(EventType::Click, "b", 10 * H + 10 * 60_000, None), &bags);
        apply(
            ev(EventType::Dwell, "b", 10 * H + 20 * 60_000, Some(30.0)),
            &bags,
        );
        for u in set.impression_updates(10 * H + 5 * 60_000) {
            for _ in 0..9 {
                items
                    .entry("a")
                    .or_default()
                    .apply(&u.key, &u.op, 10 * H + 5 * 60_000);
            }
        }
        let now = 10 * H + 30 * 60_000;
        // A user who clicked a shoe at 10:00 and a bag at 10:10; at 10:30 an item in
        // shoes+sale sees 1 (shoes) + 1 (sale: the clicked shoe was on sale too); its CTR is (1 + 1) / (9 + 20); dwell 30 s;
        // last click 20 min ago = 1/3 h; price as is.
        let v = set.values(Some(&user), items.get("a"), &shoes, now);
        assert_eq!(v[0], 2.0);
        assert!((v[1] - 2.0 / 29.0).abs() < 1e-12);
        assert_eq!(v[2], 30.0);
        assert!((v[3] - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(v[4], 20.0);
        // The bag: 1 click in bags; its CTR (1 + 1) / (1 + 20)
        // (clicks without logged impressions count as shown).
        let v = set.values(Some(&user), items.get("b"), &bags, now);
        assert_eq!(v[0], 1.0);
        assert!((v[1] - 2.0 / 21.0).abs() < 1e-12);
        // At 11:05 the 10:00 click has left the 1 h window (buckets 41..=44 at 15 min).
        let v = set.values(Some(&user), items.get("a"), &shoes, 11 * H + 5 * 60_000);
        assert_eq!(v[0], 0.0);
        // After the TTL (the longest window, 1 h, since the last update at 10:20) the
        // state is gone: recency is the cap.
        let v = set.values(Some(&user), None, &shoes, 11 * H + 21 * 60_000);
        assert_eq!(v[3], RECENCY_CAP_HOURS);
        // No user at all: zeros, the cap, the prior CTR.
        let v = set.values(None, None, &shoes, now);
        assert_eq!(
            v,
            vec![
                0.0,
                PRIOR_SUCCESSES / PRIOR_TRIALS,
                0.0,
                RECENCY_CAP_HOURS,
                20.0
            ]
        );
    }

    #[test]
    fn state_round_trips_through_hash_fields() {
        let set = set();
        let shoes = item("a", &["sho:es", "sale"], 20.0);
        let mut s = EntityState::default();
        for (i, t) in [0, 7, 31, 44].iter().enumerate() {
            let e = ev(
                if i % 2 == 0 {
                    EventType::Click
                } else {
                    EventType::Dwell
                },
                "a",
                10 * H + t * 60_000,
                Some(1.25),
            );
            for u in set.event_updates(&e, Some(&shoes)) {
                s.apply(&u.key, &u.op, e.timestamp_ms);
            }
        }
        let fields = s.to_fields();
        let back = EntityState::from_fields(fields.iter().map(|(a, b)| (a.as_str(), b.as_str())));
        assert_eq!(back, s);
        assert!(SlotKey::decode("x.0").is_none());
    }
}
