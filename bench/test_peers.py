"""The peer benchmark's engines end with our book (bench/peers.py): the SortedDict + deque
baseline, the L3/L2 feeds derived from our output, and the peers when installed. A peer's
figure is only worth printing if these hold. Small streams, no timing."""

from __future__ import annotations

import pytest

from bench import peers
from matching import Matcher, SymbolRules
from matching.types import BUY, GTC, IOC, LIMIT, MARKET, NEW, SELL, STP_NONE, AMEND, CANCEL


@pytest.fixture(scope="module")
def plain() -> list[list]:
    return peers.streams(6_000, seed=3)[1]


@pytest.fixture(scope="module")
def ours(plain) -> peers.Levels:
    m = peers.run_batches(Matcher({peers.SYMBOL: SymbolRules()}), peers.batches(plain))
    return peers.ours_levels(m)


def columns(*rows: tuple) -> list[list]:
    """Matcher columns from (action, account, order_id, side, type, tif, price, qty) rows."""
    cols: list[list] = [[] for _ in range(11)]
    for i, (action, account, oid, side, otype, tif, price, qty) in enumerate(rows):
        for c, v in zip(cols, (i, action, account, peers.SYMBOL, oid, side, otype, tif, price,
                               qty, STP_NONE)):
            c.append(v)
    return cols


def test_the_peer_stream_has_no_self_trade_prevention_or_post_only(plain):
    assert set(plain[10]) == {STP_NONE}
    assert set(plain[7]) <= {GTC, IOC}


def test_the_sorteddict_deque_baseline_ends_with_our_book(plain, ours):
    book = peers.run_batches(peers.BaselineBook(), peers.batches(plain))
    assert peers.diff_levels(ours, book.levels()) == []
    assert ours["bid"] and ours["ask"]


def test_the_baseline_keeps_price_time_priority_and_amend_semantics():
    book = peers.BaselineBook()
    book.apply_columns(*columns(
        (NEW, "a", 1, SELL, LIMIT, GTC, 101, 5),
        (NEW, "b", 2, SELL, LIMIT, GTC, 101, 5),
        (AMEND, "a", 1, SELL, LIMIT, GTC, None, 3),  # less qty: keeps its place
        (NEW, "c", 3, BUY, MARKET, IOC, None, 4),  # fills 3 of order 1, then 1 of order 2
        (AMEND, "b", 2, SELL, LIMIT, GTC, 99, None),  # new price: to the back at 99
        (CANCEL, "x", 2, SELL, LIMIT, GTC, None, None),  # not b's: rejected
    ))
    fills = [(r[6], r[3]) for r in book.out if r[0] == "fill"]
    assert fills == [(1, 3), (2, 1)]
    assert book.levels() == {"bid": {}, "ask": {99: 4}}
    assert book.out[-1] == ("rejected", 5, 2)


def test_the_derived_l3_and_l2_feeds_rebuild_our_book(plain, ours):
    l3, l2 = peers.derived_feeds(plain)
    orders: dict[int, tuple[int, int, int]] = {}
    for op, side, price, qty, oid, _ts in l3:
        if op == peers.DELETE:
            del orders[oid]
        else:
            assert (op == peers.ADD) == (oid not in orders)
            orders[oid] = (side, price, qty)
    rebuilt: peers.Levels = {"bid": {}, "ask": {}}
    for side, price, qty in orders.values():
        levels = rebuilt["bid" if side == BUY else "ask"]
        levels[price] = levels.get(price, 0) + qty
    assert peers.diff_levels(ours, rebuilt) == []
    last: dict[tuple[int, int], int] = {}
    for side, price, total in l2:
        last[(side, price)] = total
    assert {k: v for k, v in last.items() if v} == {
        (BUY if name == "bid" else SELL, p): q for name in ("bid", "ask") for p, q in ours[name].items()}


def test_nautilus_fed_the_l3_feed_ends_with_our_book(plain, ours):
    pytest.importorskip("nautilus_trader")
    l3, _ = peers.derived_feeds(plain)
    factory, ops = peers.nautilus_ops(l3)
    assert peers.diff_levels(ours, peers.nautilus_levels(peers.run_nautilus(factory, ops))) == []
    plain_book = peers.run_nautilus_plain(factory, l3)
    assert peers.diff_levels(ours, peers.nautilus_levels(plain_book)) == []


def test_order_book_fed_the_l2_feed_ends_with_our_book(plain, ours):
    pytest.importorskip("order_book")
    _, l2 = peers.derived_feeds(plain)
    assert peers.diff_levels(ours, peers.order_book_levels(peers.run_order_book(l2))) == []


def test_lightmatchingengine_through_the_adapter_ends_with_our_book(plain, ours):
    pytest.importorskip("lightmatchingengine")
    lme = peers.run_batches(peers.LmeAdapter(), peers.batches(plain))
    assert peers.diff_levels(ours, lme.levels()) == []


def test_lightmatchingengine_still_lists_a_filled_order_and_cancelling_it_raises():
    pytest.importorskip("lightmatchingengine")
    from lightmatchingengine.lightmatchingengine import LightMatchingEngine
    engine = LightMatchingEngine()
    maker, _ = engine.add_order(peers.SYMBOL, 100, 5, 2)
    _, trades = engine.add_order(peers.SYMBOL, 100, 5, 1)
    assert trades and maker.leaves_qty == 0
    assert maker.order_id in engine.order_books[peers.SYMBOL].order_id_map  # the known bug
    with pytest.raises(AssertionError, match="not in the ask price depth"):
        engine.cancel_order(maker.order_id, peers.SYMBOL)


def test_a_book_that_differs_from_ours_is_reported_level_by_level():
    ours = {"bid": {99: 5, 98: 1}, "ask": {101: 2}}
    theirs = {"bid": {99: 4}, "ask": {101: 2, 102: 7}}
    assert peers.diff_levels(ours, theirs) == [
        "bid 98: ours 1 theirs None", "bid 99: ours 5 theirs 4", "ask 102: ours None theirs 7"]
    assert peers.diff_levels(ours, ours) == []
