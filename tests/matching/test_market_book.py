"""matching/market.py: recorded depth as the market's liquidity, consumption, queue position
(both models), fills against our resting orders. Hand-built sequences with the expected
fills worked out in comments, then a property test of the invariants."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matching.engine import SymbolRules
from matching.market import MARKET_ACCOUNT, MARKET_ORDER_ID, MarketMatcher, R_RESERVED_ORDER_ID
from matching.types import (BUY, FILL, FOK, GTC, IOC, LIMIT, MARKET, POST_ONLY, SELL,
                            STP_CANCEL_TAKER)

X = "X"


def matcher(model: str = "front") -> MarketMatcher:
    return MarketMatcher({X: SymbolRules()}, queue_model=model)


def fills(m: MarketMatcher) -> list[tuple]:
    """(price, qty, aggressor, taker id, maker id, taker, maker) of the fills since the last
    call; clears the output."""
    rows = [(r[3], r[4], r[5], r[6], r[7], r[8], r[9]) for r in m.out if r[0] == FILL]
    m.out.clear()
    m.check_invariants()
    return rows


def buy(m, oid, price, qty, account="a", tif=GTC, otype=LIMIT):
    m.new_order(1, account, X, oid, BUY, otype, tif, price, qty, STP_CANCEL_TAKER)


def sell(m, oid, price, qty, account="a", tif=GTC, otype=LIMIT):
    m.new_order(1, account, X, oid, SELL, otype, tif, price, qty, STP_CANCEL_TAKER)


def ahead(m, oid):
    return m.orders[oid].ahead


def test_what_we_take_stays_taken_until_the_level_shrinks_past_it():
    m = matcher()
    m.depth(1, X, SELL, 101, 4)
    buy(m, 1, 101, 6, tif=IOC)
    # 4 recorded lots at 101 are all the book has: one fill of 4 against the market, 2 expire.
    assert fills(m) == [(101, 4, BUY, 1, MARKET_ORDER_ID, "a", MARKET_ACCOUNT)]
    m.depth(2, X, SELL, 101, 4)  # the recording repeats the old size: nothing came back
    assert m.books[X].best(SELL) == (None, 0)
    m.depth(3, X, SELL, 101, 3)  # shrinks below what we took: taken = min(4, 3) = 3
    assert m.books[X].best(SELL) == (None, 0)
    m.depth(4, X, SELL, 101, 5)  # grows by 2 past the 3 taken: 2 lots are new liquidity
    assert m.books[X].best(SELL) == (101, 2)
    buy(m, 2, 101, 5, tif=IOC)
    assert fills(m) == [(101, 2, BUY, 2, MARKET_ORDER_ID, "a", MARKET_ACCOUNT)]
    m.depth(5, X, SELL, 101, 0)  # the level goes: what we took is forgotten with it
    m.depth(6, X, SELL, 101, 1)
    assert m.books[X].best(SELL) == (101, 1)


def test_front_queue_trades_and_decreases_advance_an_order_once():
    m = matcher("front")
    m.depth(1, X, BUY, 100, 10)
    buy(m, 1, 100, 3)
    assert ahead(m, 1) == 10  # behind all 10 recorded lots
    m.depth(2, X, BUY, 100, 7)  # 3 lots leave from the front: 10 - 3 = 7 ahead
    assert ahead(m, 1) == 7
    m.trade(3, X, 100, 5, SELL)  # a recorded sell of 5 at 100 eats 5 of the 7 ahead: 2 left
    assert ahead(m, 1) == 2 and fills(m) == []
    m.depth(4, X, BUY, 100, 2)  # the trade's own decrease (7 -> 2): not counted again
    assert ahead(m, 1) == 2
    m.trade(5, X, 100, 4, SELL)  # 2 lots use up the queue ahead, the other 2 reach our order
    assert fills(m) == [(100, 2, SELL, MARKET_ORDER_ID, 1, MARKET_ACCOUNT, "a")]
    assert m.orders[1].qty == 1 and ahead(m, 1) == 0


def test_proportional_queue_spreads_a_decrease_over_the_queue():
    for model, expected in (("front", (4, 6)), ("proportional", (5, 6))):
        m = matcher(model)
        m.depth(1, X, BUY, 100, 10)
        buy(m, 1, 100, 2)  # ahead 10
        m.depth(2, X, BUY, 100, 12)  # 2 new lots join behind order 1
        buy(m, 2, 100, 1)  # ahead 12
        m.depth(3, X, BUY, 100, 6)  # 6 of the 12 recorded lots leave
        # front: both advance by 6: 10 - 6 = 4 and 12 - 6 = 6.
        # proportional: order 1 advances floor(6 x 10 / 12) = 5 -> 5; order 2 advances
        # floor(6 x 12 / 12) = 6 -> 6 (never more than the 6 visible either way).
        assert (ahead(m, 1), ahead(m, 2)) == expected, model
        fills(m)


def test_a_trade_through_our_price_fills_us_up_to_its_qty():
    m = matcher()
    m.depth(1, X, BUY, 100, 9)
    m.depth(1, X, SELL, 103, 9)
    buy(m, 1, 101, 2, account="a")
    buy(m, 2, 102, 2, account="b")
    # A recorded sell of 3 at 100 passed through our bids at 102 and 101: best price first,
    # 2 lots to b at 102, then 1 to a at 101 (3 in all, never more than the trade).
    m.trade(2, X, 100, 3, SELL)
    assert fills(m) == [(102, 2, SELL, 0, 2, MARKET_ACCOUNT, "b"),
                        (101, 1, SELL, 0, 1, MARKET_ACCOUNT, "a")]
    assert m.orders[1].qty == 1 and 2 not in m.orders


def test_a_crossing_update_fills_our_resting_order_and_takes_the_level():
    m = matcher()
    m.depth(1, X, SELL, 103, 5)
    buy(m, 1, 101, 5)
    # The recording moves an ask to 101 with 3 lots: it crosses our bid, so the market sells
    # 3 to us at our price and those 3 recorded lots are taken.
    m.depth(2, X, SELL, 101, 3)
    assert fills(m) == [(101, 3, SELL, 0, 1, MARKET_ACCOUNT, "a")]
    assert m.orders[1].qty == 2
    assert m.books[X].best(SELL) == (103, 5)  # 101's 3 lots are taken
    m.depth(3, X, SELL, 101, 3)  # repeated: still taken, nothing crosses again
    assert fills(m) == []


def test_our_taker_meets_market_lots_ahead_of_each_resting_order_first():
    m = matcher()
    m.depth(1, X, BUY, 100, 5)
    buy(m, 1, 100, 2, account="a")  # ahead 5
    m.depth(2, X, BUY, 100, 8)  # 3 more recorded lots behind a's order
    buy(m, 2, 100, 1, account="b")  # ahead 8
    # c sells 10 at 100: 5 market lots ahead of a, a's 2, the 3 market lots between a and
    # b: 10 in all, b is not reached; 8 market lots taken, b's queue ahead is gone.
    sell(m, 3, 100, 10, account="c", tif=IOC)
    assert fills(m) == [(100, 5, SELL, 3, 0, "c", MARKET_ACCOUNT),
                        (100, 2, SELL, 3, 1, "c", "a"),
                        (100, 3, SELL, 3, 0, "c", MARKET_ACCOUNT)]
    assert ahead(m, 2) == 0 and m.books[X].best(BUY) == (100, 1)


def test_snapshot_replaces_the_book_and_keeps_what_was_taken():
    m = matcher()
    for price, qty in ((101, 4), (102, 4)):
        m.depth(1, X, SELL, price, qty, snapshot=True)
    m.end_snapshot(1, X)
    buy(m, 1, 101, 4, tif=IOC)
    fills(m)
    m.depth(2, X, SELL, 101, 4, snapshot=True)  # repeats 101; 102 is not named
    m.depth(2, X, SELL, 105, 1, snapshot=True)
    m.end_snapshot(2, X)
    assert sorted(m.books[X].asks) == [101, 105]
    assert m.books[X].best(SELL) == (105, 1)  # 101's 4 lots stay taken


def test_queue_lists_what_a_liquidation_would_meet():
    m = matcher()
    m.depth(1, X, BUY, 100, 5)
    m.depth(1, X, BUY, 99, 7)
    buy(m, 1, 100, 2)
    assert m.queue(X, True, 99) == [(100, 5), (100, 2), (99, 7)]
    assert m.queue(X, True, 100) == [(100, 5), (100, 2)]
    assert m.take(2, "insurance_fund", X, -1, SELL, 99, 20) == 14
    assert fills(m)[-1] == (99, 7, SELL, -1, 0, "insurance_fund", MARKET_ACCOUNT)


def test_door_and_order_types_keep_the_engines_rules():
    m = matcher()
    m.depth(1, X, SELL, 101, 4)
    buy(m, 0, 99, 1)
    assert m.out[-1][5] == R_RESERVED_ORDER_ID
    sell(m, 5, 101, 1, tif=POST_ONLY)  # rests beside the market's 4 at 101
    buy(m, 6, 101, 1, tif=POST_ONLY)
    assert m.out[-1][:2] == ("rejected", 1) and m.out[-1][5] == "would_cross"
    buy(m, 7, 101, 6, tif=FOK)  # 4 + 1 = 5 < 6: nothing fills
    assert m.out[-1][5] == "fok_unfillable"
    buy(m, 8, None, 2, otype=MARKET, tif=IOC, account="b")
    assert fills(m) == [(101, 2, BUY, 8, 0, "b", MARKET_ACCOUNT)]
    m.amend(1, "a", X, 5, None, 3)  # more qty: to the back, behind the 2 visible lots left
    assert ahead(m, 5) == 2


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(("depth", "trade", "order", "cancel", "snapshot")),
                          st.integers(0, 1), st.integers(95, 105), st.integers(0, 6),
                          st.sampled_from(("a", "b"))), max_size=60),
       st.sampled_from(("front", "proportional")))
def test_invariants_and_lots_balance(steps, model):
    """After every step: taken within recorded, queue places ordered and within the visible
    lots, our orders never crossed with tradable liquidity; our accounts' filled lots are
    exactly the market's opposite (quantity is conserved)."""
    m = matcher(model)
    net: dict[str, int] = {}
    oid = 0
    for ts, (kind, side, price, qty, account) in enumerate(steps, start=1):
        if kind == "depth":
            m.depth(ts, X, side, price, qty)
        elif kind == "snapshot":
            m.depth(ts, X, side, price, qty, snapshot=True)
            m.end_snapshot(ts, X)
        elif kind == "trade":
            if qty:
                m.trade(ts, X, price, qty, side)
        elif kind == "order":
            oid += 1
            m.new_order(ts, account, X, oid, side, LIMIT, GTC if qty % 2 else IOC, price, max(qty, 1),
                        STP_CANCEL_TAKER)
        elif m.orders:
            victim = sorted(m.orders)[price % len(m.orders)]
            m.cancel(ts, m.orders[victim].account, X, victim)
        for r in m.out:
            if r[0] == FILL:
                signed = r[4] if r[5] == BUY else -r[4]
                net[r[8]] = net.get(r[8], 0) + signed
                net[r[9]] = net.get(r[9], 0) - signed
        m.out.clear()
        m.check_invariants()
    assert sum(net.values()) == 0
    ours = sum(v for k, v in net.items() if k != MARKET_ACCOUNT)
    assert ours == -net.get(MARKET_ACCOUNT, 0)


