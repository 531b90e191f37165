//! Candidates from every source, merged into one list that keeps each source's signal.

use std::collections::HashMap;
use std::sync::Arc;

use crate::item::Item;

/// One candidate item and what each source said about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The item, shared with the store (never deep-copied on the request path).
    pub item: Arc<Item>,
    /// Similarity to the query vector, when KNN found it.
    pub similarity: Option<f32>,
    /// Rank (0-based) in the KNN list.
    pub knn_rank: Option<usize>,
    /// Popularity relative to the most popular candidate, in (0, 1], when known.
    pub popularity: Option<f64>,
    /// Rank (0-based) in the popular list.
    pub popular_rank: Option<usize>,
    /// Rank (0-based) in the text-match list.
    pub text_rank: Option<usize>,
    /// The transitions source's score relative to its best candidate, in (0, 1], when it
    /// proposed the item (see [`super::transitions`]).
    pub next: Option<f64>,
    /// Rank (0-based) in the transitions list.
    pub next_rank: Option<usize>,
    /// The recent item it most often follows (for the reason).
    pub next_after: Option<String>,
}

/// An item keyed by its id, without copying the id (a refcount instead of an allocation:
/// copying candidate ids was 8% of a request's CPU).
struct ById(Arc<Item>);

impl PartialEq for ById {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}
impl Eq for ById {}
impl std::hash::Hash for ById {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.id.hash(state);
    }
}

/// Unions the three lists (each best first) by item id; the first occurrence of an item
/// keeps its fields. `popular` carries log-domain popularity scores.
pub fn merge(
    knn: Vec<(Arc<Item>, f32)>,
    popular: Vec<(Arc<Item>, f64)>,
    text: Vec<Arc<Item>>,
) -> Vec<Candidate> {
    merge_with_next(knn, popular, text, Vec::new())
}

/// [`merge`], with the transitions source's list too: `(item, score, after)`, best first
/// (see [`super::transitions::next_items`]). Its scores are kept relative to the first
/// one, so that the blend weighs them on a fixed scale whatever the catalog's branching.
pub fn merge_with_next(
    knn: Vec<(Arc<Item>, f32)>,
    popular: Vec<(Arc<Item>, f64)>,
    text: Vec<Arc<Item>>,
    next: Vec<(Arc<Item>, f32, String)>,
) -> Vec<Candidate> {
    let mut out: Vec<Candidate> =
        Vec::with_capacity(knn.len() + popular.len() + text.len() + next.len());
    // foldhash, not SipHash: this map hashes every candidate id of every request (SipHash
    // was ~4 % of a recommend's CPU under perf); its per-map random seed keeps ids chosen
    // to collide from being cheap to find.
    let mut at: HashMap<ById, usize, foldhash::fast::RandomState> =
        HashMap::with_capacity_and_hasher(out.capacity(), foldhash::fast::RandomState::default());
    let mut slot = |item: Arc<Item>, out: &mut Vec<Candidate>| -> usize {
        *at.entry(ById(item.clone())).or_insert_with(|| {
            out.push(Candidate {
                item,
                similarity: None,
                knn_rank: None,
                popularity: None,
                popular_rank: None,
                text_rank: None,
                next: None,
                next_rank: None,
                next_after: None,
            });
            out.len() - 1
        })
    };
    for (rank, (item, sim)) in knn.into_iter().enumerate() {
        let i = slot(item, &mut out);
        if out[i].knn_rank.is_none() {
            out[i].similarity = Some(sim);
            out[i].knn_rank = Some(rank);
        }
    }
    let log_max = popular.first().map(|(_, s)| *s);
    for (rank, (item, log_score)) in popular.into_iter().enumerate() {
        let i = slot(item, &mut out);
        if out[i].popular_rank.is_none() {
            out[i].popularity = log_max.map(|m| crate::popularity::relative(log_score, m));
            out[i].popular_rank = Some(rank);
        }
    }
    for (rank, item) in text.into_iter().enumerate() {
        let i = slot(item, &mut out);
        out[i].text_rank.get_or_insert(rank);
    }
    let next_max = next.first().map(|(_, s, _)| f64::from(*s));
    for (rank, (item, score, after)) in next.into_iter().enumerate() {
        let i = slot(item, &mut out);
        if out[i].next_rank.is_none() {
            out[i].next = next_max
                .filter(|m| *m > 0.0)
                .map(|m| (f64::from(score) / m).clamp(0.0, 1.0));
            out[i].next_rank = Some(rank);
            out[i].next_after = Some(after);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn it(id: &str) -> Arc<Item> {
        Arc::new(Item {
            id: id.into(),
            vector: None,
            fields: BTreeMap::new(),
        })
    }

    #[test]
    fn unions_by_id_and_keeps_every_signal() {
        let c = merge(
            vec![(it("a"), 0.9), (it("b"), 0.8)],
            vec![(it("b"), 10.0), (it("c"), 10.0 - std::f64::consts::LN_2)],
            vec![it("c"), it("d")],
        );
        let ids: Vec<_> = c.iter().map(|c| c.item.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c", "d"]);
        assert_eq!(c[1].similarity, Some(0.8));
        assert_eq!(c[1].popularity, Some(1.0));
        assert!((c[2].popularity.unwrap() - 0.5).abs() < 1e-9);
        assert_eq!(c[2].text_rank, Some(0));
        assert_eq!(c[3].knn_rank, None);
    }

    #[test]
    fn the_transitions_list_joins_and_keeps_its_relative_score_and_source() {
        let c = merge_with_next(
            vec![(it("a"), 0.9)],
            vec![(it("p"), 1.0)],
            vec![],
            vec![
                (it("n"), 0.8, "x".into()),
                (it("a"), 0.4, "y".into()),
                (it("n"), 0.1, "z".into()),
            ],
        );
        let ids: Vec<_> = c.iter().map(|c| c.item.id.as_str()).collect();
        assert_eq!(
            ids,
            ["a", "p", "n"],
            "one candidate per item, in first-seen order"
        );
        assert_eq!(c[0].similarity, Some(0.9));
        assert_eq!(c[0].next, Some(0.5));
        assert_eq!(c[0].next_rank, Some(1));
        assert_eq!(c[0].next_after.as_deref(), Some("y"));
        assert_eq!(c[2].next, Some(1.0));
        assert_eq!(
            c[2].next_after.as_deref(),
            Some("x"),
            "the first occurrence wins"
        );
        assert_eq!(c[2].knn_rank, None);
        assert_eq!(c[1].next, None);
    }
}
