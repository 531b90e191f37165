//! Point-in-time-correct training rows: the logs replayed in time order through the same
//! feature updates the server applies, each served item's features read as they were
//! when its list was served — from events strictly before it, never from later ones.
//!
//! At equal timestamps a list comes before the events, so a click logged in the same
//! millisecond as its impression is a label, never a feature. A row's label is whether the
//! user clicked the item in answer to that list: a click citing the list's
//! `recommendation_id`, or, for a click citing none, a click on the item by the user within
//! `attribution_ms` of the latest list that showed it to them.

use std::collections::HashMap;

use recd_core::features::{EntityState, FeatureSet, LoggedList, RankerInputs, Target};
use recd_core::{Event, EventType, Item};
use serde::{Deserialize, Serialize};

/// One served item: its features at serving time and whether it was clicked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// When its list was served.
    pub at_ms: i64,
    /// The list.
    pub recommendation_id: String,
    /// Who saw it.
    pub user_id: String,
    /// The item.
    pub item_id: String,
    /// 0-based position in the list.
    pub position: usize,
    /// Whether it was clicked (in answer to this list).
    pub label: bool,
    /// The score it was served with.
    pub served_score: f64,
    /// The feature vector, in the set's order.
    pub features: Vec<f64>,
    /// The retrieval signals and the position.
    pub signals: RankerInputs,
}

/// The feature state of a replay: what the online stores hold, in one process.
#[derive(Debug, Default)]
pub struct OfflineFeatures {
    users: HashMap<String, EntityState>,
    items: HashMap<String, EntityState>,
}

impl OfflineFeatures {
    /// Applies one event (`item`: the event's item, for its tags).
    pub fn apply_event(&mut self, set: &FeatureSet, event: &Event, item: Option<&Item>) {
        for u in set.event_updates(event, item) {
            let state = match u.target {
                Target::User => self.users.entry(event.user_id.clone()).or_default(),
                Target::Item => self.items.entry(event.item_id.clone()).or_default(),
            };
            state.apply(&u.key, &u.op, event.timestamp_ms);
        }
    }

    /// Applies the impression of `item_id` at `at_ms`.
    pub fn apply_impression(&mut self, set: &FeatureSet, item_id: &str, at_ms: i64) {
        let updates = set.impression_updates(at_ms);
        if updates.is_empty() {
            return;
        }
        let state = self.items.entry(item_id.to_string()).or_default();
        for u in updates {
            state.apply(&u.key, &u.op, at_ms);
        }
    }

    /// The feature vector of `item` for `user` at `now_ms`.
    pub fn values(&self, set: &FeatureSet, user: &str, item: &Item, now_ms: i64) -> Vec<f64> {
        set.values(self.users.get(user), self.items.get(&item.id), item, now_ms)
    }

    /// [`OfflineFeatures::values`] into `out` (resized to the set's length).
    pub fn values_into(
        &self,
        set: &FeatureSet,
        user: &str,
        item: &Item,
        now_ms: i64,
        out: &mut Vec<f64>,
    ) {
        out.clear();
        out.resize(set.len(), 0.0);
        set.values_into(
            self.users.get(user),
            self.items.get(&item.id),
            item,
            now_ms,
            out,
        );
    }

    /// A user's state (tests, the memory figure).
    pub fn user(&self, user: &str) -> Option<&EntityState> {
        self.users.get(user)
    }
}

