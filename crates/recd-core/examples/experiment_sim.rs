//! Seeded simulations of recd's experiment statistics, printed as CSV (docs/experiments.md,
//! drawn by scripts/plot-experiments.sh).
//!
//! ```text
//! cargo run -p recd-core --example experiment_sim -- --which bandit
//! cargo run -p recd-core --example experiment_sim -- --which interleaving
//! ```
//!
//! Without `--which` both sections are printed, separated by a blank line. The CSV goes to
//! stdout; diagnostics (rates, formula predictions, checks) go to stderr as `#` lines.
//!
//! # Bandit regret (`--which bandit`)
//!
//! Three arms with click-through rates 0.02, 0.03 and 0.05; 20 000 impressions, each shown
//! the arm a policy picks, clicked with that arm's rate (a Bernoulli draw) and fed back to
//! the policy as a success or failure. Policies:
//!
//! - `thompson`: [`bandit::choose`] with `min_explore` 0.05 (Beta(1, 1) priors);
//! - `uniform`: a fixed equal split, as an A/B/n test serves (a uniformly random arm);
//! - `epsilon_greedy`: with probability 0.1 a uniformly random arm, otherwise the arm with
//!   the best observed click rate (untried arms first, ties broken at random).
//!
//! Regret is the expected clicks lost against always showing the 0.05 arm, summed over the
//! impressions so far: Σₜ (0.05 − ctr(armₜ)). It uses the arms' true rates, not the drawn
//! clicks, so it has no click noise of its own. Averaged over 20 seeds per policy; one row
//! every 100 impressions: `impression,thompson,uniform,epsilon_greedy`.
//!
//! # A/B test vs interleaving (`--which interleaving`)
//!
//! The click model, shared by both methods:
//!
//! - A population of 4 000 simulated users. User u has 50 candidate items with
//!   attractiveness a_ui = min(0.9, 0.03 · m_u · exp(g_i)), g_i ~ N(0, 1) per item and an
//!   activity m_u = exp(0.5·N(0, 1) − 0.125) per user (mean 1).
//! - Ranker A scores item i by ln a_ui + z_i, z_i ~ N(0, 1): a model that knows the
//!   attractiveness up to noise. Ranker B is the same model with less of the same noise,
//!   ln a_ui + (1 − λ)·z_i, so for small λ its list is A's with a few items swapped or moved
//!   up, and its top items are slightly more attractive. Each shows its top 10.
//! - Position-biased clicks: the user examines position k (0-based) with probability
//!   1/(k + 1) and clicks an examined item with its attractiveness, independently per
//!   position.
//!
//! The effect is the relative lift in the A/B metric, the share of users who click at all:
//! p_B / p_A − 1. For each target effect (1 %, 2 %, 3 %, 5 %, 10 %, 20 %) λ is found by
//! bisection, and the effect printed is the one reached, computed exactly on the population.
//!
//! Each experiment user is drawn uniformly from the population and sees one list:
//!
//! - A/B: half of the users see A's list, half B's; a user counts as a success when they
//!   click at least once; [`two_proportion_ztest`] of B against A.
//! - Interleaving: every user sees [`team_draft`] of A's and B's lists (10 slots) and the
//!   impression goes to the team with more clicks ([`outcome`]); the [`sign_test`] over
//!   the impressions with a winner. One impression per user.
//!
//! An experiment detects B when its two-sided p-value is below α = 0.05 and the estimate
//! favours B. The users needed for 80 % power are estimated by simulation: the exact
//! per-user probabilities (p_A, p_B; P(A wins), P(B wins), by enumerating the 2⁵ coin
//! patterns of the draft and convolving the clicks) make a user's outcome an independent
//! draw, so an experiment of n users is a binomial (A/B) or multinomial (interleaving) draw
//! of counts, on which the real test is run. Power is measured at 9 sizes from half to
//! twice the textbook prediction ([`sample_size_exact`], [`required_impressions`]), 4 000
//! experiments each; probit(power) is linear in √n for both tests, so a least-squares line
//! through the points gives the n of 80 % power, which is checked with 10 000 more
//! experiments. At the two largest effects the same experiments are also run user by user
//! (sampled clicks on drafted lists, [`Tally`]), 500 of each, as a check on the shortcut.
//! Row: `effect,ab_users,interleaving_users,ratio` (users in the whole experiment, both
//! A/B variants together; ratio = ab_users / interleaving_users).

