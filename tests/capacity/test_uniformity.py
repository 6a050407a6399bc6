"""Uniformity of the random account choice (chi-square against uniform).

The p-value is computed here without scipy: the chi-square survival function is
the regularized upper incomplete gamma Q(k/2, x/2), evaluated with its power
series for x < s + 1 and Lentz's continued fraction otherwise (Numerical Recipes
`gammq`), both through `math.lgamma`. It is cross-checked against tabulated
critical values and the Wilson–Hilferty normal approximation.
"""

from __future__ import annotations

import math

import pytest

from dispatcher import keys
from dispatcher.capacity import Capacity

ACCOUNTS = ["a@x", "b@x", "c@x", "d@x", "e@x"]
N = 20_000


def gamma_q(s: float, x: float) -> float:
    """Regularized upper incomplete gamma Q(s, x)."""
    if x <= 0:
        return 1.0
    log_prefix = s * math.log(x) - x - math.lgamma(s)
    if x < s + 1:  # series for P(s, x)
        term = total = 1.0 / s
        a = s
        for _ in range(10_000):
            a += 1
            term *= x / a
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return 1.0 - total * math.exp(log_prefix)
    tiny = 1e-300  # continued fraction for Q(s, x) (modified Lentz)
    b = x + 1 - s
    c, d = 1 / tiny, 1 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - s)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-15:
            break
    return math.exp(log_prefix) * h


def chi2_sf(x: float, df: int) -> float:
    return gamma_q(df / 2, x / 2)


def wilson_hilferty_sf(x: float, df: int) -> float:
    z = ((x / df) ** (1 / 3) - (1 - 2 / (9 * df))) / math.sqrt(2 / (9 * df))
    return 0.5 * math.erfc(z / math.sqrt(2))


def chi_square(counts: dict[str, int], names) -> tuple[float, float]:
    total = sum(counts.values())
    expected = total / len(names)
    stat = sum((counts.get(a, 0) - expected) ** 2 / expected for a in names)
    return stat, chi2_sf(stat, len(names) - 1)


@pytest.mark.parametrize("x, df, p", [
    (9.4877, 4, 0.05), (13.2767, 4, 0.01), (18.4668, 4, 0.001), (1.0636, 4, 0.90),
    (3.8415, 1, 0.05), (124.342, 100, 0.05),
])
def test_chi2_sf_matches_tables(x, df, p):
    assert chi2_sf(x, df) == pytest.approx(p, rel=1e-3)
    assert wilson_hilferty_sf(x, df) == pytest.approx(p, rel=0.1, abs=2e-3)


def test_direct_admissions_are_uniform(r):
    """20,000 acquires, every account always has room: seeds from SystemRandom."""
    cap = Capacity(r, "uniform")
    for a in ACCOUNTS:
        cap.set_account(a, 10**9)
    for i in range(N):
        cap.acquire(f"g{i}")
    counts = {a.decode(): int(n) for a, n in r.hgetall(keys.used("uniform")).items()}
    assert sum(counts.values()) == N
    stat, p = chi_square(counts, ACCOUNTS)
    assert p > 0.001, (counts, stat, p)


def test_pump_admissions_are_uniform(r):
    """The pump's choice: 10,000 waiters admitted by one pump call when a
    cooldown on every account ends (the cooldowns are dropped from Redis)."""
    cap = Capacity(r, "uniform")
    for a in ACCOUNTS:
        cap.set_account(a, 10**9)
        cap.set_cooldown(a, 10**14)
    n = 10_000
    for i in range(n):
        assert cap.acquire(f"g{i}").status == "waiting"
    r.delete(keys.cooldown("uniform"))
    admitted = cap.pump()
    assert [x.generation_id for x in admitted] == [f"g{i}" for i in range(n)]  # FIFO
    counts: dict[str, int] = {}
    for x in admitted:
        counts[x.account] = counts.get(x.account, 0) + 1
    stat, p = chi_square(counts, ACCOUNTS)
    assert p > 0.001, (counts, stat, p)
