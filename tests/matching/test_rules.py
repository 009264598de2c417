"""Table-driven rules of the matcher: state, action, expected rows (and book where it
matters). Rows are ("fill", price, qty, taker_id, maker_id) and
(event, account, order_id, reason, remaining_qty), in emission order."""

from __future__ import annotations

import pytest

from tests.matching.helpers import amend, cancel, levels, market, new, run

ASKS = [new(1, "m1", "sell", 101, 5), new(2, "m2", "sell", 101, 5), new(3, "m3", "sell", 102, 10)]

CASES = [
    pytest.param([], new(10, "a", "buy", 100, 5),
                 [("accepted", "a", 10, None, 5)],
                 id="a limit that does not cross is accepted and rests"),
    pytest.param(ASKS, new(10, "a", "buy", 101, 7),
                 [("accepted", "a", 10, None, 7),
                  ("fill", 101, 5, 10, 1), ("filled", "a", 10, None, 2), ("filled", "m1", 1, None, 0),
                  ("fill", 101, 2, 10, 2), ("filled", "a", 10, None, 0), ("filled", "m2", 2, None, 3)],
                 id="makers at one price fill oldest first at the maker's price"),
    pytest.param(ASKS, new(10, "a", "buy", 105, 12),
                 [("accepted", "a", 10, None, 12),
                  ("fill", 101, 5, 10, 1), ("filled", "a", 10, None, 7), ("filled", "m1", 1, None, 0),
                  ("fill", 101, 5, 10, 2), ("filled", "a", 10, None, 2), ("filled", "m2", 2, None, 0),
                  ("fill", 102, 2, 10, 3), ("filled", "a", 10, None, 0), ("filled", "m3", 3, None, 8)],
                 id="a buy limit above the touch fills the better price first, each at its maker price"),
    pytest.param(ASKS, new(10, "a", "buy", 101, 15),
                 [("accepted", "a", 10, None, 15),
                  ("fill", 101, 5, 10, 1), ("filled", "a", 10, None, 10), ("filled", "m1", 1, None, 0),
                  ("fill", 101, 5, 10, 2), ("filled", "a", 10, None, 5), ("filled", "m2", 2, None, 0)],
                 id="a gtc remainder rests silently at its limit after filling what it can"),
    pytest.param(ASKS, market(10, "a", "buy", 30),
                 [("accepted", "a", 10, None, 30),
                  ("fill", 101, 5, 10, 1), ("filled", "a", 10, None, 25), ("filled", "m1", 1, None, 0),
                  ("fill", 101, 5, 10, 2), ("filled", "a", 10, None, 20), ("filled", "m2", 2, None, 0),
                  ("fill", 102, 10, 10, 3), ("filled", "a", 10, None, 10), ("filled", "m3", 3, None, 0),
                  ("expired", "a", 10, "ioc_remainder", 0)],
                 id="a market order sweeps every level and its remainder expires, never rests"),
    pytest.param([], market(10, "a", "buy", 3),
                 [("accepted", "a", 10, None, 3), ("expired", "a", 10, "no_liquidity", 0)],
                 id="a market order on an empty side is accepted then expires"),
    pytest.param(ASKS, new(10, "a", "buy", 101, 12, tif="ioc"),
                 [("accepted", "a", 10, None, 12),
                  ("fill", 101, 5, 10, 1), ("filled", "a", 10, None, 7), ("filled", "m1", 1, None, 0),
                  ("fill", 101, 5, 10, 2), ("filled", "a", 10, None, 2), ("filled", "m2", 2, None, 0),
                  ("expired", "a", 10, "ioc_remainder", 0)],
                 id="an ioc remainder expires instead of resting"),
    pytest.param(ASKS, new(10, "a", "buy", 100, 1, tif="ioc"),
                 [("accepted", "a", 10, None, 1), ("expired", "a", 10, "ioc_remainder", 0)],
                 id="an ioc that cannot cross expires whole"),
    pytest.param(ASKS, new(10, "a", "buy", 101, 11, tif="fok"),
                 [("accepted", "a", 10, None, 11), ("expired", "a", 10, "fok_unfillable", 0)],
                 id="a fok that cannot fill in full within its limit expires and fills nothing"),
    pytest.param(ASKS, new(10, "a", "buy", 102, 11, tif="fok"),
                 [("accepted", "a", 10, None, 11),
                  ("fill", 101, 5, 10, 1), ("filled", "a", 10, None, 6), ("filled", "m1", 1, None, 0),
                  ("fill", 101, 5, 10, 2), ("filled", "a", 10, None, 1), ("filled", "m2", 2, None, 0),
                  ("fill", 102, 1, 10, 3), ("filled", "a", 10, None, 0), ("filled", "m3", 3, None, 9)],
                 id="a fok that can fill in full trades like any taker"),
    pytest.param(ASKS, new(10, "a", "buy", 101, 1, tif="post_only"),
                 [("rejected", "a", 10, "would_cross", 0)],
                 id="a post-only that would take liquidity is only rejected"),
    pytest.param(ASKS, new(10, "a", "buy", 100, 1, tif="post_only"),
                 [("accepted", "a", 10, None, 1)],
                 id="a post-only below the ask rests"),
    pytest.param([], new(10, "a", "buy", 103, 4, symbol="Y"),
                 [("rejected", "a", 10, "off_tick", 0)],
                 id="a price off the instrument's price step is rejected off_tick"),
    pytest.param([], new(10, "a", "buy", 0, 4),
                 [("rejected", "a", 10, "invalid_price", 0)],
                 id="a limit price of zero is rejected"),
    pytest.param([], new(10, "a", "buy", None, 4),
                 [("rejected", "a", 10, "invalid_price", 0)],
                 id="a limit without a price is rejected"),
    pytest.param([], ("new", "a", "X", 10, "buy", "market", "ioc", 100, 4, "cancel_taker"),
                 [("rejected", "a", 10, "invalid_price", 0)],
                 id="a market order with a price is rejected"),
    pytest.param([], market(10, "a", "buy", 4, tif="post_only"),
                 [("rejected", "a", 10, "invalid_order", 0)],
                 id="a post-only market order is rejected"),
    pytest.param([], new(10, "a", "buy", 100, 0),
                 [("rejected", "a", 10, "invalid_qty", 0)],
                 id="a zero qty is rejected"),
    pytest.param([], new(10, "a", "buy", 100, -3),
                 [("rejected", "a", 10, "invalid_qty", 0)],
                 id="a negative qty is rejected"),
    pytest.param([], new(10, "a", "buy", 100, 5, symbol="Y"),
                 [("rejected", "a", 10, "invalid_qty", 0)],
                 id="a qty off the lot step is rejected"),
    pytest.param([], new(10, "a", "buy", 100, 2, symbol="Y"),
                 [("rejected", "a", 10, "below_min_qty", 0)],
                 id="a qty below the minimum is rejected"),
    pytest.param([], new(10, "a", "buy", 100, 1, symbol="NOPE"),
                 [("rejected", "a", 10, "unknown_symbol", 0)],
                 id="an unknown symbol is rejected"),
    pytest.param(ASKS, new(1, "a", "buy", 90, 1),
                 [("rejected", "a", 1, "duplicate_order_id", 0)],
                 id="a new order reusing a live order id is rejected"),
    pytest.param(ASKS, cancel(2, "m2"),
                 [("cancelled", "m2", 2, "user", 0)],
                 id="a cancel removes the order"),
    pytest.param(ASKS, cancel(99, "m2"),
                 [("rejected", "m2", 99, "unknown_order", 0)],
                 id="a cancel of an unknown order is rejected"),
    pytest.param(ASKS, cancel(2, "intruder"),
                 [("rejected", "intruder", 2, "unknown_order", 0)],
                 id="a cancel of another account's order is rejected"),
    pytest.param(ASKS, cancel(2, "m2", symbol="Y"),
                 [("rejected", "m2", 2, "unknown_order", 0)],
                 id="a cancel naming the wrong symbol is rejected"),
    pytest.param(ASKS + [market(10, "a", "buy", 5)], cancel(1, "m1"),
                 [("rejected", "m1", 1, "unknown_order", 0)],
                 id="a cancel of a filled order is rejected"),
    pytest.param(ASKS, amend(1, "m1", qty=0),
                 [("cancelled", "m1", 1, "user", 0)],
                 id="an amend to zero cancels"),
    pytest.param(ASKS, amend(1, "m1", price=103, qty=-1),
                 [("rejected", "m1", 1, "invalid_qty", 5)],
                 id="an amend with a bad qty is rejected and the order keeps its open qty"),
    pytest.param(ASKS, amend(99, "m1", qty=3),
                 [("rejected", "m1", 99, "unknown_order", 0)],
                 id="an amend of an unknown order is rejected"),
    pytest.param(ASKS, amend(1, "m1", price=100),
                 [("amended", "m1", 1, None, 5)],
                 id="an amend to a new non-crossing price moves the order"),
    pytest.param(ASKS + [new(10, "a", "buy", 99, 4)], amend(1, "m1", price=99, qty=6),
                 [("amended", "m1", 1, None, 6),
                  ("fill", 99, 4, 1, 10), ("filled", "m1", 1, None, 2), ("filled", "a", 10, None, 0)],
                 id="an amend that crosses trades as the taker after amended, then rests the rest"),
    pytest.param(ASKS + [new(10, "a", "buy", 99, 4), new(11, "m1", "sell", 103, 1, tif="post_only")],
                 amend(11, "m1", price=99),
                 [("rejected", "m1", 11, "would_cross", 1)],
                 id="a post-only order's crossing amend is rejected and the order unchanged"),
    pytest.param(ASKS, new(10, "m2", "buy", 102, 12),
                 [("accepted", "m2", 10, None, 12),
                  ("fill", 101, 5, 10, 1), ("filled", "m2", 10, None, 7), ("filled", "m1", 1, None, 0),
                  ("cancelled", "m2", 10, "self_trade", 0)],
                 id="stp cancel_taker cancels the taker's remainder at its own maker; earlier fills stand"),
    pytest.param(ASKS, new(10, "m2", "buy", 102, 12, stp="cancel_maker"),
                 [("accepted", "m2", 10, None, 12),
                  ("fill", 101, 5, 10, 1), ("filled", "m2", 10, None, 7), ("filled", "m1", 1, None, 0),
                  ("cancelled", "m2", 2, "self_trade", 0),
                  ("fill", 102, 7, 10, 3), ("filled", "m2", 10, None, 0), ("filled", "m3", 3, None, 3)],
                 id="stp cancel_maker cancels the own maker and keeps matching"),
    pytest.param(ASKS, new(10, "m2", "buy", 102, 12, stp="cancel_both"),
                 [("accepted", "m2", 10, None, 12),
                  ("fill", 101, 5, 10, 1), ("filled", "m2", 10, None, 7), ("filled", "m1", 1, None, 0),
                  ("cancelled", "m2", 2, "self_trade", 0), ("cancelled", "m2", 10, "self_trade", 0)],
                 id="stp cancel_both cancels the own maker and the taker"),
    pytest.param(ASKS, new(10, "m2", "buy", 101, 7, stp="none"),
                 [("accepted", "m2", 10, None, 7),
                  ("fill", 101, 5, 10, 1), ("filled", "m2", 10, None, 2), ("filled", "m1", 1, None, 0),
                  ("fill", 101, 2, 10, 2), ("filled", "m2", 10, None, 0), ("filled", "m2", 2, None, 3)],
                 id="stp none lets an account trade with itself"),
    pytest.param(ASKS, new(10, "m1", "buy", 101, 7, tif="fok"),
                 [("accepted", "m1", 10, None, 7), ("expired", "m1", 10, "fok_unfillable", 0)],
                 id="a fok that self-trade prevention would stop short expires and touches nothing"),
]


