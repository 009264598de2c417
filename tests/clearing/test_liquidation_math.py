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
       queue=st.lists(st.tuples(st.integers(1, 3_000), st.integers(1, 30)), max_size=6),
       fund=st.integers(0, 5_000), floor=st.integers(-1_000, 1_000))
def test_sweep_size_is_the_largest_prefix_the_floor_allows_fill_by_fill(long, qty, cost, queue, fund, floor):
    def parcel():
        return Parcel(1, "a", "X", "USDT", 0, 100, qty if long else -qty, cost, qty, cost, "sweep")

    # The resting orders in the order a taker meets them: best price first.
    queue = sorted(queue, key=lambda o: -o[0] if long else o[0])
    available, allowed = sweep_size(parcel(), queue, 7, fund, floor)

    def fund_after(n):
        """Book n lots fill by fill as settle_parcel_fill does: removal from what is left."""
        p, balance, left = parcel(), fund, n
        for price, size in queue:
            take = min(size, left, abs(p.qty))
            if take <= 0:
                break
            removed = p.removal(take)
            exit_ = price * take * 7
            balance += exit_ - removed if long else removed - exit_
            p.qty += -take if long else take
            p.cost -= removed
            left -= take
        return balance

    assert available == min(qty, sum(q for _, q in queue))
    bar = min(floor, fund)  # a fund below its floor may not go lower
    want = max(n for n in range(available + 1) if all(fund_after(m) >= bar for m in range(n + 1)))
    assert allowed == want
