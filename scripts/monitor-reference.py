"""Reference numbers for the tests of crates/recd-core/src/monitor/drift.rs (scipy).

    python3 -m venv /tmp/venv-scipy && /tmp/venv-scipy/bin/pip install scipy numpy
    /tmp/venv-scipy/bin/python scripts/monitor-reference.py

The samples are deterministic formulas (no RNG), written the same way in the Rust tests
(`ks_case`), so both sides compute on the same doubles. Prints, per case:
- ks_2samp's statistic and its method="asymp" p-value (kstwo.sf(d, round(n_e)));
- the Kolmogorov limit with Stephens' correction, kstwobign.sf((sqrt(n_e)+0.12+0.11/sqrt(n_e))*d),
  which is what recd computes;
then scipy.special.kolmogorov at a few points, a chi2_contingency table and a PSI example.
Values are printed with repr, to paste into the tests.
"""
import math

import numpy as np
from scipy import special, stats


def ks_case(name):
    # The same formulas as `ks_case` in drift.rs.
    if name == "small_ties":
        a = [1.0, 2.0, 2.0, 3.0, 4.0, 5.0, 5.0, 6.0]
        b = [2.0, 3.0, 3.0, 4.0, 7.0, 8.0, 9.0]
    elif name == "uniform_shifted":
        a = [((i * 7919) % 1000) / 1000 for i in range(300)]
        b = [((j * 6007) % 997) / 997 * 0.9 + 0.15 for j in range(200)]
    elif name == "large_close":
        a = [((i * 7919) % 10007) / 10007 for i in range(2000)]
        b = [(((j * 4001) % 9973) / 9973) ** 1.15 for j in range(1500)]
    else:
        raise ValueError(name)
    return np.array(a), np.array(b)


def main():
    for name in ["small_ties", "uniform_shifted", "large_close"]:
        a, b = ks_case(name)
        r = stats.ks_2samp(a, b, method="asymp")
        m, n = len(a), len(b)
        en = m * n / (m + n)
        stephens = stats.kstwobign.sf((math.sqrt(en) + 0.12 + 0.11 / math.sqrt(en)) * r.statistic)
        print(f"ks {name}: n=({m}, {n}) statistic={float(r.statistic)!r} "
              f"p_asymp={float(r.pvalue)!r} p_stephens={float(stephens)!r}")
    for lam in [0.3, 0.5, 0.8, 1.0, 1.2, 1.36, 2.0, 3.0]:
        print(f"kolmogorov({lam}) = {float(special.kolmogorov(lam))!r}")
    table = np.array([[120, 80, 40, 10, 0], [90, 95, 50, 25, 0]])
    chi2, p, dof, _ = stats.chi2_contingency(table[:, :4], correction=False)
    print(f"chi2_contingency {table.tolist()} (empty column dropped): "
          f"statistic={float(chi2)!r} p={float(p)!r} dof={dof}")
    e, a = np.array([0.5, 0.5]), np.array([0.25, 0.75])
    print(f"psi [0.5, 0.5] vs [0.25, 0.75] = {float(np.sum((a - e) * np.log(a / e)))!r}")


if __name__ == "__main__":
    main()