use std::process::ExitCode;

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use rand_distr::{Binomial, Distribution, StandardNormal};
use recd_core::experiment::bandit::{self, Arm};
use recd_core::experiment::interleave::{
    Tally, Team, outcome, required_impressions, sign_test, team_draft, team_draft_with,
};
use recd_core::experiment::stats::{Effect, Proportion, sample_size_exact, two_proportion_ztest};
use statrs::distribution::{ContinuousCDF, Normal};

// ---- bandit ----

const CTRS: [f64; 3] = [0.02, 0.03, 0.05];
const IMPRESSIONS: usize = 20_000;
const BANDIT_SEEDS: u64 = 20;
const EVERY: usize = 100;
const MIN_EXPLORE: f64 = 0.05;
const EPSILON: f64 = 0.1;

#[derive(Debug, Clone, Copy)]
enum Policy {
    Thompson,
    Uniform,
    EpsilonGreedy,
}

const POLICIES: [Policy; 3] = [Policy::Thompson, Policy::Uniform, Policy::EpsilonGreedy];

fn choose_arm(policy: Policy, arms: &[Arm], rng: &mut Xoshiro256PlusPlus) -> usize {
    match policy {
        Policy::Thompson => bandit::choose(arms, MIN_EXPLORE, rng).expect("valid arms"),
        Policy::Uniform => rng.random_range(0..arms.len()),
        Policy::EpsilonGreedy => {
            if rng.random::<f64>() < EPSILON {
                rng.random_range(0..arms.len())
            } else {
                greedy(arms, rng)
            }
        }
    }
}

/// The arm with the best observed click rate; untried arms first; ties at random.
fn greedy(arms: &[Arm], rng: &mut Xoshiro256PlusPlus) -> usize {
    let mean = |a: &Arm| match a.successes + a.failures {
        0 => f64::INFINITY,
        n => a.successes as f64 / n as f64,
    };
    let best = arms.iter().map(mean).fold(f64::NEG_INFINITY, f64::max);
    let tied: Vec<usize> = (0..arms.len())
        .filter(|&i| mean(&arms[i]) >= best)
        .collect();
    tied[rng.random_range(0..tied.len())]
}

fn bandit_regret() {
    let best = CTRS.iter().copied().fold(0.0, f64::max);
    let best_arm = CTRS.iter().position(|&c| c >= best).unwrap_or(0);
    let mut regret = vec![[0.0f64; 3]; IMPRESSIONS / EVERY];
    let late = 2_000;
    for (p, &policy) in POLICIES.iter().enumerate() {
        let mut finals = Vec::new();
        let mut best_late = 0u64;
        for seed in 0..BANDIT_SEEDS {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(0xB4_0000 + seed * 16 + p as u64);
            let mut arms = [Arm::default(); 3];
            let mut cumulative = 0.0;
            for t in 1..=IMPRESSIONS {
                let i = choose_arm(policy, &arms, &mut rng);
                cumulative += best - CTRS[i];
                if rng.random::<f64>() < CTRS[i] {
                    arms[i].successes += 1;
                } else {
                    arms[i].failures += 1;
                }
                if t % EVERY == 0 {
                    regret[t / EVERY - 1][p] += cumulative / BANDIT_SEEDS as f64;
                }
                if t > IMPRESSIONS - late && i == best_arm {
                    best_late += 1;
                }
            }
            finals.push(cumulative);
        }
        let (mean, sd) = mean_sd(&finals);
        let (lo, hi) = finals
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &x| {
                (l.min(x), h.max(x))
            });
        eprintln!(
            "# bandit {policy:?}: regret after {IMPRESSIONS} = {mean:.1} clicks (sd {sd:.1}, \
             range {lo:.1}-{hi:.1} over {BANDIT_SEEDS} seeds); best arm got {:.1} % of the \
             last {late} impressions",
            100.0 * best_late as f64 / (late as f64 * BANDIT_SEEDS as f64)
        );
    }
    println!("impression,thompson,uniform,epsilon_greedy");
    for (k, r) in regret.iter().enumerate() {
        println!("{},{:.3},{:.3},{:.3}", (k + 1) * EVERY, r[0], r[1], r[2]);
    }
}

