//! The metric of an index. Internally the index works with a *distance* (lower is better);
//! the public score is its negation, so that higher is better: cosine similarity, dot
//! product, or minus the squared L2 distance. The kernels themselves are the workspace's
//! one pair, `recd_core::vector::{dot, l2_squared}`.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// Similarity metric of an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Metric {
    /// Cosine similarity in \[-1, 1\]; vectors need not be normalized (the index normalizes
    /// them on the way in).
    #[serde(rename = "cosine")]
    Cosine,
    /// Dot product (maximum inner product search).
    #[serde(rename = "ip")]
    InnerProduct,
    /// Euclidean; the score is minus the squared distance.
    #[serde(rename = "l2")]
    L2,
}

impl Metric {
    /// The metric's configuration name: `"cosine"`, `"ip"` or `"l2"` (same as its serde form).
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Cosine => "cosine",
            Metric::InnerProduct => "ip",
            Metric::L2 => "l2",
        }
    }

    /// `v` in the form the index stores and scores it: times `inv_norm` (its `1 / |v|`)
    /// under cosine, so that a score is a plain dot product; as given otherwise.
    pub(crate) fn stored_form(self, v: &[f32], inv_norm: f32) -> Cow<'_, [f32]> {
        match self {
            Metric::Cosine => {
                Cow::Owned(v.iter().map(|&x| self.stored_value(x, inv_norm)).collect())
            }
            Metric::InnerProduct | Metric::L2 => Cow::Borrowed(v),
        }
    }

    /// One component of [`stored_form`](Self::stored_form), bit for bit.
    #[inline]
    pub(crate) fn stored_value(self, x: f32, inv_norm: f32) -> f32 {
        match self {
            Metric::Cosine => x * inv_norm,
            Metric::InnerProduct | Metric::L2 => x,
        }
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_serde_names_are_lowercase_and_match_as_str() {
        let names = [
            (Metric::Cosine, "cosine"),
            (Metric::InnerProduct, "ip"),
            (Metric::L2, "l2"),
        ];
        for (m, n) in names {
            assert_eq!(m.as_str(), n);
            assert_eq!(
                serde_json::to_string(&m).expect("serialize"),
                format!("\"{n}\"")
            );
            let back: Metric = serde_json::from_str(&format!("\"{n}\"")).expect("deserialize");
            assert_eq!(back, m);
        }
        assert!(serde_json::from_str::<Metric>("\"Cosine\"").is_err());
    }
}
