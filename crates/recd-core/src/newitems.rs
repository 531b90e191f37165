//! New and cold items: a vector for an item the last training did not see, so that it can
//! be recommended by similarity before the next training.
//!
//! Two sources, in this order of preference:
//! - **Item fold-in** ([`fold_item`]): the mirror of the user fold-in ([`crate::foldin`]).
//!   With the user factors `X` of the live model fixed, an item touched by users `u` with
//!   summed positive event weights `w_u` gets the implicit-ALS item half-step
//!   `y = (XᵀX + λI + Σ_u alpha·w_u x_u x_uᵀ)⁻¹ Σ_u (1 + alpha·w_u) x_u`. It is the same
//!   system as a user's with the roles swapped, so [`FoldModel`] solves it (built on the
//!   Gram matrix of the *user* vectors). The stores keep a bounded list of each new
//!   item's interactions ([`touch`]); the fold-in runs once [`ready`] says enough users
//!   are in it.
//! - **Content map** ([`ContentModel`]): an item without interactions but with content
//!   (tag values, title words) gets `bias + Σ_j f_j W_j`, a ridge regression from hashed
//!   content features to the trained item vectors, fitted on the items the model trained
//!   ([`ContentModel::fit`]): the vector an average trained item with that content has.
//!
//! Pure math and bookkeeping; the stores keep the lists and the server decides when.

use serde::{Deserialize, Serialize};

use crate::experiment::hash::fnv1a64;
use crate::foldin::{FoldModel, cholesky, solve_factored};
use crate::item::{FieldValue, Item};
use crate::text::tokenize;

/// Settings of new and cold items (`[model.new_items]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NewItemParams {
    /// Fold new items in from their first interactions.
    pub fold_in: bool,
    /// Users with a positive interaction an item needs before it is folded in.
    pub min_interactions: usize,
    /// Most users kept per new item (the most recent ones).
    pub capacity: usize,
    /// Give items without a vector one from their content (tags, text fields) when a
    /// model is live.
    pub content: bool,
    /// Hash buckets of the content features.
    pub content_buckets: usize,
    /// Ridge penalty of the content map.
    pub content_regularization: f64,
}

/// `min_interactions = 3` keeps a single click from placing an item; the content map's
/// 1,024 buckets bound its fit (a Cholesky of up to 1,024², well under a second when a
/// model goes live); BENCHMARKS.md, "New items", has what they give.
impl Default for NewItemParams {
    fn default() -> Self {
        Self {
            fold_in: true,
            min_interactions: 3,
            capacity: 100,
            content: true,
            content_buckets: 1024,
            content_regularization: 1.0,
        }
    }
}

impl NewItemParams {
    /// Checks a configuration; the message names the key.
    pub fn check(&self) -> Result<(), crate::ValidationError> {
        if self.min_interactions == 0 {
            return crate::invalid!("new_items.min_interactions must be at least 1");
        }
        if self.capacity < self.min_interactions || self.capacity > 10_000 {
            return crate::invalid!(
                "new_items.capacity must be between min_interactions and 10000"
            );
        }
        if !(16..=65_536).contains(&self.content_buckets) {
            return crate::invalid!("new_items.content_buckets must be between 16 and 65536");
        }
        if !(self.content_regularization.is_finite() && self.content_regularization > 0.0) {
            return crate::invalid!("new_items.content_regularization must be a number > 0");
        }
        Ok(())
    }
}

/// Adds `user`'s event of weight `weight` to a new item's interactions (user, summed
/// positive weight), most recent first, at most `capacity` users (the oldest go). Only
/// positive weights count: training drops negative pairs, and the item half-step has
/// `p = 1` only for them.
pub fn touch(list: &mut Vec<(String, f32)>, user: &str, weight: f32, capacity: usize) {
    if !(weight.is_finite() && weight > 0.0) {
        return;
    }
    let before = match list.iter().position(|(u, _)| u == user) {
        Some(at) => list.remove(at).1,
        None => 0.0,
    };
    list.insert(0, (user.to_string(), before + weight));
    list.truncate(capacity.max(1));
}

/// Whether a new item's interactions are enough to fold it in.
pub fn ready(list: &[(String, f32)], params: &NewItemParams) -> bool {
    list.iter().filter(|(_, w)| *w > 0.0).count() >= params.min_interactions
}