fn mean_sd(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, var.sqrt())
}

// ---- A/B vs interleaving ----

const USERS: usize = 4_000;
const CANDIDATES: usize = 50;
const SHOWN: usize = 10;
const ROUNDS: u32 = (SHOWN / 2) as u32;
const BASE_ATTRACTIVENESS: f64 = 0.03;
const USER_SPREAD: f64 = 0.5;
const MAX_ATTRACTIVENESS: f64 = 0.9;
const EFFECTS: [f64; 6] = [0.01, 0.02, 0.03, 0.05, 0.10, 0.20];
const ALPHA: f64 = 0.05;
const POWER: f64 = 0.8;
const GRID_RUNS: usize = 4_000;
const VERIFY_RUNS: usize = 10_000;
const USER_LEVEL_RUNS: usize = 500;

/// One simulated user: the candidates' attractiveness (click probability when examined),
/// their log, ranker A's score noise, and A's list.
struct User {
    attractiveness: Vec<f64>,
    log_attractiveness: Vec<f64>,
    noise: Vec<f64>,
    list_a: Vec<usize>,
}

fn examine(position: usize) -> f64 {
    1.0 / (position as f64 + 1.0)
}

impl User {
    fn new(rng: &mut Xoshiro256PlusPlus) -> Self {
        let z: f64 = StandardNormal.sample(rng);
        let activity = (USER_SPREAD * z - USER_SPREAD * USER_SPREAD / 2.0).exp();
        let attractiveness: Vec<f64> = (0..CANDIDATES)
            .map(|_| {
                let g: f64 = StandardNormal.sample(rng);
                (BASE_ATTRACTIVENESS * activity * g.exp()).min(MAX_ATTRACTIVENESS)
            })
            .collect();
        let log_attractiveness = attractiveness.iter().map(|a| a.ln()).collect();
        let noise = (0..CANDIDATES)
            .map(|_| StandardNormal.sample(rng))
            .collect();
        let mut user = Self {
            attractiveness,
            log_attractiveness,
            noise,
            list_a: Vec::new(),
        };
        user.list_a = user.ranked(1.0);
        user
    }

    /// The top `SHOWN` candidates by ln a + `noise_scale`·z, best first.
    fn ranked(&self, noise_scale: f64) -> Vec<usize> {
        let mut scored: Vec<(f64, usize)> = self
            .log_attractiveness
            .iter()
            .zip(&self.noise)
            .enumerate()
            .map(|(i, (la, z))| (la + noise_scale * z, i))
            .collect();
        let by_score = |x: &(f64, usize), y: &(f64, usize)| y.0.total_cmp(&x.0);
        scored.select_nth_unstable_by(SHOWN - 1, by_score);
        scored.truncate(SHOWN);
        scored.sort_by(by_score);
        scored.into_iter().map(|(_, i)| i).collect()
    }

    fn click_probability(&self, item: usize, position: usize) -> f64 {
        self.attractiveness[item] * examine(position)
    }

    /// P(at least one click) on `list`.
    fn p_any_click(&self, list: &[usize]) -> f64 {
        1.0 - list
            .iter()
            .enumerate()
            .map(|(k, &i)| 1.0 - self.click_probability(i, k))
            .product::<f64>()
    }

    /// Sampled clicks on `list`: whether the user clicked anything.
    fn clicks_any(&self, list: &[usize], rng: &mut Xoshiro256PlusPlus) -> bool {
        // Every position is drawn (no early exit), as a user who keeps browsing would.
        list.iter()
            .enumerate()
            .map(|(k, &i)| rng.random::<f64>() < self.click_probability(i, k))
            .fold(false, |any, c| any | c)
    }

