//! Re-ranking: exclusions, a diversity cap, reasons, and the cut to `count`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use crate::features::RankerInputs;
use crate::item::{FieldValue, Item};
use crate::pipeline::{RankParams, Scored};
use crate::user::{LookupHints, UserState, item_key};

/// "At most `max_per_value` items per value of `field`."
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Diversity {
    /// A tag or bool field of the schema.
    pub field: String,
    /// How many items may share one value.
    pub max_per_value: usize,
}

/// One item of the answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked {
    /// The item (shared with the store; answers never show its vector).
    pub item: Arc<Item>,
    /// Its score.
    pub score: f64,
    /// Why it is here, in words.
    pub reasons: Vec<String>,
    /// What scoring saw, with the position it is shown at.
    pub signals: RankerInputs,
}

/// The re-ranked list and what re-ranking removed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RerankOutcome {
    /// The answer, best first, at most `count`.
    pub items: Vec<Ranked>,
    /// Candidates dropped as excluded, purchased or seen.
    pub excluded: usize,
    /// Candidates dropped by the diversity cap.
    pub diversity_capped: usize,
}

/// The items a user must not be shown: ids (the request's `exclude`, and recently
/// touched items when `exclude_seen`) and the [`item_key`]s of the user's exclusion set
/// (everything they purchased, rated, disliked, hid... exactly, up to its capacity).
#[derive(Debug, Clone, Default)]
pub struct Exclusions<'a> {
    /// Every id excluded by name.
    ids: HashSet<&'a str>,
    keys: HashSet<u64, foldhash::fast::RandomState>,
    /// The ids given to [`Exclusions::ids`] (the request's).
    named: Vec<&'a str>,
    /// The seen items (the user's `recent`) and their [`LookupHints`] (empty, or one per
    /// item), for a store that resolves ids to its own item numbers.
    seen: &'a [CompactString],
    seen_hints: &'a [u32],
}

impl<'a> Exclusions<'a> {
    /// Exactly these ids.
    pub fn ids(ids: impl IntoIterator<Item = &'a str>) -> Self {
        let named: Vec<&'a str> = ids.into_iter().collect();
        Self {
            ids: named.iter().copied().collect(),
            named,
            ..Self::default()
        }
    }

    /// The ids excluded by name, each with its lookup hint ([`LookupHints::NONE`] where
    /// there is none): the request's, then the seen ones with the hints their user's state
    /// keeps. An id may come twice. For a store resolving them (with the hints it set
    /// itself during the refold: the embedded store's are item slots).
    pub fn ids_with_hints(&self) -> impl Iterator<Item = (&'a str, u32)> + '_ {
        let hints = (self.seen_hints.len() == self.seen.len()).then_some(self.seen_hints);
        let named = self.named.iter().map(|id| (*id, LookupHints::NONE));
        let seen = self.seen.iter().enumerate().map(move |(i, id)| {
            let hint = hints.and_then(|h| h.get(i).copied());
            (id.as_str(), hint.unwrap_or(LookupHints::NONE))
        });
        named.chain(seen)
    }

    /// Whether `id` must not be shown.
    pub fn contains(&self, id: &str) -> bool {
        self.ids.contains(id) || (!self.keys.is_empty() && self.keys.contains(&item_key(id)))
    }

    /// How many entries there are (an item may count twice): how many candidates
    /// exclusions may remove at most.
    pub fn len(&self) -> usize {
        self.ids.len() + self.keys.len()
    }

    /// The [`item_key`]s excluded (the user's exclusion set).
    pub fn keys(&self) -> impl Iterator<Item = u64> + '_ {
        self.keys.iter().copied()
    }

    /// Whether nothing is excluded.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty() && self.keys.is_empty()
    }
}