/// The item's vector from `(user vector, summed weight)` pairs, with `model` built on the
/// user vectors' Gram matrix `XᵀX` ([`FoldModel::new`]): the ALS item half-step.
pub fn fold_item<'v>(
    model: &FoldModel,
    users: impl IntoIterator<Item = (&'v [f32], f32)>,
) -> Option<Vec<f32>> {
    model.solve(users).filter(|y| y.iter().any(|x| *x != 0.0))
}

/// An item's content features: each tag value (`field=value`) weighs 1, each word of a
/// text field `1/√n` for its `n` words (a long title counts as much as one tag), hashed
/// into `buckets`, summed per bucket, in bucket order. Numbers and booleans are left out.
pub fn content_features(item: &Item, buckets: usize) -> Vec<(u32, f32)> {
    let buckets = buckets.max(1) as u64;
    let mut out: Vec<(u32, f32)> = Vec::new();
    let mut push = |key: &[u8], w: f32| out.push(((fnv1a64(key) % buckets) as u32, w));
    for (field, value) in &item.fields {
        match value {
            FieldValue::Tags(tags) => {
                for t in tags {
                    push(format!("{field}={t}").as_bytes(), 1.0);
                }
            }
            FieldValue::Text(text) => {
                let words = tokenize(text);
                let w = 1.0 / (words.len().max(1) as f32).sqrt();
                for word in &words {
                    push(format!("{field}~{word}").as_bytes(), w);
                }
            }
            FieldValue::Number(_) | FieldValue::Bool(_) => {}
        }
    }
    out.sort_unstable_by_key(|(b, _)| *b);
    out.dedup_by(|later, first| {
        if later.0 == first.0 {
            first.1 += later.1;
            true
        } else {
            false
        }
    });
    out
}

/// One training row of the content map: an item's features and its trained vector.
pub type ContentRow<'v> = (Vec<(u32, f32)>, &'v [f32]);

/// The content map: `vector = bias + Σ_j f_j W_j` over an item's content features
/// ([`content_features`]). Only the buckets some training item used have a row.
#[derive(Debug, Clone, PartialEq)]
pub struct ContentModel {
    buckets: usize,
    dim: usize,
    bias: Vec<f32>,
    /// Bucket → its row of `W`, ascending buckets.
    rows: Vec<(u32, Vec<f32>)>,
}

/// Leading bytes of an encoded content map (format 1).
const MAGIC: &[u8; 4] = b"RCM1";

