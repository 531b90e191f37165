//! The per-user event index's rows: a run of one user's sequence numbers, packed.
//!
//! The index lets forgetting a user and reading one user's history cost that user's events
//! rather than a scan of the log. Its first layout had one redb row per event, `(user,
//! seq)`, which made it 30 % of a checkpoint's CPU (BENCHMARKS.md, session 34): at a steady
//! load a checkpoint absorbs about ten events per active user, and each row is a B-tree
//! insert of its own. A checkpoint now writes one row per user (per [`MAX_RUN`] events):
//! the key is `(user, first sequence number)`, the value the gaps to the others, postcard
//! varints (one or two bytes each at a steady load).

use std::collections::BTreeMap;

/// The most sequence numbers one row holds: a user with more events in one checkpoint
/// (a bot, a backfill) gets several rows, so that no row grows without bound.
pub const MAX_RUN: usize = 1024;

/// A row's value was not written by [`pack`].
#[derive(Debug, thiserror::Error)]
#[error("corrupt per-user event index row: {0}")]
pub struct CorruptRun(String);

/// The value of the row keyed by `seqs[0]`: the gaps between consecutive sequence numbers.
/// `seqs` must be strictly increasing; an empty `seqs` has no row (and packs empty).
pub fn pack(seqs: &[u64]) -> Vec<u8> {
    let gaps: Vec<u64> = seqs.windows(2).map(|w| w[1] - w[0]).collect();
    // Serializing a Vec<u64> into a Vec cannot fail.
    postcard::to_stdvec(&gaps).unwrap_or_default()
}

/// The sequence numbers of the row keyed by `first` whose value is `value`.
pub fn unpack(first: u64, value: &[u8]) -> Result<Vec<u64>, CorruptRun> {
    let gaps: Vec<u64> = postcard::from_bytes(value).map_err(|e| CorruptRun(e.to_string()))?;
    let mut seqs = Vec::with_capacity(gaps.len() + 1);
    let mut seq = first;
    seqs.push(seq);
    for gap in gaps {
        seq = match seq.checked_add(gap) {
            Some(next) if gap > 0 => next,
            _ => return Err(CorruptRun(format!("gap {gap} after {seq}"))),
        };
        seqs.push(seq);
    }
    Ok(seqs)
}

/// Index rows waiting to be written: each user's sequence numbers in the order they were
/// absorbed (ascending), users in key order, so that the rows go into redb sorted.
#[derive(Debug, Default)]
pub struct Pending(BTreeMap<String, Vec<u64>>);

impl Pending {
    /// Adds `user`'s event `seq`, which is larger than any added for `user` before.
    pub fn push(&mut self, user: String, seq: u64) {
        self.0.entry(user).or_default().push(seq);
    }

    /// Takes `user`'s sequence numbers out (none if it has none).
    pub fn take(&mut self, user: &str) -> Vec<u64> {
        self.0.remove(user).unwrap_or_default()
    }

    /// Takes the rows out, in key order: `(user, run)`, each run at most [`MAX_RUN`] long
    /// and keyed by its first sequence number.
    pub fn drain_runs(&mut self) -> Vec<(String, Vec<u64>)> {
        let mut out = Vec::with_capacity(self.0.len());
        for (user, seqs) in std::mem::take(&mut self.0) {
            if seqs.len() <= MAX_RUN {
                out.push((user, seqs));
            } else {
                out.extend(seqs.chunks(MAX_RUN).map(|c| (user.clone(), c.to_vec())));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_round_trip_in_a_byte_or_two_per_event() {
        for seqs in [vec![7], vec![1, 2, 3], vec![5, 900, 901, 70_000, u64::MAX]] {
            let value = pack(&seqs);
            assert_eq!(unpack(seqs[0], &value).unwrap(), seqs);
        }
        // a steady load's gaps (tens to thousands of records) take one or two bytes
        let seqs: Vec<u64> = (0..100).map(|i| 1_000_000 + i * 3_000).collect();
        assert!(pack(&seqs).len() <= 1 + 2 * 99);
    }

    #[test]
    fn a_corrupt_value_is_an_error_not_a_panic_or_a_wrong_answer() {
        // truncated: the length says two gaps, one follows
        assert!(unpack(1, &[2, 5]).is_err());
        // a zero gap (a sequence number twice) and an overflowing one
        assert!(unpack(1, &pack(&[1, 3])).is_ok());
        assert!(unpack(1, &[1, 0]).is_err());
        assert!(unpack(u64::MAX - 1, &pack(&[0, 5])).is_err());
    }

    #[test]
    fn pending_rows_come_out_per_user_in_key_order_split_at_the_cap() {
        let mut p = Pending::default();
        for (user, seq) in [("b", 1u64), ("a", 2), ("b", 3), ("a", 9)] {
            p.push(user.into(), seq);
        }
        for seq in 10..10 + MAX_RUN as u64 + 2 {
            p.push("c".into(), seq);
        }
        p.push("d".into(), 4);
        assert_eq!(p.take("d"), [4]);
        assert!(p.take("d").is_empty());
        let rows = p.drain_runs();
        assert!(p.drain_runs().is_empty(), "drained");
        let shape: Vec<(&str, usize, u64)> = rows
            .iter()
            .map(|(u, s)| (u.as_str(), s.len(), s[0]))
            .collect();
        assert_eq!(
            shape,
            [
                ("a", 2, 2),
                ("b", 2, 1),
                ("c", MAX_RUN, 10),
                ("c", 2, 10 + MAX_RUN as u64)
            ]
        );
        assert_eq!(rows[0].1, [2, 9]);
    }
}