    /// Exact P(A wins), P(B wins), P(tie) of this user's interleaved impression of A's
    /// list and `list_b`: every coin pattern of the draft (equally likely), the
    /// distribution of A's minus B's clicks by convolution over the slots.
    fn win_probabilities(&self, list_b: &[usize]) -> (f64, f64, f64) {
        const MID: usize = SHOWN / 2;
        let (mut qa, mut qb, mut tie) = (0.0, 0.0, 0.0);
        for pattern in 0..1u32 << ROUNDS {
            let mut bit = 0;
            let slots = team_draft_with(&self.list_a, list_b, SHOWN, || {
                bit += 1;
                pattern >> (bit - 1) & 1 == 1
            });
            // dist[d + MID] = P(A's clicks − B's clicks = d); each team has ≤ MID slots.
            let mut dist = [0.0f64; SHOWN + 1];
            dist[MID] = 1.0;
            let mut none = 1.0;
            for (k, s) in slots.iter().enumerate() {
                let p = self.click_probability(s.id, k);
                none *= 1.0 - p;
                let mut next = [0.0f64; SHOWN + 1];
                for (i, &w) in dist.iter().enumerate() {
                    if w == 0.0 {
                        continue;
                    }
                    next[i] += w * (1.0 - p);
                    match s.team {
                        Team::A => next[i + 1] += w * p,
                        Team::B => next[i - 1] += w * p,
                    }
                }
                dist = next;
            }
            qa += dist[MID + 1..].iter().sum::<f64>();
            qb += dist[..MID].iter().sum::<f64>();
            // dist[MID] includes the impressions without clicks; a tie needs clicks.
            tie += dist[MID] - none;
        }
        let m = f64::from(1u32 << ROUNDS);
        (qa / m, qb / m, tie / m)
    }
}

struct Population {
    users: Vec<User>,
    p_a: f64,
}

impl Population {
    fn new(seed: u64) -> Self {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let users: Vec<User> = (0..USERS).map(|_| User::new(&mut rng)).collect();
        let p_a = users.iter().map(|u| u.p_any_click(&u.list_a)).sum::<f64>() / USERS as f64;
        Self { users, p_a }
    }

    /// Ranker B's lists for improvement `lambda` (noise scale 1 − λ).
    fn lists_b(&self, lambda: f64) -> Vec<Vec<usize>> {
        self.users.iter().map(|u| u.ranked(1.0 - lambda)).collect()
    }

    fn p_b(&self, lists_b: &[Vec<usize>]) -> f64 {
        self.users
            .iter()
            .zip(lists_b)
            .map(|(u, l)| u.p_any_click(l))
            .sum::<f64>()
            / USERS as f64
    }