/// Replays `events` and `lists` and returns one row per served item, in serving order.
/// Items of a list the catalog does not have are skipped (their fields are unknown).
pub fn export(
    set: &FeatureSet,
    catalog: &HashMap<String, Item>,
    events: &[Event],
    lists: &[LoggedList],
    attribution_ms: i64,
) -> Vec<Row> {
    let mut ev: Vec<&Event> = events.iter().collect();
    ev.sort_by_key(|e| e.timestamp_ms);
    let mut ls: Vec<&LoggedList> = lists.iter().collect();
    ls.sort_by_key(|l| l.at_ms);

    let mut state = OfflineFeatures::default();
    let mut rows: Vec<Row> = Vec::new();
    // (recommendation id, item) → row; (user, item) → rows, in time order.
    let mut by_list: HashMap<(&str, &str), usize> = HashMap::new();
    let mut by_pair: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
    let (mut e, mut l) = (0, 0);
    while e < ev.len() || l < ls.len() {
        let list_first = l < ls.len() && (e >= ev.len() || ls[l].at_ms <= ev[e].timestamp_ms);
        if list_first {
            let list = ls[l];
            l += 1;
            for (position, logged) in list.items.iter().enumerate() {
                let Some(item) = catalog.get(&logged.id) else {
                    continue;
                };
                let features = state.values(set, &list.user_id, item, list.at_ms);
                by_list.insert((&list.recommendation_id, &logged.id), rows.len());
                by_pair
                    .entry((&list.user_id, &logged.id))
                    .or_default()
                    .push(rows.len());
                rows.push(Row {
                    at_ms: list.at_ms,
                    recommendation_id: list.recommendation_id.clone(),
                    user_id: list.user_id.clone(),
                    item_id: logged.id.clone(),
                    position,
                    label: false,
                    served_score: logged.score,
                    features,
                    signals: logged.signals(position),
                });
            }
            // Read before counted, as the server reads features before logging the list.
            for logged in &list.items {
                state.apply_impression(set, &logged.id, list.at_ms);
            }
        } else {
            let event = ev[e];
            e += 1;
            if event.kind == EventType::Click {
                let cited = event
                    .recommendation_id
                    .as_deref()
                    .and_then(|r| by_list.get(&(r, event.item_id.as_str())).copied());
                let row = cited.or_else(|| {
                    if event.recommendation_id.is_some() {
                        return None;
                    }
                    by_pair
                        .get(&(event.user_id.as_str(), event.item_id.as_str()))
                        .and_then(|v| v.last().copied())
                        .filter(|&r| event.timestamp_ms - rows[r].at_ms <= attribution_ms)
                });
                if let Some(r) = row {
                    rows[r].label = true;
                }
            }
            state.apply_event(set, event, catalog.get(&event.item_id));
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use recd_core::features::{FeatureSpec, LoggedItem};
    use recd_core::{FieldValue, Schema};

    use super::*;

    fn item(id: &str, cat: &str) -> Item {
        let mut fields = BTreeMap::new();
        fields.insert("category".into(), FieldValue::Tags(vec![cat.into()]));
        Item {
            id: id.into(),
            vector: None,
            fields,
        }
    }

    fn click(user: &str, item: &str, at: i64, rec: Option<&str>) -> Event {
        Event {
            user_id: user.into(),
            item_id: item.into(),
            kind: EventType::Click,
            value: None,
            timestamp_ms: at,
            recommendation_id: rec.map(str::to_string),
        }
    }

    fn list(rec: &str, user: &str, at: i64, items: &[&str]) -> LoggedList {
        LoggedList {
            recommendation_id: rec.into(),
            user_id: user.into(),
            at_ms: at,
            strategy: "default".into(),
            items: items
                .iter()
                .map(|i| LoggedItem {
                    id: i.to_string(),
                    score: 1.0,
                    similarity: 0.5,
                    popularity: 0.0,
                    knn: true,
                })
                .collect(),
        }
    }

    #[test]
    fn rows_see_the_past_only_and_labels_come_from_the_future() {
        let specs: BTreeMap<String, FeatureSpec> = serde_json::from_str(
            r#"{"cat_clicks":{"kind":"count","entity":"user_tag","field":"category","event":"click","window":"1h","buckets":60}}"#,
        )
        .unwrap();
        let set = FeatureSet::from_specs(&specs, &Schema::demo(2)).unwrap();
        let catalog: HashMap<String, Item> =
            [item("a", "shoes"), item("b", "shoes"), item("c", "bags")]
                .into_iter()
                .map(|i| (i.id.clone(), i))
                .collect();
        let events = vec![
            click("u", "a", 1_000, None),       // before r1: a feature of r1's rows
            click("u", "b", 5_000, Some("r1")), // same ms as r2: r1's label, not r2's feature
            click("u", "c", 5_000, None), // no citation: attributed to r2 (latest list with c)
            click("u", "c", 90_000_000, None), // long after: attributed to nothing
        ];
        let lists = vec![
            list("r1", "u", 2_000, &["b", "c"]),
            list("r2", "u", 5_000, &["b", "c", "zz"]),
        ];
        let rows = export(&set, &catalog, &events, &lists, 60_000);
        let got: Vec<(&str, &str, f64, bool)> = rows
            .iter()
            .map(|r| {
                (
                    r.recommendation_id.as_str(),
                    r.item_id.as_str(),
                    r.features[0],
                    r.label,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("r1", "b", 1.0, true),
                ("r1", "c", 0.0, false),
                ("r2", "b", 1.0, false),
                ("r2", "c", 0.0, true),
            ]
        );
        assert_eq!(rows[3].position, 1);
    }
}
