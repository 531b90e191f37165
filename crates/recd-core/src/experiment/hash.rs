//! Stable hashing of ids to a point of the unit interval, for deterministic assignment.
//!
//! A user's variant must not change when the server restarts, is rebuilt with a newer
//! compiler or dependency, runs on another platform or in another process. Std's
//! `DefaultHasher` and seeded hashers promise none of this, so the hash is defined here:
//! FNV-1a 64 over the bytes of the key, finished with the SplitMix64 mixer (FNV-1a alone
//! mixes the last bytes poorly into the high bits, which the unit-interval mapping uses).
//! Both are a few lines of wrapping integer arithmetic whose output is fixed by the tests'
//! golden values.

/// FNV-1a 64 offset basis.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64 prime.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Separates the parts of a hashed key. 0xFF never occurs in UTF-8, so
/// `domain, namespace, 0xFF, user` encodes (namespace, user) unambiguously.
const SEPARATOR: u8 = 0xFF;

/// What a hash is for; a different domain gives an independent hash of the same ids
/// (an experiment called "x" and a layer called "x" do not split users alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Domain {
    /// The variant bucket of [`bucket`].
    Variant = 1,
    /// The layer bucket of [`layer_bucket`].
    Layer = 2,
    /// Whether a user is in an experiment's holdout.
    Holdout = 3,
    /// The seed of a reproducible random stream ([`seed_from_id`]).
    Seed = 4,
}

/// FNV-1a 64 of `bytes`, continuing from `state` (start from the offset basis).
fn fnv1a_extend(mut state: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        state ^= u64::from(b);
        state = state.wrapping_mul(FNV_PRIME);
    }
    state
}

/// FNV-1a 64 of `bytes`.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    fnv1a_extend(FNV_OFFSET, bytes)
}

/// The SplitMix64 finalizer: a bijection of `u64` with full avalanche.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The 64-bit hash of (`domain`, `namespace`, `user`).
pub(crate) fn hash_key(domain: Domain, namespace: &str, user: &str) -> u64 {
    let mut h = fnv1a_extend(FNV_OFFSET, &[domain as u8]);
    h = fnv1a_extend(h, namespace.as_bytes());
    h = fnv1a_extend(h, &[SEPARATOR]);
    h = fnv1a_extend(h, user.as_bytes());
    mix64(h)
}

/// The top 53 bits of `h` as a float in [0, 1) (every value exactly representable).
pub fn unit_interval(h: u64) -> f64 {
    (h >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// The point of [0, 1) that `user_id` falls on in experiment `experiment_id`: picks its
/// variant by cumulative weight. Uniform over users and independent between experiments.
pub fn bucket(experiment_id: &str, user_id: &str) -> f64 {
    unit_interval(hash_key(Domain::Variant, experiment_id, user_id))
}

/// The point of [0, 1) that `user_id` falls on in layer `layer_id`: the experiments of a
/// layer own disjoint ranges of it (see [`super::assign::Layer`]). Independent of every
/// experiment's [`bucket`], so the variants split each range evenly.
pub fn layer_bucket(layer_id: &str, user_id: &str) -> f64 {
    unit_interval(hash_key(Domain::Layer, layer_id, user_id))
}

/// The holdout point of `user_id` in `experiment_id`, independent of [`bucket`], so that
/// changing the holdout share moves users only in and out of the holdout, never between
/// variants.
pub(crate) fn holdout_bucket(experiment_id: &str, user_id: &str) -> f64 {
    unit_interval(hash_key(Domain::Holdout, experiment_id, user_id))
}

/// A 64-bit seed derived from an id (e.g. a recommendation id), stable like [`bucket`],
/// for random choices that must be reproducible later (an interleaving's coin flips).
pub fn seed_from_id(id: &str) -> u64 {
    hash_key(Domain::Seed, "", id)
}

/// SplitMix64 (Steele, Lea & Flood 2014): a tiny generator whose sequence is fixed by its
/// definition, unlike `rand`'s `StdRng`, which may change between `rand` versions. Used
/// where a random sequence must be reproducible from a stored seed.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.state)
    }

    /// A fair coin.
    pub fn coin(&mut self) -> bool {
        self.next_u64() >> 63 == 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_matches_the_published_test_vectors() {
        // From the FNV reference test suite (draft-eastlake-fnv).
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn splitmix64_matches_the_reference_sequence() {
        // The first outputs of the reference SplitMix64 seeded with 0 (as in Vigna's
        // splitmix64.c, used to seed xoshiro).
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(r.next_u64(), 0x6e78_9e6a_a1b9_65f4);
        assert_eq!(r.next_u64(), 0x06c4_5d18_8009_454f);
    }

    #[test]
    fn buckets_are_pinned() {
        // Golden values: a change here reassigns every user of every running experiment.
        assert_eq!(hash_key(Domain::Variant, "exp", "user-1"), GOLDEN_VARIANT);
        assert_eq!(hash_key(Domain::Layer, "exp", "user-1"), GOLDEN_LAYER);
        assert_eq!(seed_from_id("rec-42"), GOLDEN_SEED);
    }
    // Computed by a separate Python transcription of FNV-1a 64 + SplitMix64's mixer.
    const GOLDEN_VARIANT: u64 = 0xc3e8_883b_a92b_adab;
    const GOLDEN_LAYER: u64 = 0x5607_b787_abbd_bb9f;
    const GOLDEN_SEED: u64 = 0xda61_d36e_1a2e_8afb;

    #[test]
    fn unit_interval_covers_zero_to_just_below_one() {
        assert_eq!(unit_interval(0), 0.0);
        let top = unit_interval(u64::MAX);
        assert!(top < 1.0 && top > 1.0 - 1e-15);
    }

    #[test]
    fn keys_are_unambiguous() {
        // ("ab", "c") and ("a", "bc") concatenate alike without the separator.
        assert_ne!(bucket("ab", "c"), bucket("a", "bc"));
        assert_ne!(bucket("x", "u"), layer_bucket("x", "u"));
        assert_ne!(bucket("x", "u"), holdout_bucket("x", "u"));
    }

    #[test]
    fn buckets_are_uniform() {
        // 10 equal bins over 100k users: each within 3 % of 10k (about 3 standard
        // deviations of a bin's count).
        let mut bins = [0u32; 10];
        for u in 0..100_000 {
            let b = bucket("uniformity", &format!("user-{u}"));
            assert!((0.0..1.0).contains(&b));
            bins[(b * 10.0) as usize] += 1;
        }
        for (i, &c) in bins.iter().enumerate() {
            assert!((9_700..=10_300).contains(&c), "bin {i} has {c}");
        }
    }
}
