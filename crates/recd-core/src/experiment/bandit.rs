//! Thompson sampling over arms with Beta posteriors, with a floor of uniform exploration.
//!
//! Each arm (a variant, a ranker, a slate policy) keeps successes and failures (clicks and
//! non-clicks). To serve a request, draw one sample from each arm's Beta(1 + successes,
//! 1 + failures) posterior and choose the arm with the largest draw: an arm is chosen
//! with the posterior probability that it is the best, so traffic moves to the winner as
//! evidence accumulates while uncertain arms keep being tried (Thompson 1933; Chapelle &
//! Li, "An Empirical Evaluation of Thompson Sampling", NIPS 2011).
//!
//! `min_explore` reserves a share of the traffic for a uniformly random arm, so every
//! arm keeps getting fresh data (click-through rates drift; a posterior that collapsed on
//! an early bad streak needs a way back) and the logged choices keep a known minimum
//! propensity of `min_explore / arms` for off-policy evaluation.

use rand::{Rng, RngExt};
use rand_distr::{Beta, Distribution};
use serde::{Deserialize, Serialize};

use super::stats::bayes::BetaPosterior;
use super::stats::{StatsError, invalid_arg};

/// An arm's record: successes and failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Arm {
    /// Rewarded pulls (clicks).
    pub successes: u64,
    /// Unrewarded pulls.
    pub failures: u64,
}

impl Arm {
    /// The arm's Beta(1 + successes, 1 + failures) posterior.
    pub fn posterior(&self) -> BetaPosterior {
        BetaPosterior {
            alpha: 1.0 + self.successes as f64,
            beta: 1.0 + self.failures as f64,
        }
    }
}

fn samplers(arms: &[Arm], min_explore: f64) -> Result<Vec<Beta<f64>>, StatsError> {
    if arms.is_empty() {
        return invalid_arg!("no arms to choose from");
    }
    if !(0.0..=1.0).contains(&min_explore) {
        return invalid_arg!("min_explore {min_explore} is not in [0, 1]");
    }
    arms.iter()
        .map(|a| {
            let p = a.posterior();
            Beta::new(p.alpha, p.beta)
                .map_err(|e| StatsError::Invalid(format!("Beta({}, {}): {e}", p.alpha, p.beta)))
        })
        .collect()
}

/// The index of the largest posterior draw (the first on a tie).
fn thompson_pick<R: Rng + ?Sized>(samplers: &[Beta<f64>], rng: &mut R) -> usize {
    let mut best = (0, f64::NEG_INFINITY);
    for (i, s) in samplers.iter().enumerate() {
        let draw = s.sample(rng);
        if draw > best.1 {
            best = (i, draw);
        }
    }
    best.0
}

/// Chooses an arm: with probability `min_explore` (in [0, 1]) a uniformly random one,
/// otherwise by Thompson sampling. Errors on no arms or a bad `min_explore`.
pub fn choose<R: Rng + ?Sized>(
    arms: &[Arm],
    min_explore: f64,
    rng: &mut R,
) -> Result<usize, StatsError> {
    let samplers = samplers(arms, min_explore)?;
    if min_explore > 0.0 && rng.random::<f64>() < min_explore {
        return Ok(rng.random_range(0..arms.len()));
    }
    Ok(thompson_pick(&samplers, rng))
}

