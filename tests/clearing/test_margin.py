"""Margin tier figures: the one-lookup `both` agrees with `maintenance` and `initial`, and
the requirement is continuous and non-decreasing in notional (CLEARING.md section 5's
properties)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from clearing.margin import MarginTiers

TIERS = MarginTiers.from_rows([
    [0, 400_000, 0, 125], [5_000_000_000_000, 500_000, 5_000_000_000, 100],
    [25_000_000_000_000, 1_000_000, 130_000_000_000, 50],
    [100_000_000_000_000, 2_500_000, 1_630_000_000_000, 20],
])


@given(st.integers(0, 10**16))
def test_both_is_maintenance_and_initial(notional):
    assert TIERS.both(notional) == (TIERS.maintenance(notional), TIERS.initial(notional))


@given(st.integers(0, 10**16), st.integers(0, 10**6))
def test_maintenance_is_non_decreasing_and_moves_at_most_mmr_max_per_unit(notional, step):
    lo, hi = TIERS.maintenance(notional), TIERS.maintenance(notional + step)
    # The bound clearing/watch.py's safe ranges rely on: slope <= mmr_max, plus the round-up.
    assert lo <= hi <= lo + step * max(TIERS.mmr) // 100_000_000 + 1


# Tables whose 64-bit bounds (MarginTiers._fits) fall inside their tiers: a full-rate top
# tier (bound 2^63 // 1e8, about 9.2e10) and amounts of more than 2^62 (no bound at all).
WIDE = [
    TIERS,
    MarginTiers.from_rows([[0, 1_000_000, 0, 100], [10**10, 100_000_000, 99 * 10**8, 1]]),
    MarginTiers.from_rows([[0, 1_000_000, 0, 100], [10**21, 2_000_000, 10**19, 50]]),
]


@given(st.sampled_from(WIDE), st.integers(0, 10**22), st.integers(-2, 2))
def test_both_is_maintenance_and_initial_on_either_side_of_the_64_bit_bound(tiers, notional, step):
    """`both` takes C arithmetic up to each tier's bound and Python integers past it: the
    same figures either way, at the bound itself too."""
    for n in (notional, max(0, tiers._fits[tiers.tier(notional)] + step)):
        assert tiers.both(n) == (tiers.maintenance(n), tiers.initial(n))