@pytest.mark.parametrize(("state", "action", "expected"), CASES)
def test_rule(state, action, expected):
    _, rows = run(state, action)
    assert rows == expected


def test_fok_that_expires_leaves_the_book_as_it_was():
    m, _ = run(ASKS, new(10, "m1", "buy", 101, 7, tif="fok"))
    assert levels(m) == [("sell", 101, [1, 2]), ("sell", 102, [3])]


def test_qty_down_amend_keeps_queue_position():
    m, _ = run(ASKS, amend(1, "m1", qty=2))
    assert levels(m)[0] == ("sell", 101, [1, 2])
    assert m.books["X"].asks[101].qty == 7


def test_qty_up_amend_goes_to_the_back_of_the_level():
    m, _ = run(ASKS, amend(1, "m1", qty=6))
    assert levels(m)[0] == ("sell", 101, [2, 1])


def test_price_amend_goes_to_the_back_of_the_new_level():
    m, _ = run(ASKS, amend(1, "m1", price=102))
    assert levels(m) == [("sell", 101, [2]), ("sell", 102, [3, 1])]


def test_crossing_amend_rests_its_remainder_at_the_new_price():
    m, _ = run(ASKS + [new(10, "a", "buy", 99, 4)], amend(1, "m1", price=99, qty=6))
    assert levels(m) == [("sell", 99, [1]), ("sell", 101, [2]), ("sell", 102, [3])]
    assert m.orders[1].qty == 2


def test_stp_cancel_maker_removes_the_own_maker_from_the_book():
    m, _ = run(ASKS, new(10, "m2", "buy", 102, 12, stp="cancel_maker"))
    assert levels(m) == [("sell", 102, [3])]
    assert 2 not in m.orders and 1 not in m.orders


def test_emptied_levels_leave_the_book_and_the_next_best_surfaces():
    m, _ = run(ASKS + [new(20, "b", "buy", 99, 1), new(21, "b", "buy", 98, 1)], market(10, "a", "buy", 10))
    book = m.books["X"]
    assert book.best_ask() == 102
    assert book.best_bid() == 99
    assert 101 not in book.asks