/// Each arm's probability of being chosen by [`choose`]: `min_explore / arms` plus
/// `1 − min_explore` times its probability of having the largest posterior draw, the
/// latter estimated from `draws` Thompson rounds (Monte Carlo standard error
/// ≤ 0.5/√draws). Sums to 1. For reporting the traffic split a bandit is heading for.
pub fn traffic_shares<R: Rng + ?Sized>(
    arms: &[Arm],
    min_explore: f64,
    draws: usize,
    rng: &mut R,
) -> Result<Vec<f64>, StatsError> {
    let samplers = samplers(arms, min_explore)?;
    if draws == 0 {
        return invalid_arg!("no Monte Carlo draws");
    }
    let mut wins = vec![0usize; arms.len()];
    for _ in 0..draws {
        wins[thompson_pick(&samplers, rng)] += 1;
    }
    let uniform = min_explore / arms.len() as f64;
    Ok(wins
        .into_iter()
        .map(|w| uniform + (1.0 - min_explore) * w as f64 / draws as f64)
        .collect())
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::Xoshiro256PlusPlus;

    use super::*;

    #[test]
    fn bad_inputs() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        assert!(choose(&[], 0.1, &mut rng).is_err());
        assert!(choose(&[Arm::default()], 1.5, &mut rng).is_err());
        assert!(choose(&[Arm::default()], f64::NAN, &mut rng).is_err());
        assert!(traffic_shares(&[Arm::default()], 0.1, 0, &mut rng).is_err());
        assert_eq!(choose(&[Arm::default()], 0.3, &mut rng).unwrap(), 0);
    }

    #[test]
    fn traffic_shares_match_the_posterior_probability_of_being_best() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(2);
        // Two arms 120/1000 and 140/1000: P(second is best) = 0.9078725863702231 by
        // numerical integration (scripts/experiment-reference.py, "Bayesian"). With
        // 20k draws within 0.01; with 10 % exploration 0.05 + 0.9 × that.
        let arms = [
            Arm {
                successes: 120,
                failures: 880,
            },
            Arm {
                successes: 140,
                failures: 860,
            },
        ];
        let p = 0.9078725863702231;
        let shares = traffic_shares(&arms, 0.0, 20_000, &mut rng).unwrap();
        assert!((shares[1] - p).abs() < 0.01, "{shares:?}");
        let shares = traffic_shares(&arms, 0.1, 20_000, &mut rng).unwrap();
        assert!((shares[1] - (0.05 + 0.9 * p)).abs() < 0.01, "{shares:?}");
        assert!((shares.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        // Pure exploration: uniform, exactly.
        let shares = traffic_shares(&arms, 1.0, 10, &mut rng).unwrap();
        assert_eq!(shares, vec![0.5, 0.5]);
        // And `choose` follows the shares: 10k choices within 0.02 of them.
        let explore = 0.2;
        let expected = traffic_shares(&arms, explore, 20_000, &mut rng).unwrap();
        let second = (0..10_000)
            .filter(|_| choose(&arms, explore, &mut rng).unwrap() == 1)
            .count();
        assert!(
            (second as f64 / 10_000.0 - expected[1]).abs() < 0.02,
            "{second} vs {expected:?}"
        );
    }

    #[test]
    fn moves_traffic_to_the_best_of_three_arms() {
        // Three arms with CTRs 0.02, 0.03 and 0.05 and 5 % forced exploration, starting
        // from nothing. Stated budget: within 10 000 impressions the bandit sends ≥ 80 %
        // of the next 2 000 impressions (10 001–12 000) to the 0.05 arm, and its traffic
        // shares say the same.
        let ctrs = [0.02, 0.03, 0.05];
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        let mut arms = [Arm::default(); 3];
        let mut best_late = 0;
        for t in 0..12_000 {
            let i = choose(&arms, 0.05, &mut rng).unwrap();
            if rng.random::<f64>() < ctrs[i] {
                arms[i].successes += 1;
            } else {
                arms[i].failures += 1;
            }
            if t >= 10_000 && i == 2 {
                best_late += 1;
            }
        }
        let share = best_late as f64 / 2_000.0;
        assert!(
            share >= 0.8,
            "best arm got {share} of impressions 10 001–12 000: {arms:?}"
        );
        let shares = traffic_shares(&arms, 0.05, 10_000, &mut rng).unwrap();
        assert!(shares[2] >= 0.8, "{shares:?}");
    }

    #[test]
    fn equal_arms_share_evenly() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(4);
        let arms = [Arm {
            successes: 30,
            failures: 970,
        }; 3];
        for s in traffic_shares(&arms, 0.0, 30_000, &mut rng).unwrap() {
            assert!((s - 1.0 / 3.0).abs() < 0.015, "{s}");
        }
    }
}