impl ContentModel {
    /// Fits the map by ridge regression on `(features, trained vector)` pairs: the bias is
    /// the vectors' mean, and `W = (FᵀF + λI)⁻¹ Fᵀ(Y − bias)` over the buckets used. `None`
    /// without any row with features, or when the vectors are not all of `dim`.
    pub fn fit(
        rows: &[ContentRow<'_>],
        buckets: usize,
        dim: usize,
        regularization: f64,
    ) -> Option<Self> {
        let rows: Vec<&ContentRow<'_>> = rows
            .iter()
            .filter(|(f, y)| !f.is_empty() && y.len() == dim)
            .collect();
        if rows.is_empty() || dim == 0 {
            return None;
        }
        let mut bias = vec![0f64; dim];
        for (_, y) in &rows {
            for (b, v) in bias.iter_mut().zip(y.iter()) {
                *b += f64::from(*v);
            }
        }
        bias.iter_mut().for_each(|b| *b /= rows.len() as f64);
        // Compact the used buckets: the system is as large as the vocabulary seen, not
        // as the hash space.
        let mut used: Vec<u32> = rows
            .iter()
            .flat_map(|(f, _)| f.iter().map(|(b, _)| *b))
            .collect();
        used.sort_unstable();
        used.dedup();
        let d = used.len();
        let at = |b: u32| used.binary_search(&b).ok();
        let mut a = vec![0f64; d * d];
        let mut rhs = vec![0f64; d * dim]; // column-major per output dimension: rhs[c*d + j]
        for (f, y) in &rows {
            let idx: Vec<(usize, f64)> = f
                .iter()
                .filter_map(|(b, w)| Some((at(*b)?, f64::from(*w))))
                .collect();
            for &(i, wi) in &idx {
                for &(j, wj) in &idx {
                    if j <= i {
                        a[i * d + j] += wi * wj;
                    }
                }
                for c in 0..dim {
                    rhs[c * d + i] += wi * (f64::from(y[c]) - bias[c]);
                }
            }
        }
        for i in 0..d {
            a[i * d + i] += regularization.max(1e-9);
        }
        cholesky(&mut a, d)?;
        for c in 0..dim {
            solve_factored(&a, &mut rhs[c * d..(c + 1) * d], d);
        }
        let rows_w = used
            .iter()
            .enumerate()
            .map(|(j, b)| (*b, (0..dim).map(|c| rhs[c * d + j] as f32).collect()))
            .collect();
        Some(Self {
            buckets,
            dim,
            bias: bias.iter().map(|b| *b as f32).collect(),
            rows: rows_w,
        })
    }

    /// The vector of `item` from its content; `None` when none of its features is known to
    /// the map (the bias alone would place every such item at the same point).
    pub fn apply(&self, item: &Item) -> Option<Vec<f32>> {
        let mut v = self.bias.clone();
        let mut any = false;
        for (b, w) in content_features(item, self.buckets) {
            if let Ok(at) = self.rows.binary_search_by_key(&b, |(r, _)| *r) {
                any = true;
                for (x, r) in v.iter_mut().zip(&self.rows[at].1) {
                    *x += w * r;
                }
            }
        }
        (any && v.iter().all(|x| x.is_finite()) && v.iter().any(|x| *x != 0.0)).then_some(v)
    }

    /// The vector dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// `RCM1`, then `u32` buckets, `u32` dim, the bias, a `u32` row count and per row its
    /// `u32` bucket and `dim` `f32`s, all little endian.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + 4 * (self.dim + self.rows.len() * (self.dim + 1)));
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(self.buckets as u32).to_le_bytes());
        out.extend_from_slice(&(self.dim as u32).to_le_bytes());
        self.bias
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
        out.extend_from_slice(&(self.rows.len() as u32).to_le_bytes());
        for (b, r) in &self.rows {
            out.extend_from_slice(&b.to_le_bytes());
            r.iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
        }
        out
    }

    /// Reads [`ContentModel::encode`]'s bytes back; `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let mut r = Reader { bytes, at: 0 };
        if r.take(4)? != MAGIC {
            return None;
        }
        let buckets = r.u32()? as usize;
        let dim = r.u32()? as usize;
        let bias = r.f32s(dim)?;
        let n = r.u32()? as usize;
        let mut rows = Vec::with_capacity(n.min(1 << 16));
        for _ in 0..n {
            let b = r.u32()?;
            rows.push((b, r.f32s(dim)?));
        }
        (r.at == bytes.len()).then_some(Self {
            buckets,
            dim,
            bias,
            rows,
        })
    }
}

