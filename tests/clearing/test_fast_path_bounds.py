"""The 64-bit fast paths of clearing/pretrade.py and clearing/margin.py at their exact
bounds. Random draws almost never land on a product's bound, so an off-by-one in a guard
(found by mutating each guard in review: `n > M // r` as `n - 1 > M // r` passed every
other test) would wrap a product silently in the compiled build; these cases step across
each bound one notional at a time. Compiled and pure (PURE_PYTHON=1) must both pass."""
from __future__ import annotations

import subprocess
import sys

import pytest

from clearing.margin import MarginTiers
from clearing.money import SCALE, fee
from clearing.pretrade import headroom, small_notional, small_requirement

INT64_MAX = 2**63 - 1
W = 2**31


def _split(n: int) -> tuple[int, int, int] | None:
    """n as price x qty x K with every factor in [1, 2**31), or None."""
    for q in range(1, 3000):
        if n % q == 0:
            rest = n // q
            for k in range(max(1, -(-rest // (W - 1))), 3000):
                if rest % k == 0 and rest // k < W:
                    return rest // k, q, k
    return None


def exact_fee(n: int, rate: int) -> int:
    """clearing/money.py's fee formula on Python ints (a charge rounds up, a rebate down)."""
    return -(-(n * rate) // SCALE) if rate >= 0 else -((n * -rate) // SCALE)


def test_small_requirement_at_the_fee_products_bound():
    """For each rate, notionals n = INT64_MAX // |rate| - 1 .. + 2 (those that split into
    factors below 2**31 and stay in the first tier): the order's initial margin and fee are
    the Python-int figures on both sides of the bound where n x |rate| stops fitting in 64
    bits (fee's own fast path ends there)."""
    tiers = MarginTiers((0, 2**62), (0, 0), (0, 0), (7, 1))
    checked = 0
    for r in [*range(2, 400), 2**31 - 1, 2**31 - 2, 10_000_000, 99_999_999, 12_345, 50_000]:
        for rate in (r, -r):
            for n in range(INT64_MAX // r - 1, INT64_MAX // r + 3):
                parts = _split(n) if n < 2**62 else None
                if parts is None:
                    continue
                assert small_requirement(*parts, tiers, rate) == (-(-n // 7), exact_fee(n, rate)), (rate, n)
                assert fee(n, rate) == exact_fee(n, rate), (rate, n)
                checked += 1
    assert checked >= 20


@pytest.mark.parametrize("p,q", [(W - 1, W - 1), (W - 1, 3), (2**30, 2**30)])
def test_small_notional_at_the_products_bound(p, q):
    edge = INT64_MAX // (p * q)
    for k in (edge - 1, edge, edge + 1, edge + 2):
        if 0 < k < W:
            assert small_notional(p, q, k) == (p * q * k if p * q * k <= INT64_MAX else -1)


@pytest.mark.parametrize("v", [2**60 - 1, 2**60, 2**61 + 5, 2**62 - 1])
def test_headroom_near_its_bound(v):
    for args in ((v, -v, -v, -v), (-v, v, v, v), (v, v, -v, -v)):
        e, f, u, m = args
        assert headroom(*args) == e - f - u - m


def _run(code: str) -> str:
    """Run `code` in a fresh interpreter (a compiled out-of-bounds read would crash this
    one), as the suite imports modules (tests/conftest.py: PURE_PYTHON=1 carries over)."""
    done = subprocess.run([sys.executable, "-c", "import tests.conftest\n" + code], capture_output=True, text=True)
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-500:]}"
    return done.stdout


@pytest.mark.parametrize("rows_or_fields,notional", [
    ("MarginTiers.from_rows([[0, 400_000, 0, 125], [5_000_000_000_000, 500_000, 5_000_000_000, 100]])", -1),
    ("MarginTiers((5, 10), (100_000, 200_000), (0, 5), (10, 5))", 1),   # floors[0] > 0
    ("MarginTiers((0,), (2**64,), (0,), (1,))", 0),                      # an mmr past 64 bits
])
def test_both_equals_maintenance_and_initial_off_the_fast_paths_domain(rows_or_fields, notional):
    """Compiled, `both` must never index with t = -1 (wraparound is off) nor convert an
    mmr 64 bits cannot hold; the old code (t a Python int) gave the Python figures."""
    out = _run(f"from clearing.margin import MarginTiers\nT = {rows_or_fields}\n"
               f"print(T.both({notional}) == (T.maintenance({notional}), T.initial({notional})))")
    assert out.strip() == "True"
