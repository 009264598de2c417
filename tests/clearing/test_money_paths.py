"""The 64-bit paths of clearing/money.py equal the exact formulas, on both sides of their
bounds (compiled, they are C arithmetic; PURE_PYTHON runs the same functions on Python
integers)."""

from __future__ import annotations

from fractions import Fraction
from math import ceil, floor

from hypothesis import given
from hypothesis import strategies as st

from clearing.money import (SCALE, fee, funding_amounts, funding_amounts_over, funding_lots_fitting,
                            funding_payment_fitting)
from clearing.liquidation import Parcel
from clearing.settlement import Clearing, FeeSchedule, SymbolSpec

INT64_MAX = 2**63 - 1


def exact_fee(n: int, rate: int) -> int:
    """CLEARING.md section 1 with Fractions: a charge rounds up, a rebate down."""
    return ceil(Fraction(n * rate, SCALE)) if rate >= 0 else -floor(Fraction(n * -rate, SCALE))


rates = st.one_of(st.integers(-100_000, 100_000), st.integers(-2**64, 2**64),
                  st.sampled_from([0, 1, -1, INT64_MAX, -INT64_MAX, INT64_MAX + 1, -INT64_MAX - 1]))


# (A negative notional never reaches fee from the replay; the C path must still refuse it.)
@given(st.one_of(st.integers(0, 10**13), st.integers(0, 2**70), st.integers(-10**13, -1)), rates,
       st.integers(-2, 2))
def test_fee_is_the_exact_formula_on_either_side_of_the_64_bit_bound(notional, rate, step):
    bound = INT64_MAX // max(abs(rate), 1)  # the largest notional whose product fits
    for n in (notional, max(0, bound + step), max(0, INT64_MAX + step)):
        assert fee(n, rate) == exact_fee(n, rate), (n, rate)


qtys = st.integers(-10**6, 10**6).filter(bool)


@given(qtys, st.integers(1, 10**8), st.sampled_from([1, 10, 10_000, 10**9]),
       st.one_of(st.integers(-300_000, 300_000), st.fractions(-300_000, 300_000, max_denominator=10**6),
                 st.integers(-10**12, 10**12)),
       st.integers(-2, 2))
def test_funding_payment_fitting_is_funding_amounts_up_to_its_bound(qty, mark, k, rate, step):
    rate = Fraction(rate)
    num_abs, per = abs(rate.numerator), rate.denominator * SCALE
    fits = funding_lots_fitting(mark, k, num_abs, per)
    unit = mark * k * num_abs
    if fits >= 0:  # the bound is right: its products fit, one more lot's does not
        assert fits * unit <= INT64_MAX and per <= INT64_MAX
        assert unit == 0 or (fits + 1) * unit > INT64_MAX
    else:
        assert unit > INT64_MAX or per > INT64_MAX
    for q in (qty, fits + step, -(fits + step)):
        if q == 0 or abs(q) > fits:
            continue
        paid, received = funding_amounts_over(q, mark, k, num_abs, per)
        assert funding_payment_fitting(q, unit, per, True) == -paid
        assert funding_payment_fitting(q, unit, per, False) == received


def test_settle_funding_books_holders_past_the_64_bit_bound_exactly():
    """Holders on both sides of funding_lots_fitting's bound in one funding time: each pays
    or receives funding_amounts, and `rounding` the residue."""
    mark, k, rate = 10**8, 10_000, 300_000
    fits = funding_lots_fitting(mark, k, rate, SCALE)
    assert fits == 30
    c = Clearing({"X": SymbolSpec("USDT", k)}, FeeSchedule(((0, 0),)))
    c.load_position("a", "X", fits, mark)  # long, at the bound: the C path
    c.load_position("b", "X", 3 * fits + 7, mark)  # long, past it: the exact path
    c.load_position("c", "X", -(4 * fits + 7), mark)  # short, past it
    assert c.settle_funding(1, "X", mark, rate, "funding-1") == ["a", "b", "c"]
    a = -funding_amounts(fits, mark, k, rate)[0]
    b = -funding_amounts(3 * fits + 7, mark, k, rate)[0]
    short = funding_amounts(-(4 * fits + 7), mark, k, rate)[1]
    assert [r[3:] for r in c.out if r[0] == "funding"] == [
        ("a", fits, mark, rate, 1, a, "table"), ("b", 3 * fits + 7, mark, rate, 1, b, "table"),
        ("c", -(4 * fits + 7), mark, rate, 1, short, "table"),
        ("rounding", 0, mark, rate, 1, -(a + b + short), "table")]
    assert c.ledger.balance("rounding", "USDT") == -(a + b + short) >= 0


def test_settle_funding_with_fund_parcels_books_both_sides_of_the_bound_exactly():
    """The general path (the fund holds parcels): users and parcels on both sides of the
    64-bit bound pay or receive funding_amounts; the fund's rows come in name order."""
    mark, k, rate = 10**8, 10_000, 300_000
    fits = funding_lots_fitting(mark, k, rate, SCALE)
    c = Clearing({"X": SymbolSpec("USDT", k)}, FeeSchedule(((0, 0),)))
    c.load_position("a", "X", fits, mark)  # long, at the bound
    c.load_position("z", "X", 5 * fits, mark)  # long, past it
    c.load_position("b", "X", -fits, mark)  # short, at the bound
    for i, qty in enumerate((-fits + 1, -(5 * fits) - 1)):  # short parcels: they receive
        parcel = Parcel(i, "gone", "X", "USDT", 0, mark, qty, abs(qty) * mark * k, qty, abs(qty) * mark * k, "x")
        c.parcels.append(parcel)
        c.live_parcels["X"].append(parcel)
    assert c.settle_funding(1, "X", mark, rate, "funding-1", fund_floor=0) == ["a", "b", "z"]
    paid = {q: -funding_amounts(q, mark, k, rate)[0] for q in (fits, 5 * fits)}
    got = {q: funding_amounts(q, mark, k, rate)[1] for q in (-fits, -fits + 1, -(5 * fits) - 1)}
    rows = [(r[3], r[4], r[8]) for r in c.out if r[0] == "funding"]
    assert rows == [("a", fits, paid[fits]), ("b", -fits, got[-fits]),
                    ("insurance_fund", -fits + 1, got[-fits + 1]),
                    ("insurance_fund", -(5 * fits) - 1, got[-(5 * fits) - 1]),
                    ("z", 5 * fits, paid[5 * fits]), ("rounding", 0, -sum(r[2] for r in rows[:-1]))]
