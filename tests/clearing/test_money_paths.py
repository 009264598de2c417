"""The 64-bit paths of clearing/money.py equal the exact formulas, on both sides of their
bounds (compiled, they are C arithmetic; PURE_PYTHON runs the same functions on Python
integers)."""

from __future__ import annotations

from fractions import Fraction
from math import ceil, floor

from hypothesis import given
from hypothesis import strategies as st

from clearing.money import SCALE, fee

INT64_MAX = 2**63 - 1


def exact_fee(n: int, rate: int) -> int:
    """CLEARING.md section 1 with Fractions: a charge rounds up, a rebate down."""
    return ceil(Fraction(n * rate, SCALE)) if rate >= 0 else -floor(Fraction(n * -rate, SCALE))


rates = st.one_of(st.integers(-100_000, 100_000), st.integers(-2**64, 2**64),
                  st.sampled_from([0, 1, -1, INT64_MAX, -INT64_MAX, INT64_MAX + 1, -INT64_MAX - 1]))


@given(st.one_of(st.integers(0, 10**13), st.integers(0, 2**70)), rates, st.integers(-2, 2))
def test_fee_is_the_exact_formula_on_either_side_of_the_64_bit_bound(notional, rate, step):
    bound = INT64_MAX // max(abs(rate), 1)  # the largest notional whose product fits
    for n in (notional, max(0, bound + step), max(0, INT64_MAX + step)):
        assert fee(n, rate) == exact_fee(n, rate), (n, rate)