/// The items `user` must not be shown with `request`'s `exclude` (see [`Exclusions`]).
pub fn exclusions<'a>(
    user: Option<&'a UserState>,
    request: &'a [String],
    params: &RankParams,
) -> Exclusions<'a> {
    let mut set = Exclusions::ids(request.iter().map(String::as_str));
    if let Some(u) = user {
        set.keys.extend(u.excluded.keys().iter().copied());
        if params.exclude_seen {
            set.ids.extend(u.recent.iter().map(CompactString::as_str));
            set.seen = &u.recent;
            set.seen_hints = u.fold.hints.as_slice();
        }
    }
    set
}

/// Walks the scored list best first, skipping excluded items and items whose diversity
/// values are all used up, until `count` items are taken. The scores stay non-increasing
/// because items are only ever skipped, never moved up.
pub fn rerank(
    scored: Vec<Scored>,
    count: usize,
    exclude: &Exclusions<'_>,
    diversity: Option<&Diversity>,
    session_share: f64,
) -> RerankOutcome {
    let mut out = RerankOutcome::default();
    let mut used: HashMap<String, usize> = HashMap::new();
    for s in scored {
        if out.items.len() >= count {
            break;
        }
        if exclude.contains(&s.candidate.item.id) {
            out.excluded += 1;
            continue;
        }
        if let Some(d) = diversity {
            let values = diversity_values(&s.candidate.item, &d.field);
            if values
                .iter()
                .any(|v| used.get(v).copied().unwrap_or(0) >= d.max_per_value)
            {
                out.diversity_capped += 1;
                continue;
            }
            for v in values {
                *used.entry(v).or_insert(0) += 1;
            }
        }
        let reasons = reasons(&s, session_share);
        let signals = RankerInputs {
            position: out.items.len() as f64,
            ..s.signals
        };
        out.items.push(Ranked {
            item: s.candidate.item,
            score: s.score,
            reasons,
            signals,
        });
    }
    out
}

/// The values an item has for a diversity field (an item without the field is capped under
/// the empty value, so items lacking it cannot flood the list either).
fn diversity_values(item: &Item, field: &str) -> Vec<String> {
    match item.field(field) {
        Some(FieldValue::Tags(t)) => t.clone(),
        Some(FieldValue::Bool(b)) => vec![b.to_string()],
        Some(FieldValue::Number(n)) => vec![n.to_string()],
        Some(FieldValue::Text(t)) => vec![t.clone()],
        None => vec![String::new()],
    }
}