/// A cursor over encoded bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let out = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(out)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn f32s(&mut self, n: usize) -> Option<Vec<f32>> {
        let raw = self.take(n.checked_mul(4)?)?;
        Some(
            raw.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::foldin::{FoldInParams, Gram};
    use crate::vector::dot;
    use std::collections::BTreeMap;

    fn rng(seed: u64) -> impl FnMut() -> f32 {
        let mut s = seed | 1;
        move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 11) as f64 / (1u64 << 53) as f64 - 0.5) as f32
        }
    }

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        dot(a, b) / (dot(a, a).sqrt() * dot(b, b).sqrt())
    }

    #[test]
    fn touch_sums_a_users_weights_keeps_the_most_recent_and_ignores_negatives() {
        let mut list = Vec::new();
        touch(&mut list, "a", 1.0, 2);
        touch(&mut list, "b", 2.0, 2);
        touch(&mut list, "a", 0.5, 2);
        touch(&mut list, "c", -3.0, 2);
        assert_eq!(list, [("a".to_string(), 1.5), ("b".to_string(), 2.0)]);
        touch(&mut list, "c", 1.0, 2);
        assert_eq!(list, [("c".to_string(), 1.0), ("a".to_string(), 1.5)]);
        let p = NewItemParams {
            min_interactions: 3,
            ..Default::default()
        };
        assert!(!ready(&list, &p));
        touch(&mut list, "d", 1.0, 3);
        assert!(ready(&list, &p));
        assert!(NewItemParams::default().check().is_ok());
    }

    /// Users whose vectors point at a planted item vector interact with it; the fold-in
    /// (the ALS item step over the user factors) must point where the planted one does.
    #[test]
    fn the_item_fold_in_recovers_a_planted_item_vector() {
        let (k, n) = (8, 400);
        let mut r = rng(7);
        let users: Vec<Vec<f32>> = (0..n).map(|_| (0..k).map(|_| r()).collect()).collect();
        let planted: Vec<f32> = (0..k).map(|_| r()).collect();
        let mut gram = Gram::new(k);
        users.iter().for_each(|x| gram.add(x));
        let model = FoldModel::new(
            &gram,
            &FoldInParams {
                regularization: 0.1,
                alpha: 2.0,
                share: 1.0,
                session_mix: 0.0,
                ..Default::default()
            },
        )
        .unwrap();
        // the 30 users the planted item scores highest for touched it
        let mut by_score: Vec<(f32, usize)> = users
            .iter()
            .enumerate()
            .map(|(u, x)| (dot(x, &planted), u))
            .collect();
        by_score.sort_by(|a, b| b.0.total_cmp(&a.0));
        let touched: Vec<usize> = by_score.iter().take(30).map(|(_, u)| *u).collect();
        let y = fold_item(&model, touched.iter().map(|&u| (users[u].as_slice(), 1.0))).unwrap();
        assert!(
            cosine(&y, &planted) > 0.9,
            "cosine {}",
            cosine(&y, &planted)
        );
        // and it ranks its own users above the rest
        let mut ranked: Vec<(f32, usize)> = users
            .iter()
            .enumerate()
            .map(|(u, x)| (dot(x, &y), u))
            .collect();
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
        let top: Vec<usize> = ranked.iter().take(30).map(|(_, u)| *u).collect();
        let hits = top.iter().filter(|u| touched.contains(u)).count();
        assert!(hits >= 20, "{hits} of 30");
        // without any interaction there is nothing to solve
        assert_eq!(fold_item(&model, std::iter::empty()), None);
    }

    fn item(tags: &[&str], title: &str) -> Item {
        let mut fields = BTreeMap::new();
        fields.insert(
            "genre".to_string(),
            FieldValue::Tags(tags.iter().map(|t| t.to_string()).collect()),
        );
        if !title.is_empty() {
            fields.insert("title".to_string(), FieldValue::Text(title.to_string()));
        }
        Item {
            id: "x".into(),
            vector: None,
            fields,
        }
    }

    /// Trained vectors made from planted per-feature factors: the map fitted on some items
    /// must give unseen combinations of the same features their planted vectors.
    #[test]
    fn the_content_map_recovers_planted_factors() {
        let (dim, buckets) = (4, 256);
        let tags = ["action", "drama", "comedy", "horror", "kids", "war", "noir"];
        let words = ["star", "night", "return", "love", "dead"];
        let mut r = rng(11);
        let bias: Vec<f32> = (0..dim).map(|_| r()).collect();
        // planted rows per bucket (so that colliding features share theirs, as in the map)
        let planted: BTreeMap<u32, Vec<f32>> = (0..buckets as u32)
            .map(|b| (b, (0..dim).map(|_| 2.0 * r()).collect()))
            .collect();
        let truth = |it: &Item| {
            let mut v = bias.clone();
            for (b, w) in content_features(it, buckets) {
                for (x, p) in v.iter_mut().zip(&planted[&b]) {
                    *x += w * p;
                }
            }
            v
        };
        let mut train = Vec::new();
        for i in 0..120 {
            let t = [tags[i % 7], tags[(i / 7 + 3) % 7]];
            let title = format!("{} {}", words[i % 5], words[(i / 5 + 1) % 5]);
            train.push(item(&t, &title));
        }
        let targets: Vec<Vec<f32>> = train.iter().map(truth).collect();
        let rows: Vec<ContentRow<'_>> = train
            .iter()
            .zip(&targets)
            .map(|(it, y)| (content_features(it, buckets), y.as_slice()))
            .collect();
        let map = ContentModel::fit(&rows, buckets, dim, 1e-4).unwrap();
        let unseen = item(&["noir", "kids"], "dead love");
        let want = truth(&unseen);
        let got = map.apply(&unseen).unwrap();
        let err: f32 = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(err < 0.05, "{got:?} vs {want:?}");
        // nothing known: no vector
        assert_eq!(map.apply(&item(&["western"], "")), None);
        assert_eq!(ContentModel::decode(&map.encode()), Some(map.clone()));
        assert_eq!(ContentModel::decode(b"RCM1"), None);
    }
}
