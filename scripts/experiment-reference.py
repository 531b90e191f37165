"""Reference numbers for the experiment statistics of recd-core (crates/recd-core/src/experiment).

    python3 -m venv /tmp/venv-scipy && /tmp/venv-scipy/bin/pip install scipy statsmodels numpy
    /tmp/venv-scipy/bin/python scripts/experiment-reference.py

Computes each case with scipy / statsmodels / numpy, independently of the Rust code (which uses
running sums and statrs), and prints the numbers that the Rust unit tests paste in. Every test
that uses them names this script. Deterministic: the per-user data comes from a seeded numpy
generator and is printed as the running sums the Rust side consumes (integers, so exact).
"""
import numpy as np
from scipy import integrate, stats
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_confint, proportion_effectsize, proportions_ztest


def f(x):
    return repr(float(x))


def section(name):
    print(f"\n== {name}")


section("Wilson score interval: statsmodels proportion_confint(method='wilson')")
for count, nobs, alpha in [(37, 1000, 0.05), (0, 50, 0.05), (50, 50, 0.05), (1234, 56789, 0.05), (7, 40, 0.01)]:
    lo, hi = proportion_confint(count, nobs, alpha=alpha, method="wilson")
    print(f"({count}, {nobs}, {1 - alpha}) -> lo {f(lo)} hi {f(hi)}")

section("Two-proportion z-test (pooled variance, two-sided): statsmodels proportions_ztest")
for (xc, nc), (xt, nt) in [((100, 2000), (130, 2000)), ((512, 10000), (560, 10000)), ((45, 900), (30, 1100)), ((5, 100), (5, 100))]:
    z, p = proportions_ztest([xt, xc], [nt, nc])
    print(f"control {xc}/{nc} treatment {xt}/{nt} -> z {f(z)} p {f(p)}")

section("Sample-ratio mismatch: scipy.stats.chisquare(observed, expected = N * weights)")
for obs, w in [([5050, 4950], [0.5, 0.5]), ([5200, 4800], [0.5, 0.5]), ([10321, 9876, 4950], [0.4, 0.4, 0.2])]:
    obs = np.array(obs, dtype=float)
    exp = obs.sum() * np.array(w)
    chi2, p = stats.chisquare(obs, exp)
    print(f"{obs.astype(int).tolist()} weights {w} -> chi2 {f(chi2)} p {f(p)}")

section("Sample size per variant (Fleiss, no continuity correction), scipy norm.ppf")
# n = (z_{1-a/2} sqrt(2 pbar (1 - pbar)) + z_{1-b} sqrt(p1 (1 - p1) + p2 (1 - p2)))^2 / (p2 - p1)^2
za, zb = stats.norm.ppf(1 - 0.05 / 2), stats.norm.ppf(0.8)
for p1, p2, label in [(0.10, 0.11, "relative 10% on 0.10"), (0.05, 0.06, "absolute 0.01 on 0.05"), (0.02, 0.021, "relative 5% on 0.02")]:
    pbar = (p1 + p2) / 2
    n = (za * np.sqrt(2 * pbar * (1 - pbar)) + zb * np.sqrt(p1 * (1 - p1) + p2 * (1 - p2))) ** 2 / (p2 - p1) ** 2
    h = proportion_effectsize(p2, p1)
    n_h = NormalIndPower().solve_power(effect_size=h, alpha=0.05, power=0.8, ratio=1.0, alternative="two-sided")
    print(f"{label}: p1 {p1} p2 {f(p2)} -> n {f(n)} (statsmodels NormalIndPower, Cohen's h: {f(n_h)})")

section("Bayesian Beta(1+s, 1+f) posteriors: P(B > A) and expected losses by numerical integration")
# P(B > A) = int f_B(x) F_A(x) dx. E[max(A - B, 0)] = int f_A(a) (a F_B(a) - E[B] F_{B+}(a)) da, where
# B+ = Beta(alpha_B + 1, beta_B), since int_0^a b f_B(b) db = E[B] F_{B+}(a).
for (sa, na), (sb, nb) in [((120, 1000), (140, 1000)), ((3, 10), (5, 10)), ((40, 2000), (52, 2000)), ((500, 5000), (500, 5000))]:
    A = stats.beta(1 + sa, 1 + na - sa)
    B = stats.beta(1 + sb, 1 + nb - sb)
    opts = dict(limit=500, epsabs=1e-13, epsrel=1e-12)
    pts = sorted({A.mean(), B.mean()})
    p_b = integrate.quad(lambda x: B.pdf(x) * A.cdf(x), 0, 1, points=pts, **opts)[0]

    Bplus = stats.beta(2 + sb, 1 + nb - sb)
    Aplus = stats.beta(2 + sa, 1 + na - sa)
    # loss of choosing B: E[max(A - B, 0)] = int f_A(a) (a F_B(a) - E[B] F_{B+}(a)) da
    loss_b = integrate.quad(lambda a: A.pdf(a) * (a * B.cdf(a) - B.mean() * Bplus.cdf(a)), 0, 1, points=pts, **opts)[0]
    # loss of choosing A: E[max(B - A, 0)]
    loss_a = integrate.quad(lambda b: B.pdf(b) * (b * A.cdf(b) - A.mean() * Aplus.cdf(b)), 0, 1, points=pts, **opts)[0]
    print(f"A {sa}/{na} B {sb}/{nb} -> P(B>A) {f(p_b)} loss(choose B) {f(loss_b)} loss(choose A) {f(loss_a)}")

