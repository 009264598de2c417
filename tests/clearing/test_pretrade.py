"""Pre-trade checks: margin with the order included, and reduce-only.

BTCUSDT, K = 10,000; one tier at 10x (initial margin = notional / 10); taker fee 0.05%.
A 1.000 BTC order at 30,000.0 has notional 3,000,000,000,000 (30,000 USDT): initial
margin 300,000,000,000 (3,000 USDT), taker fee 1,500,000,000 (15 USDT).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearing.margin import MarginTiers
from clearing.money import fee
from clearing.pretrade import (OrderIntent, ceil_notional, check_order, headroom, notional_margin, order_requirement,
                               small_int, small_requirement)

USDT = 100_000_000
TIERS = MarginTiers.from_rows([[0, 500_000, 0, 10]])
BASE = dict(k=10_000, tiers=TIERS, taker_rate=50_000)


@pytest.mark.parametrize(("intent", "state", "reason"), [
    pytest.param(OrderIntent(1_000, 300_000, False),
                 dict(position_qty=0, equity=3_015 * USDT, initial_in_use=0, mark=300_000), None,
                 id="equity exactly covers margin plus fee: accepted"),
    pytest.param(OrderIntent(1_000, 300_000, False),
                 dict(position_qty=0, equity=3_015 * USDT - 1, initial_in_use=0, mark=300_000),
                 "insufficient_margin", id="one minor unit short: rejected"),
    pytest.param(OrderIntent(1_000, 300_000, False),
                 dict(position_qty=0, equity=6_015 * USDT, initial_in_use=3_000 * USDT + 1, mark=300_000),
                 "insufficient_margin", id="margin already in use counts"),
    pytest.param(OrderIntent(-1_000, 290_000, False),
                 dict(position_qty=0, equity=3_015 * USDT, initial_in_use=0, mark=300_000), None,
                 id="a limit below the mark is margined at the mark"),
    pytest.param(OrderIntent(1_000, 310_000, False),
                 dict(position_qty=0, equity=3_015 * USDT, initial_in_use=0, mark=300_000),
                 "insufficient_margin", id="a limit above the mark is margined at the limit"),
    pytest.param(OrderIntent(1_000, 300_000, False),
                 dict(position_qty=0, equity=3_015 * USDT, initial_in_use=0, mark=None), None,
                 id="before the first mark a limit is margined at its limit"),
    pytest.param(OrderIntent(1_000, None, False),
                 dict(position_qty=0, equity=10**15, initial_in_use=0, mark=None), "no_mark_price",
                 id="a market order before the first mark cannot be priced"),
    pytest.param(OrderIntent(-500, None, True),
                 dict(position_qty=1_000, equity=0, initial_in_use=0, mark=300_000), None,
                 id="reduce-only that reduces a long is exempt from margin"),
    pytest.param(OrderIntent(-1_500, None, True),
                 dict(position_qty=1_000, equity=10**15, initial_in_use=0, mark=300_000),
                 "reduce_only_would_increase", id="reduce-only that would flip is rejected"),
    pytest.param(OrderIntent(500, None, True),
                 dict(position_qty=1_000, equity=10**15, initial_in_use=0, mark=300_000),
                 "reduce_only_would_increase", id="reduce-only on the side of the position is rejected"),
    pytest.param(OrderIntent(500, 300_000, True),
                 dict(position_qty=0, equity=10**15, initial_in_use=0, mark=300_000),
                 "reduce_only_would_increase", id="reduce-only without a position is rejected"),
])
def test_pretrade(intent, state, reason):
    assert check_order(intent, **state, **BASE) == reason


# The 64-bit fast path of order_requirement (small_requirement) against the Python-int
# formulas, over operands on both sides of its limits: factors around 2**31, products
# around 2**63, the first tier's ceiling, charges and rebates.
_AROUND = [1, 2, 2**31 - 1, 2**31, 2**31 + 1, 2**62, 2**63, 2**64 + 3]
factors = st.one_of(st.integers(1, 10**6), st.integers(1, 2**33), st.sampled_from(_AROUND))
rates = st.one_of(st.integers(-10**6, 10**6), st.sampled_from([0, -1, 1, 2**31 - 1, -(2**31 - 1), 2**31, -(2**31)]))
first_floors = st.one_of(st.integers(1, 10**13), st.sampled_from([1, 2**62 - 1, 2**62, 2**62 + 1, 2**70]))


@settings(max_examples=1_000)
@given(price=factors, qty=factors, k=factors, taker_rate=rates, floor=first_floors,
       leverage=st.one_of(st.integers(1, 125), st.sampled_from([2**62 - 1, 2**62])))
def test_small_requirement_equals_python_ints(price, qty, k, taker_rate, floor, leverage):
    tiers = MarginTiers((0, floor), (100_000, 200_000), (0, floor // 1_000), (leverage, 1))
    notional = price * qty * k
    exact = (tiers.initial(notional), fee(notional, taker_rate))
    fast = small_requirement(price, qty, k, tiers, taker_rate)
    assert fast is None or fast == exact
    for side in (1, -1):
        assert order_requirement(side * qty, price, None, k, tiers, taker_rate, None) == exact
    if (max(price, qty, k, abs(taker_rate)) < 2**31 and notional < floor <= 2**62 and leverage < 2**62
            and notional * abs(taker_rate) < 2**63):
        assert fast == exact  # everything fits: the fast path must have been taken
    assert notional_margin(price, qty, k, tiers) == exact[0]
    assert ceil_notional(price, qty, k, leverage) == -(-notional // leverage)


@given(st.one_of(st.integers(), st.sampled_from([2**31 - 1, 2**31, -(2**31 - 1), -(2**31), 2**63, -(2**63) - 1])))
def test_small_int(x):
    assert small_int(x) == (x if -2**31 < x < 2**31 else 2**31)


def test_small_requirement_takes_a_realistic_order():
    """A 1 BTC order at 30,000 USDT (K = 10,000, minor unit 1e-8, taker 0.05%) is in the
    first tier of a realistic table: the fast path applies."""
    tiers = MarginTiers.from_rows([[0, 400_000, 0], [5_000_000_000_000, 500_000, 5_000_000_000]], max_leverage=50)
    assert small_requirement(300_000, 1_000, 10_000, tiers, 50_000) == (60_000_000_000, 1_500_000_000)


money = st.one_of(st.integers(), st.integers(-10**18, 10**18),
                  st.sampled_from([2**60 - 1, 2**60, -(2**60 - 1), -(2**60), 2**63, -(2**63) - 1, 2**70]))


@given(money, money, money, money)
def test_headroom_equals_python_ints(equity, taker_fee, in_use, initial):
    assert headroom(equity, taker_fee, in_use, initial) == equity - taker_fee - in_use - initial
