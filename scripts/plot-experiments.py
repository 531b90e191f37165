"""Draws the experiment simulations of crates/recd-core/examples/experiment_sim.rs.

    python plot-experiments.py --bandit target/experiments/bandit.csv \
        --interleaving target/experiments/interleaving.csv --out docs

Writes <out>/bandit-regret.png (cumulative regret vs impressions, one line per policy) and
<out>/interleaving-vs-ab.png (users for 80 % power vs effect size, log scales).
Run through scripts/plot-experiments.sh, which makes the CSVs.
"""
import argparse
import csv

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def bandit(rows, out):
    x = [int(r["impression"]) for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for col, label, style in [
        ("uniform", "uniform split (A/B/n)", "-"),
        ("epsilon_greedy", "ε-greedy, ε = 0.1", "--"),
        ("thompson", "Thompson sampling, min_explore 0.05", "-"),
    ]:
        y = [float(r[col]) for r in rows]
        ax.plot(x, y, style, label=f"{label}: {y[-1]:.0f}")
    ax.set_xlabel("impressions")
    ax.set_ylabel("cumulative regret (expected clicks lost)")
    ax.set_title("Arms with CTR 0.02 / 0.03 / 0.05, mean of 20 seeds")
    ax.set_xlim(0, x[-1])
    ax.set_ylim(0, None)
    ax.grid(alpha=0.3)
    ax.legend(title=f"regret after {x[-1]:,} impressions", loc="upper left")
    fig.tight_layout()
    fig.savefig(f"{out}/bandit-regret.png", dpi=110)


def interleaving(rows, out):
    effect = [100 * float(r["effect"]) for r in rows]
    ab = [float(r["ab_users"]) for r in rows]
    il = [float(r["interleaving_users"]) for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(effect, ab, "o-", label="A/B test (two-proportion z-test, users who click)")
    ax.plot(effect, il, "s-", label="team-draft interleaving (sign test)")
    for e, a, i, r in zip(effect, ab, il, (row["ratio"] for row in rows)):
        ax.annotate(f"{float(r):.1f}×", (e, (a * i) ** 0.5), ha="center", va="center",
                    fontsize=8, color="0.35")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(effect)
    ax.set_xticklabels([f"{e:.0f} %" for e in effect])
    ax.minorticks_off()
    ax.set_xlabel("effect: relative lift of ranker B in users who click")
    ax.set_ylabel("users for 80 % power at α = 0.05")
    ax.set_title("Users needed to detect the better ranker (same click model)")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(f"{out}/interleaving-vs-ab.png", dpi=110)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bandit", required=True)
    ap.add_argument("--interleaving", required=True)
    ap.add_argument("--out", default="docs")
    a = ap.parse_args()
    bandit(read(a.bandit), a.out)
    interleaving(read(a.interleaving), a.out)


if __name__ == "__main__":
    main()
