"""Funding rates (CLEARING.md section 4), exact: rates are Fractions over 1e8, never
rounded; only the amounts paid and received round (clearing.money.funding_amounts).

From premium-index samples: rate = average premium + clamp(interest - average premium,
-0.05%, +0.05%), then clamped to the instrument's cap and floor, where the interest
component is 0.01% x interval_s / 28,800 and the average is the arithmetic mean of the
interval's samples.
"""

from __future__ import annotations

from fractions import Fraction

from clearing.money import SCALE

CLAMP = 50_000  # 0.05% over 1e8: the band around the interest component
INTEREST_8H = 10_000  # 0.01% over 1e8 per 8 hours


def interest_component(interval_s: int) -> Fraction:
    """0.01% x interval_s / 28,800, over 1e8.

    >>> interest_component(28_800), interest_component(3_600)
    (Fraction(10000, 1), Fraction(1250, 1))
    """
    return Fraction(INTEREST_8H * interval_s, 28_800)


def premium_index_rate(samples: list[int], *, interval_s: int, cap: int, floor: int) -> Fraction:
    """The funding rate over 1e8 from an interval's premium samples (each over 1e8).

    >>> premium_index_rate([100, 200, 300], interval_s=28_800, cap=300_000, floor=-300_000)
    Fraction(10000, 1)
    """
    if not samples:
        raise ValueError("no premium samples in the funding interval: cannot compute a rate")
    average = Fraction(sum(samples), len(samples))
    interest = interest_component(interval_s)
    rate = average + min(max(interest - average, -CLAMP), CLAMP)
    return min(max(rate, Fraction(floor)), Fraction(cap))


def rate_at_scale(value: int, scale: int) -> Fraction:
    """A `funding` table rate given as an integer over `scale`, read exactly over 1e8.

    >>> rate_at_scale(1, 10_000), rate_at_scale(3, 10**9)
    (Fraction(10000, 1), Fraction(3, 10))
    """
    return Fraction(value * SCALE, scale)