section("mSPRT (normal mixture): Lambda = N(d; 0, V + tau2) / N(d; 0, V), scipy norm.pdf")
for d, v, tau2 in [(0.01, 1e-5, 1e-4), (0.002, 4e-6, 1e-4), (-0.03, 1e-4, 4e-4), (0.0, 1e-4, 1e-4)]:
    lam = stats.norm.pdf(d, 0, np.sqrt(v + tau2)) / stats.norm.pdf(d, 0, np.sqrt(v))
    # always-valid CI at alpha: the thetas whose Lambda(theta) < 1/alpha
    alpha = 0.05
    half = np.sqrt(v * (v + tau2) / tau2 * (2 * np.log(1 / alpha) + np.log((v + tau2) / v)))
    print(f"d {d} V {v} tau2 {tau2} -> Lambda {f(lam)} p {f(min(1.0, 1 / lam))} ci95 half-width {f(half)}")

section("Binomial sign test, two-sided, p = 0.5: scipy.stats.binomtest")
for k, n in [(60, 100), (5, 20), (530, 1000), (10, 20), (0, 7)]:
    print(f"{k} of {n} -> p {f(stats.binomtest(k, n, 0.5).pvalue)}")

rng = np.random.default_rng(12)


def sums(x, y):
    x = x.astype(np.int64)
    y = y.astype(np.int64)
    return (len(x), int(x.sum()), int(y.sum()), int((x * x).sum()), int((y * y).sum()), int((x * y).sum()))


section("Ratio metric (clicks / impressions per user), delta method via linearization residuals")
# Var(R) ~ var(L, ddof=1) / n with L_i = (x_i - R y_i) / mean(y): computed from the raw per-user data.
arms = {}
for name, ctr in [("control", 0.05), ("treatment", 0.056)]:
    n = 3000
    imps = rng.poisson(8, n) + 1
    clicks = rng.binomial(imps, rng.beta(ctr * 20, (1 - ctr) * 20, n))
    arms[name] = (clicks, imps)
    r = clicks.sum() / imps.sum()
    lin = (clicks - r * imps) / imps.mean()
    var = lin.var(ddof=1) / n
    z = stats.norm.ppf(0.975)
    print(f"{name}: sums (n, Sx, Sy, Sxx, Syy, Sxy) = {sums(clicks, imps)}")
    print(f"{name}: ratio {f(r)} var {f(var)} ci95 [{f(r - z * np.sqrt(var))}, {f(r + z * np.sqrt(var))}]")
rs = {k: c.sum() / i.sum() for k, (c, i) in arms.items()}
vs = {k: (((c - rs[k] * i) / i.mean()).var(ddof=1) / len(c)) for k, (c, i) in arms.items()}
zr = (rs["treatment"] - rs["control"]) / np.sqrt(vs["treatment"] + vs["control"])
print(f"ratio z-test treatment vs control -> z {f(zr)} p {f(2 * stats.norm.sf(abs(zr)))}")

section("CUPED: y = purchases in the experiment, x = purchases before; numpy on the raw data")
cuped = {}
for name, lift in [("control", 0.0), ("treatment", 0.15)]:
    n = 2000
    habit = rng.gamma(2.0, 1.0, n)
    x = rng.poisson(habit)
    y = rng.poisson(habit * (1 + lift))
    cuped[name] = (x, y)
    print(f"{name}: sums (n, Sx, Sy, Sxx, Syy, Sxy) with x = pre, y = metric = {sums(x, y)}")
xall = np.concatenate([cuped["control"][0], cuped["treatment"][0]])
yall = np.concatenate([cuped["control"][1], cuped["treatment"][1]])
theta = np.cov(xall, yall, ddof=1)[0, 1] / xall.var(ddof=1)
print(f"pooled theta {f(theta)} (pooled x mean {f(xall.mean())})")
adj = {}
for name, (x, y) in cuped.items():
    ya = y - theta * (x - xall.mean())
    adj[name] = (ya.mean(), ya.var(ddof=1) / len(ya), y.var(ddof=1) / len(y))
    print(f"{name}: adjusted mean {f(ya.mean())} var of mean {f(adj[name][1])} (unadjusted {f(adj[name][2])})")
d = adj["treatment"][0] - adj["control"][0]
se = np.sqrt(adj["treatment"][1] + adj["control"][1])
print(f"CUPED z-test -> diff {f(d)} z {f(d / se)} p {f(2 * stats.norm.sf(abs(d / se)))}")
