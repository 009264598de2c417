"""Funding rates from premium samples and from tables at other scales, kept exact."""

from __future__ import annotations

from fractions import Fraction

import pytest

from clearing.funding import premium_index_rate, rate_at_scale
from clearing.money import funding_amounts
from clearing.settlement import FUND as FUND_ACCOUNT, Clearing, FeeSchedule, SymbolSpec

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


def _fund_holding_a_long(fund: int) -> Clearing:
    """A's long 10 at 100 taken over by the fund (B 1,000 at mark 100 with A's wallet 0);
    S1 and S2 hold the shorts (6 and 4) and receive when longs pay."""
    from clearing.margin import MarginTiers

    tiers = MarginTiers.from_rows([[0, 500_000, 0]], max_leverage=20)
    c = Clearing({"X": SymbolSpec("USDT", 1, tiers)}, FeeSchedule(((0, 0),)))
    for account, balance in {"A": 0, "S1": 10**6, "S2": 10**6, FUND_ACCOUNT: fund}.items():
        c.ledger.open_balance(account, "USDT", balance)
    for account, qty in (("A", 10), ("S1", -6), ("S2", -4)):
        c.load_position(account, "X", qty, 100)
    c.marks["X"] = 100
    c.takeover(1, "A", "USDT", 1, "sweep")
    return c


@pytest.mark.parametrize("fund, paid_by_fund, s1, s2, rounding", [
    pytest.param(1_000, 100, 60, 40, 0, id="a fund with room pays its parcel's funding in full"),
    pytest.param(30, 30, 18, 12, 0, id="a fund with 30 above its floor pays 30; receivers lose 70 pro rata"),
    pytest.param(0, 0, 0, 0, 0, id="a fund at its floor pays nothing; the receivers get nothing"),
    pytest.param(33, 33, 19, 13, 1, id="cuts round up (credits down): the excess goes to rounding"),
])
def test_the_fund_pays_funding_on_its_parcels_only_down_to_its_floor(fund, paid_by_fund, s1, s2, rounding):
    # Rate 10% (10,000,000 over 1e8) at mark 100: the parcel's long 10 owes 100; S1 and S2
    # are owed 60 and 40. CLEARING.md's floor binds (docs/run.md, the reading chosen).
    c = _fund_holding_a_long(fund)
    c.settle_funding(2, "X", 100, 10_000_000, "funding-1", fund_floor=0)
    assert c.ledger.balance(FUND_ACCOUNT, "USDT") == fund - paid_by_fund >= 0
    assert c.ledger.balance("S1", "USDT") - 10**6 == s1
    assert c.ledger.balance("S2", "USDT") - 10**6 == s2
    assert c.ledger.balance("rounding", "USDT") == rounding
    assert c.funding_withheld.get("USDT", 0) == 100 - paid_by_fund
    assert c.conservation_gap("USDT") == 0


def test_without_a_floor_the_fund_pays_in_full_even_below_zero():
    c = _fund_holding_a_long(30)
    c.settle_funding(2, "X", 100, 10_000_000, "funding-1")
    assert c.ledger.balance(FUND_ACCOUNT, "USDT") == -70
    assert c.conservation_gap("USDT") == 0