def test_unknown_queue_model_is_refused():
    with pytest.raises(ValueError, match="queue model"):
        MarketMatcher({X: SymbolRules()}, queue_model="lifo")


instructions = st.lists(st.tuples(
    st.sampled_from(["new", "new", "new", "cancel", "amend"]), st.sampled_from(["a", "b", "c"]),
    st.sampled_from([BUY, SELL]), st.sampled_from([(LIMIT, GTC), (LIMIT, IOC), (LIMIT, FOK), (LIMIT, POST_ONLY),
                                                   (MARKET, IOC)]),
    st.integers(97, 103), st.integers(0, 5), st.integers(0, 3), st.integers(1, 12)), max_size=80)


@settings(max_examples=300, deadline=None)
@given(instructions)
def test_without_recorded_liquidity_it_is_the_engine(steps):
    """With no depth and no trades, every record equals matching/engine.py's: the market
    book mirrors the engine's control flow (the engine is a compiled final class that takes
    no hooks), and this holds the two together."""
    from matching.engine import Matcher

    ours, engine = matcher(), Matcher({X: SymbolRules()})
    for ts, (action, account, side, (otype, tif), price, qty, stp, target) in enumerate(steps, start=1):
        for m in (ours, engine):
            if action == "new":
                m.new_order(ts, account, X, ts, side, otype, tif, price if otype == LIMIT else None, qty, stp)
            elif action == "cancel":
                m.cancel(ts, account, X, target)
            else:
                m.amend(ts, account, X, target, price if qty % 2 else None, qty)
        assert ours.out == engine.out, (ts, ours.out[-3:], engine.out[-3:])
        ours.check_invariants()