fn reasons(s: &Scored, session_share: f64) -> Vec<String> {
    let c = &s.candidate;
    let mut r = Vec::new();
    if c.knn_rank.is_some() {
        r.push(
            if session_share >= 0.5 {
                "similar to items you viewed"
            } else {
                "based on your history"
            }
            .to_string(),
        );
    }
    if c.text_rank.is_some() {
        r.push("matches your search".to_string());
    }
    if let (Some(_), Some(after)) = (c.next_rank, &c.next_after) {
        r.push(format!("often next after {after}"));
    }
    if c.popular_rank.is_some() {
        r.push("popular right now".to_string());
    }
    if r.is_empty() {
        r.push("recommended".to_string());
    }
    r
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::pipeline::{merge, score_all};

    fn it(id: &str, cat: &str) -> Arc<Item> {
        let mut fields = BTreeMap::new();
        fields.insert(
            "category".to_string(),
            FieldValue::Tags(vec![cat.to_string()]),
        );
        Arc::new(Item {
            id: id.into(),
            vector: None,
            fields,
        })
    }

    fn scored() -> Vec<Scored> {
        let knn = vec![
            (it("a", "x"), 0.9),
            (it("b", "x"), 0.8),
            (it("c", "x"), 0.7),
            (it("d", "y"), 0.6),
            (it("e", "y"), 0.5),
        ];
        score_all(merge(knn, vec![], vec![]), &RankParams::default(), false)
    }

    #[test]
    fn excludes_caps_and_cuts() {
        let exclude = Exclusions::ids(["b"]);
        let d = Diversity {
            field: "category".into(),
            max_per_value: 1,
        };
        let out = rerank(scored(), 3, &exclude, Some(&d), 1.0);
        let ids: Vec<_> = out.items.iter().map(|r| r.item.id.as_str()).collect();
        assert_eq!(ids, ["a", "d"]);
        assert_eq!(out.excluded, 1);
        assert_eq!(out.diversity_capped, 2);
        assert_eq!(out.items[0].reasons, ["similar to items you viewed"]);
        let out = rerank(scored(), 2, &Exclusions::default(), None, 0.0);
        assert_eq!(out.items.len(), 2);
        assert_eq!(out.items[1].reasons, ["based on your history"]);
    }

    #[test]
    fn transitions_candidates_say_what_they_follow_and_obey_exclusions() {
        let c = crate::pipeline::merge_with_next(
            vec![(it("a", "x"), 0.9)],
            vec![],
            vec![],
            vec![
                (it("n", "y"), 1.0, "seen".into()),
                (it("m", "y"), 0.9, "seen".into()),
                (it("a", "x"), 0.5, "other".into()),
            ],
        );
        let p = RankParams {
            transitions_weight: 1.0,
            ..Default::default()
        };
        let out = rerank(
            score_all(c, &p, false),
            10,
            &Exclusions::ids(["m"]),
            None,
            0.0,
        );
        let got: Vec<_> = out
            .items
            .iter()
            .map(|r| (r.item.id.as_str(), r.reasons.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("n", vec!["often next after seen".to_string()]),
                (
                    "a",
                    vec![
                        "based on your history".to_string(),
                        "often next after other".to_string()
                    ]
                ),
            ]
        );
        assert_eq!(
            out.excluded, 1,
            "an excluded successor is dropped like any candidate"
        );
    }

    #[test]
    fn exclusions_cover_request_purchased_and_seen() {
        let mut u = UserState::default();
        u.excluded.insert("p", 10);
        u.recent.push("r".into());
        let req = vec!["q".to_string()];
        let p = RankParams::default();
        let set = exclusions(Some(&u), &req, &p);
        assert!(set.contains("p") && set.contains("q") && set.contains("r"));
        assert!(!set.contains("s"));
        let p = RankParams {
            exclude_seen: false,
            ..p
        };
        assert!(!exclusions(Some(&u), &req, &p).contains("r"));
    }

    #[test]
    fn exclusions_hand_the_seen_items_hints_to_the_store() {
        let mut u = UserState {
            recent: vec!["r1".into(), "r2".into()],
            ..UserState::default()
        };
        let req = vec!["q".to_string()];
        let none = LookupHints::NONE;
        let seen = RankParams::default();
        let listed = |u: &UserState, p: &RankParams| -> Vec<(String, u32)> {
            let set = exclusions(Some(u), &req, p);
            set.ids_with_hints()
                .map(|(id, hint)| (id.to_string(), hint))
                .collect()
        };
        let pairs = |v: &[(&str, u32)]| -> Vec<(String, u32)> {
            v.iter().map(|(id, h)| (id.to_string(), *h)).collect()
        };
        // No hints yet: every id is named without one.
        assert_eq!(
            listed(&u, &seen),
            pairs(&[("q", none), ("r1", none), ("r2", none)])
        );
        // One hint per recent item: each seen id with its own.
        u.fold.hints = LookupHints::from_slots(vec![7, 3]);
        assert_eq!(
            listed(&u, &seen),
            pairs(&[("q", none), ("r1", 7), ("r2", 3)])
        );
        // Hints kept for another list are not used.
        u.recent.push("r3".into());
        assert_eq!(
            listed(&u, &seen),
            pairs(&[("q", none), ("r1", none), ("r2", none), ("r3", none)])
        );
        // Seen items not excluded: not named either.
        let unseen = RankParams {
            exclude_seen: false,
            ..seen
        };
        assert_eq!(listed(&u, &unseen), pairs(&[("q", none)]));
    }
}
