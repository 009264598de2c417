"""All money formulas, in integers. Every division names its rounding.

Units: prices in ticks, quantities in lots, money in the settlement asset's minor units,
rates over SCALE (1e8: 0.05% is 50_000). K is the instrument's minor units per tick x lot.
One rounding rule (CLEARING.md section 0): an amount a user pays rounds up, an amount a
user receives rounds down; an exchange account on the other side pays or receives the
user's rounded amount exactly.
"""

from __future__ import annotations

from fractions import Fraction

SCALE = 100_000_000  # rates, fee rates, margin ratios, funding rates are integers over this
_INT64_MAX = (1 << 63) - 1  # the largest signed 64-bit integer (the C paths' bound)


def div_floor(a: int, b: int) -> int:
    """a / b rounded toward minus infinity (b > 0).

    >>> div_floor(7, 2), div_floor(-7, 2)
    (3, -4)
    """
    return a // b


def div_ceil(a: int, b: int) -> int:
    """a / b rounded toward plus infinity (b > 0).

    >>> div_ceil(7, 2), div_ceil(-7, 2)
    (4, -3)
    """
    return -((-a) // b)


def notional(price_ticks: int, qty_lots: int, k: int) -> int:
    """price x |qty| x K: exact minor units of a book fill or a position at a price."""
    return price_ticks * abs(qty_lots) * k


def fee(notional_minor: int, rate: int) -> int:
    """What a user pays for a fill: notional x rate / 1e8.

    A charge (rate >= 0) rounds up; a rebate (rate < 0) is a credit, rounded down, and
    comes back negative.

    >>> fee(21_000_070_000, 50_000), fee(21_000_070_000, 12_345), fee(1_000, -20_000)
    (10500035, 2592459, 0)
    """
    try:
        # Compiled, the arguments become C integers on the way in, and one past 64 bits
        # raises OverflowError there: that conversion is the bound check, with no Python
        # comparison per call (fee runs for every fill and every new order).
        return _fee_int64(notional_minor, rate, SCALE, _INT64_MAX)
    except OverflowError:
        return _fee_exact(notional_minor, rate)


def _fee_exact(notional_minor: int, rate: int) -> int:
    """fee's formula on Python integers of any size."""
    if rate >= 0:
        return div_ceil(notional_minor * rate, SCALE)
    return -div_floor(notional_minor * -rate, SCALE)


def _fee_int64(notional_minor: int, rate: int, scale: int, top: int) -> int:
    """fee, `scale` being SCALE and `top` 2^63 - 1. Compiled (money.pxd), all four are C
    integers, and when 0 <= notional_minor, |rate| <= top (-2^63 has no C absolute value)
    and notional x |rate| is at most top (a real fill: 1e12 minor units at 5e4 is 5e16) the
    formula is C arithmetic that cannot overflow (Python's floor division: cdivision off);
    otherwise it is _fee_exact's. (Pure, any size: the same formula on Python integers.)"""
    if notional_minor < 0 or rate < -top or notional_minor > top // max(abs(rate), 1):
        return _fee_exact(notional_minor, rate)
    if rate >= 0:
        return -(-(notional_minor * rate) // scale)
    return -((notional_minor * -rate) // scale)


def funding_amounts(qty_lots: int, mark_ticks: int, k: int, rate: int | Fraction) -> tuple[int, int]:
    """(paid, received) for one position's funding: |qty| x mark x K x |rate| / 1e8, the
    payer's amount rounded up and the receiver's rounded down. `rate` is over 1e8, an int
    or an exact Fraction (a rate from premium samples is never rounded). Who pays follows
    the sign of the rate (rate > 0: longs pay shorts); the caller books the difference to
    `rounding`.

    >>> funding_amounts(7, 300_001, 10_000, 12_345)
    (2592459, 2592458)
    >>> funding_amounts(7, 300_001, 10_000, Fraction(24_690, 2))
    (2592459, 2592458)
    """
    rate = Fraction(rate)
    return funding_amounts_over(qty_lots, mark_ticks, k, abs(rate.numerator), rate.denominator * SCALE)


def funding_amounts_over(qty_lots: int, mark_ticks: int, k: int, rate_num_abs: int, per: int) -> tuple[int, int]:
    """funding_amounts with the rate already split: |numerator| and denominator x 1e8
    (`per`). Clearing.settle_funding splits the rate once per funding time instead of once
    per holder (Fraction arithmetic is interpreted Python, even in the compiled build).

    >>> funding_amounts_over(7, 300_001, 10_000, 12_345, 100_000_000)
    (2592459, 2592458)
    """
    exact = notional(mark_ticks, qty_lots, k) * rate_num_abs
    return div_ceil(exact, per), div_floor(exact, per)


def funding_lots_fitting(mark_ticks: int, k: int, rate_num_abs: int, per: int) -> int:
    """The largest |qty| for which funding_payment_fitting may stand in for
    funding_amounts_over at this mark and rate: |qty| x mark x K x |numerator| and `per` fit
    in a signed 64-bit integer; -1 for none (then every holder takes the exact path).

    >>> funding_lots_fitting(300_001, 10_000, 12_345, 100_000_000)
    249043
    """
    unit = mark_ticks * k * rate_num_abs
    if unit < 0 or unit > _INT64_MAX or per <= 0 or per > _INT64_MAX:
        return -1
    return _INT64_MAX // max(unit, 1)


def funding_payment_fitting(qty_lots: int, unit: int, per: int, pays: bool) -> int:
    """One position's signed funding (negative: it pays) when |qty_lots| is at most
    funding_lots_fitting(mark, K, |numerator|, per) and unit = mark x K x |numerator|: the
    same amount as funding_amounts_over's -paid (pays) or received, and compiled (money.pxd)
    all of it is C arithmetic that cannot overflow (Python's floor division: cdivision off).

    >>> funding_payment_fitting(7, 300_001 * 10_000 * 12_345, 100_000_000, True)
    -2592459
    """
    exact = abs(qty_lots) * unit
    return (-exact) // per if pays else exact // per
