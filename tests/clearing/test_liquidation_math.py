"""Liquidation arithmetic: equity shares, the sweep's floor-limited size against a lot-by-
lot search, and the ADL rank order against Fraction sorting."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from clearing.liquidation import Parcel, equity_shares, rank_order, sweep_size

ranks = st.one_of(st.none(), st.tuples(st.integers(-10**6, 10**6), st.integers(1, 10**6)))


@given(st.lists(st.tuples(st.sampled_from("abcdefgh"), ranks), unique_by=lambda x: x[0]))
def test_rank_order_is_the_exact_fraction_order_with_ties_by_account(candidates):
    want = sorted(candidates, key=lambda c: (c[1] is None, -Fraction(*c[1]) if c[1] else 0, c[0]))
    assert rank_order(candidates) == want


@given(st.integers(-10**12, 10**12), st.lists(st.integers(0, 10**9), min_size=1, max_size=5))
def test_equity_shares_sum_to_the_equity_and_follow_notional(equity, notionals):
    named = [(f"S{i}", n) for i, n in enumerate(notionals)]
    shares = equity_shares(equity, named)
    assert sum(shares.values()) == equity
    total = sum(notionals)
    if total:
        largest = min(named, key=lambda x: (-x[1], x[0]))[0]
        for symbol, n in named:
            if symbol != largest:
                assert shares[symbol] == (equity * n) // total


@given(long=st.booleans(), qty=st.integers(1, 60), cost=st.integers(1, 10**6),
       levels=st.lists(st.tuples(st.integers(1, 3_000), st.integers(1, 30)), max_size=5),
       fund=st.integers(0, 5_000), floor=st.integers(-1_000, 1_000))
def test_sweep_size_is_the_largest_prefix_the_floor_allows(long, qty, cost, levels, fund, floor):
    parcel = Parcel(1, "a", "X", "USDT", 0, 100, qty if long else -qty, cost, qty, cost, "sweep")
    # The book in the order a taker meets it: bids best (highest) first for a long parcel.
    levels = sorted(levels, key=lambda lv: -lv[0] if long else lv[0])
    available, allowed = sweep_size(parcel, levels, 7, fund, floor)
    prices = [p for p, q in levels for _ in range(q)][:qty]
    assert available == len(prices)

    def fund_after(n):
        exit_ = sum(prices[:n]) * 7
        return fund + (exit_ - parcel.removal(n) if long else parcel.removal(n) - exit_)

    bar = min(floor, fund)  # a fund below its floor may not go lower
    want = max(n for n in range(available + 1) if all(fund_after(m) >= bar for m in range(n + 1)))
    assert allowed == want
