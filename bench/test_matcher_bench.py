"""Matcher throughput (pytest-benchmark). Run timed with `make bench`; `make test` runs each
once with timing off so the suite cannot rot.

Each round replays the whole stream into a fresh matcher, draining records after every
batch as a replay does; the figure to read is instructions per second in `extra_info`
(and median time x stream length).
"""

from __future__ import annotations

import pytest

from backtest.match import gc_paused
from bench.conftest import ADVERSARIAL_N, REALISTIC_N
from matching import Matcher, SymbolRules
from matching.types import BUY, CANCEL, GTC, LIMIT, NEW, SELL, STP_CANCEL_TAKER

pytestmark = pytest.mark.bench
RULES = {"BTCUSDT": SymbolRules()}


def _replay(batches) -> Matcher:
    matcher = Matcher(RULES)
    out = matcher.out
    with gc_paused():
        for batch in batches:
            matcher.apply_columns(*batch)
            out.clear()
    return matcher


def _record(benchmark, n: int) -> None:
    stats = getattr(benchmark, "stats", None)
    if stats is not None and getattr(stats, "stats", None) is not None:
        benchmark.extra_info["instructions"] = n
        benchmark.extra_info["msgs_per_s_median"] = round(n / stats.stats.median)


def test_realistic_stream_1m(benchmark, realistic):
    matcher = benchmark.pedantic(_replay, args=(realistic,), rounds=3, iterations=1)
    assert matcher.orders, "the realistic stream leaves a live book"
    _record(benchmark, REALISTIC_N)


def test_adversarial_deep_book_sweeps(benchmark, adversarial):
    matcher = benchmark.pedantic(_replay, args=(adversarial,), rounds=3, iterations=1)
    assert sum(len(b.bids) + len(b.asks) for b in matcher.books.values()) < 5_000
    _record(benchmark, ADVERSARIAL_N)


def _columns(n: int, action: int, *, price_of) -> list[list]:
    return [list(range(n)), [action] * n, [f"acct{i % 100}" for i in range(n)], ["BTCUSDT"] * n,
            list(range(1, n + 1)), [BUY if i % 2 == 0 else SELL for i in range(n)], [LIMIT] * n,
            [GTC] * n, [price_of(i) for i in range(n)], [10] * n, [STP_CANCEL_TAKER] * n]


def _resting_price(i: int) -> int:
    return 299_999 - i % 50 if i % 2 == 0 else 300_001 + i % 50


MICRO_N = 200_000


def test_add_resting_orders(benchmark):
    adds = _columns(MICRO_N, NEW, price_of=_resting_price)

    def run():
        m = Matcher(RULES)
        with gc_paused():
            m.apply_columns(*adds)
        return m

    m = benchmark.pedantic(run, rounds=3, iterations=1)
    assert len(m.orders) == MICRO_N
    _record(benchmark, MICRO_N)


def test_cancel_resting_orders(benchmark):
    adds = _columns(MICRO_N, NEW, price_of=_resting_price)
    cancels = _columns(MICRO_N, CANCEL, price_of=lambda i: None)

    def setup():
        m = Matcher(RULES)
        m.apply_columns(*adds)
        m.out.clear()
        return (m,), {}

    def run(m):
        with gc_paused():
            m.apply_columns(*cancels)
        return m

    m = benchmark.pedantic(run, setup=setup, rounds=3, iterations=1)
    assert not m.orders
    _record(benchmark, MICRO_N)