    /// The λ whose B lifts the share of clicking users by `effect` (bisection), with B's
    /// lists and the lift reached.
    fn ranker_b_for(&self, effect: f64) -> (f64, Vec<Vec<usize>>, f64) {
        let lift = |lists: &[Vec<usize>]| self.p_b(lists) / self.p_a - 1.0;
        let (mut lo, mut hi) = (0.0, 1.0);
        assert!(
            lift(&self.lists_b(hi)) >= effect,
            "a perfect ranker B does not reach a lift of {effect}"
        );
        for _ in 0..16 {
            let mid = (lo + hi) / 2.0;
            if lift(&self.lists_b(mid)) < effect {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let lists = self.lists_b(hi);
        let reached = lift(&lists);
        (hi, lists, reached)
    }

    /// Exact P(A wins), P(B wins), P(tie) of an interleaved impression, averaged over the
    /// population.
    fn win_probabilities(&self, lists_b: &[Vec<usize>]) -> (f64, f64, f64) {
        let (mut qa, mut qb, mut tie) = (0.0, 0.0, 0.0);
        for (u, list_b) in self.users.iter().zip(lists_b) {
            let (a, b, t) = u.win_probabilities(list_b);
            qa += a;
            qb += b;
            tie += t;
        }
        let m = USERS as f64;
        (qa / m, qb / m, tie / m)
    }
}

/// Whether an A/B test with `per_variant` users per variant finds B better, drawn from the
/// per-user click rates.
fn ab_detects(p_a: f64, p_b: f64, per_variant: u64, rng: &mut Xoshiro256PlusPlus) -> bool {
    let ca = Binomial::new(per_variant, p_a).expect("rate").sample(rng);
    let cb = Binomial::new(per_variant, p_b).expect("rate").sample(rng);
    ab_test(ca, cb, per_variant)
}

fn ab_test(clicked_a: u64, clicked_b: u64, per_variant: u64) -> bool {
    let control = Proportion::new(clicked_a, per_variant).expect("counts");
    let treatment = Proportion::new(clicked_b, per_variant).expect("counts");
    two_proportion_ztest(control, treatment).is_ok_and(|z| z.p_value < ALPHA && z.difference > 0.0)
}

/// Whether an interleaving experiment of `users` impressions finds B better, with the
/// impression outcomes drawn from the win probabilities.
fn interleaving_detects(qa: f64, qb: f64, users: u64, rng: &mut Xoshiro256PlusPlus) -> bool {
    let a_wins = Binomial::new(users, qa).expect("rate").sample(rng);
    let b_wins = Binomial::new(users - a_wins, (qb / (1.0 - qa)).min(1.0))
        .expect("rate")
        .sample(rng);
    sign_test(a_wins, b_wins) < ALPHA && b_wins > a_wins
}

fn power_of(runs: usize, mut detects: impl FnMut() -> bool) -> f64 {
    (0..runs).filter(|_| detects()).count() as f64 / runs as f64
}

/// The n at which `power(n)` reaches `POWER`: power measured at 9 sizes from n0/2 to 2·n0,
/// a least-squares line of probit(power) against √n through them.
fn users_for_power(n0: f64, mut power: impl FnMut(u64) -> f64) -> f64 {
    let normal = Normal::standard();
    let points: Vec<(f64, f64)> = (-4..=4)
        .filter_map(|j| {
            let n = (n0 * 2f64.powf(f64::from(j) / 4.0)).round().max(2.0) as u64;
            let p = power(n);
            (p > 0.01 && p < 0.995).then(|| ((n as f64).sqrt(), normal.inverse_cdf(p)))
        })
        .collect();
    assert!(
        points.len() >= 3,
        "power curve too flat or steep: {points:?}"
    );
    let k = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / k;
    let my = points.iter().map(|p| p.1).sum::<f64>() / k;
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let slope = sxy / sxx;
    let intercept = my - slope * mx;
    ((normal.inverse_cdf(POWER) - intercept) / slope).powi(2)
}

/// User-level A/B experiment: each user drawn from the population, clicks sampled.
fn ab_user_level(
    pop: &Population,
    lists_b: &[Vec<usize>],
    per_variant: u64,
    rng: &mut Xoshiro256PlusPlus,
) -> bool {
    let mut clicked = [0u64; 2];
    for (variant, count) in clicked.iter_mut().enumerate() {
        for _ in 0..per_variant {
            let i = rng.random_range(0..USERS);
            let u = &pop.users[i];
            let list = if variant == 0 { &u.list_a } else { &lists_b[i] };
            if u.clicks_any(list, rng) {
                *count += 1;
            }
        }
    }
    ab_test(clicked[0], clicked[1], per_variant)
}

/// User-level interleaving experiment: team draft with fresh coins, sampled clicks.
fn interleaving_user_level(
    pop: &Population,
    lists_b: &[Vec<usize>],
    users: u64,
    rng: &mut Xoshiro256PlusPlus,
) -> bool {
    let mut tally = Tally::default();
    let mut clicked = Vec::with_capacity(SHOWN);
    for _ in 0..users {
        let i = rng.random_range(0..USERS);
        let u = &pop.users[i];
        let slots = team_draft(&u.list_a, &lists_b[i], SHOWN, rng);
        clicked.clear();
        for (k, s) in slots.iter().enumerate() {
            if rng.random::<f64>() < u.click_probability(s.id, k) {
                clicked.push(s.team);
            }
        }
        tally.record(outcome(&clicked));
    }
    tally.sign_test() < ALPHA && tally.b_wins > tally.a_wins
}

fn interleaving_vs_ab() {
    let pop = Population::new(0x1A7E_0001);
    eprintln!(
        "# population: {USERS} users, {CANDIDATES} candidates each, top {SHOWN} shown; \
         ranker A: {:.4} of users click",
        pop.p_a
    );
    println!("effect,ab_users,interleaving_users,ratio");
    for (e, &target) in EFFECTS.iter().enumerate() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(0x1A7E_1000 + e as u64);
        let (lambda, lists_b, effect) = pop.ranker_b_for(target);
        let p_b = pop.p_b(&lists_b);
        let (qa, qb, tie) = pop.win_probabilities(&lists_b);
        let overlap = pop
            .users
            .iter()
            .zip(&lists_b)
            .map(|(u, b)| u.list_a.iter().filter(|i| b.contains(i)).count())
            .sum::<usize>() as f64
            / USERS as f64;
        let identical = pop
            .users
            .iter()
            .zip(&lists_b)
            .filter(|(u, b)| u.list_a == **b)
            .count() as f64
            / USERS as f64;
        eprintln!(
            "# effect {effect:.4} (λ {lambda:.4}): p_A {:.4}, p_B {p_b:.4}; lists share \
             {overlap:.2} of {SHOWN} items, identical for {:.1} % of users;\n#   interleaved \
             impression: P(A wins) {qa:.4}, P(B wins) {qb:.4}, P(tie) {tie:.4}, P(no click) \
             {:.4}",
            pop.p_a,
            100.0 * identical,
            1.0 - qa - qb - tie
        );

        // A/B: total users, split evenly.
        let ab_formula = 2.0
            * sample_size_exact(pop.p_a, Effect::Absolute(p_b - pop.p_a), ALPHA, POWER)
                .expect("valid rates");
        let ab_users = users_for_power(ab_formula, |n| {
            power_of(GRID_RUNS, || ab_detects(pop.p_a, p_b, n / 2, &mut rng))
        });
        let ab_per_variant = (ab_users / 2.0).round() as u64;
        let ab_check = power_of(VERIFY_RUNS, || {
            ab_detects(pop.p_a, p_b, ab_per_variant, &mut rng)
        });

        let il_formula = required_impressions(qa, qb, ALPHA, POWER).expect("valid rates");
        let il_users = users_for_power(il_formula, |n| {
            power_of(GRID_RUNS, || interleaving_detects(qa, qb, n, &mut rng))
        });
        let il_n = il_users.round() as u64;
        let il_check = power_of(VERIFY_RUNS, || interleaving_detects(qa, qb, il_n, &mut rng));
        eprintln!(
            "#   users for 80 % power: A/B {ab_users:.0} (formula {ab_formula:.0}; power there \
             {ab_check:.3} in {VERIFY_RUNS} runs), interleaving {il_users:.0} (formula \
             {il_formula:.0}; power there {il_check:.3})"
        );

        if e + 2 >= EFFECTS.len() {
            let ab = power_of(USER_LEVEL_RUNS, || {
                ab_user_level(&pop, &lists_b, ab_per_variant, &mut rng)
            });
            let il = power_of(USER_LEVEL_RUNS, || {
                interleaving_user_level(&pop, &lists_b, il_n, &mut rng)
            });
            eprintln!(
                "#   user by user ({USER_LEVEL_RUNS} runs, sd ≈ 0.018): A/B power {ab:.3} at \
                 {} users, interleaving {il:.3} at {il_n} users",
                2 * ab_per_variant
            );
        }
        println!(
            "{effect:.4},{:.0},{:.0},{:.1}",
            2.0 * ab_per_variant as f64,
            il_n as f64,
            2.0 * ab_per_variant as f64 / il_n as f64
        );
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let which = match args.as_slice() {
        [] => "all",
        [flag, which] if flag == "--which" => which.as_str(),
        _ => "",
    };
    match which {
        "bandit" => bandit_regret(),
        "interleaving" => interleaving_vs_ab(),
        "all" => {
            bandit_regret();
            println!();
            interleaving_vs_ab();
        }
        _ => {
            eprintln!("usage: experiment_sim [--which bandit|interleaving]");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
