"""Funding rates from premium samples and from tables at other scales, kept exact."""

from __future__ import annotations

from fractions import Fraction

import pytest

from clearing.funding import premium_index_rate, rate_at_scale
from clearing.money import funding_amounts
from clearing.settlement import Clearing, FeeSchedule, SymbolSpec

RULES = dict(interval_s=28_800, cap=300_000, floor=-300_000)


@pytest.mark.parametrize(("samples", "rate"), [
    pytest.param([100, 200, 300], Fraction(10_000), id="a small premium: the rate is the interest component"),
    pytest.param([100_000], Fraction(50_000), id="premium far above interest: premium minus the 0.05% clamp"),
    pytest.param([-100_000], Fraction(-50_000), id="premium far below interest: premium plus the clamp"),
    pytest.param([100_000, 100_000, 1], Fraction(200_001, 3) - 50_000,
                 id="a mean that is not a whole number stays an exact fraction"),
    pytest.param([900_000], Fraction(300_000), id="the instrument's cap bounds the rate"),
    pytest.param([-900_000], Fraction(-300_000), id="the instrument's floor bounds the rate"),
])
def test_rate_from_premium_samples(samples, rate):
    assert premium_index_rate(samples, **RULES) == rate


def test_a_one_hour_interval_scales_the_interest_component():
    assert premium_index_rate([0], interval_s=3_600, cap=300_000, floor=-300_000) == 1_250


def test_a_fractional_rate_rounds_only_the_amounts():
    rate = Fraction(200_001, 3) - 50_000  # 50,001/3 over 1e8
    paid, received = funding_amounts(7, 300_001, 10_000, rate)
    # 21,000,070,000 x 50,001 / 3 / 1e8 = 3,500,081.66690... exactly
    assert Fraction(21_000_070_000 * 50_001, 3 * 10**8) == Fraction(1_050_024_500_070_000, 300_000_000)
    assert (paid, received) == (3_500_082, 3_500_081)


def test_a_table_at_another_scale_is_read_exactly():
    assert rate_at_scale(12_345, 10**8) == 12_345
    assert rate_at_scale(1_2345, 10**12) == Fraction(12_345, 10_000)


def test_settlement_accepts_an_exact_fractional_rate():
    c = Clearing({"BTCUSDT": SymbolSpec("USDT", 10_000)}, FeeSchedule(((0, 0),)))
    c.settle_fill(1, "BTCUSDT", 300_001, 7, True, "long", "short", "f1")
    c.settle_funding(2, "BTCUSDT", 300_001, Fraction(50_001, 3), "funding-1")
    assert c.ledger.balance("long", "USDT") == -3_500_082
    assert c.ledger.balance("short", "USDT") == 3_500_081
    assert c.ledger.balance("rounding", "USDT") == 1
    assert c.conservation_gap("USDT") == 0


def test_no_samples_is_an_error_not_a_zero_rate():
    with pytest.raises(ValueError, match="no premium samples"):
        premium_index_rate([], **RULES)
