"""The market-data replay under random streams: recorded depth rows and trades (the
`market` account's liquidity, matching/market.py) interleaved with our accounts' orders,
marks, funding times and transfers, fed one event at a time through `Replay`, with loaded
positions that do not net to zero (the market holds the opposite).

After every event, as in test_replay_properties.py: for every asset the conservation
identity holds exactly; positions net to zero per symbol with the market's included; the
fund stays at or above its floor except by a `bankruptcy` cover (assert_fund_floor); no
user account is left liquidatable and none has negative equity; and the market book's own
invariants hold (taken within recorded, queue places within the visible lots, our orders
never crossed with tradable liquidity).
"""

from __future__ import annotations

from hypothesis import event as note_event, given, settings
from hypothesis import strategies as st

from backtest.replay import RANK_DEPTH, RANK_TRADES, LiquidationRules, Replay
from clearing.liquidation import ADL_RANKINGS, EXECUTIONS
from matching import SymbolRules
from matching.market import MARKET_ACCOUNT, QUEUE_MODELS, MarketMatcher
from matching.types import BUY, GTC, IOC, LIMIT, MARKET, NEW, SELL, STP_CANCEL_TAKER
from tests.backtest.test_replay_properties import (ACCOUNTS, SYMBOLS, _brute_force_liquidatable, apply_event,
                                                   assert_conserved, fundings, marks, opened_clearing,
                                                   transfers)

orders = st.tuples(st.just("order"), st.sampled_from(ACCOUNTS), st.sampled_from(sorted(SYMBOLS)),
                   st.sampled_from([BUY, SELL]), st.sampled_from(["limit", "ioc", "market"]),
                   st.integers(95, 105), st.integers(1, 40))
depth = st.tuples(st.just("depth"), st.sampled_from(sorted(SYMBOLS)), st.sampled_from([BUY, SELL]),
                  st.integers(88, 112), st.integers(0, 60), st.booleans())
trades = st.tuples(st.just("trade"), st.sampled_from(sorted(SYMBOLS)), st.sampled_from([BUY, SELL]),
                   st.integers(90, 110), st.integers(1, 30))
# An account closes its whole position with a market order (reduce-only or not): into a thin
# book far from the mark, a loss beyond the wallet, which the fund covers (assert_fund_floor).
closes = st.tuples(st.just("close"), st.sampled_from(ACCOUNTS), st.sampled_from(sorted(SYMBOLS)), st.booleans())
streams = st.lists(st.one_of(orders, closes, depth, depth, depth, trades, trades, marks, marks, fundings, transfers),
                   min_size=10, max_size=60)  # hypothesis's lists average a handful otherwise


def _feed(replay: Replay, row: tuple) -> None:
    """One market row (datasets/market_stream.py columns) into the replay, then apply it."""
    replay._market = iter([tuple([v] for v in row)])
    replay._load_market()
    replay.until(row[0])


@settings(max_examples=500, deadline=None)
@given(stream=streams, data=st.data())
def test_every_event_conserves_money_against_recorded_liquidity(stream, data):
    clearing = opened_clearing(data)
    for symbol in sorted(SYMBOLS):
        account = data.draw(st.sampled_from(ACCOUNTS))
        qty = data.draw(st.integers(-50, 50))
        clearing.load_position(account, symbol, qty, data.draw(st.integers(90, 110)))
        if qty:  # DESIGN.md: the market takes the opposite at the first mark (100 here)
            clearing.load_position(MARKET_ACCOUNT, symbol, -qty, 100)
    for asset in ("USDT", "USDC"):
        clearing.ledger.open_balance("insurance_fund", asset, data.draw(st.integers(0, 20_000)))
    matcher = MarketMatcher({s: SymbolRules() for s in SYMBOLS}, data.draw(st.sampled_from(QUEUE_MODELS)))
    rules = LiquidationRules(execution=data.draw(st.sampled_from(EXECUTIONS)),
                             band=data.draw(st.sampled_from([1_000_000, 5_000_000, 20_000_000])),
                             fee=data.draw(st.sampled_from([0, 500_000])),
                             ranking=data.draw(st.sampled_from(ADL_RANKINGS)),
                             max_takeover=data.draw(st.sampled_from([None, 30_000_000, 300_000_000])),
                             adl_fees=data.draw(st.booleans()),
                             one_unit={"USDT": 1_000, "USDC": 1_000})
    replay = Replay(matcher, clearing, [], rules)
    assert replay.market_mode
    for account in sorted(clearing.positions):
        replay.watch.check(account)
    external = {a: clearing.ledger.external[a] - clearing.opening_cost.get(a, 0) for a in ("USDT", "USDC")}
    # A recording opens with a snapshot: a book of random depth on both sides of 100.
    for symbol in sorted(SYMBOLS):
        for price in range(85, 116):
            if price != 100:
                side = BUY if price < 100 else SELL
                _feed(replay, (0, RANK_DEPTH, 0, symbol, side, price, data.draw(st.integers(0, 8)), True, False))
        matcher.end_snapshot(0, symbol)
    order_id = 0
    for ts, event in enumerate(stream, start=1):
        kind = event[0]
        if kind == "close":
            _, account, symbol, reduce_only = event
            pos = clearing.positions.get(account, {}).get(symbol)
            if pos is not None and pos.qty:
                order_id += 1
                replay.orders(([ts], [NEW], [account], [symbol], [order_id], [SELL if pos.qty > 0 else BUY],
                               [MARKET], [IOC], [None], [abs(pos.qty)], [STP_CANCEL_TAKER], [reduce_only]))
        elif kind == "order":
            _, account, symbol, side, how, price, qty = event
            order_id += 1
            if how == "market":
                row = (NEW, order_id, side, MARKET, IOC, None, qty)
            else:
                row = (NEW, order_id, side, LIMIT, GTC if how == "limit" else IOC, price, qty)
            action, oid, side, otype, tif, p, q = row
            replay.orders(([ts], [action], [account], [symbol], [oid], [side], [otype], [tif],
                           [p], [q], [STP_CANCEL_TAKER], [False]))
        elif kind == "depth":
            _, symbol, side, price, qty, snapshot = event
            _feed(replay, (ts, RANK_DEPTH, ts, symbol, side, price, qty, snapshot, snapshot))
        elif kind == "trade":
            _, symbol, aggressor, price, qty = event
            _feed(replay, (ts, RANK_TRADES, ts, symbol, aggressor, price, qty, False, False))
        else:
            apply_event(replay, ts, event)
        assert_conserved(clearing, replay, external, (ts, event))
        for symbol in SYMBOLS:
            assert clearing.net_qty(symbol) == 0
        # `market` is an exchange account: never margin-checked (its balance may go anywhere).
        assert not {d for d in _brute_force_liquidatable(clearing) if d[0] != MARKET_ACCOUNT}, (ts, event)
        for account in ACCOUNTS:
            for asset in ("USDT", "USDC"):
                assert clearing.pool(account, asset).equity >= 0, (ts, event, account, asset)
        matcher.check_invariants()
    fills = [r for r in replay.out if r[0] == "fill"]
    note_event(f"market as taker: {any(r[8] == MARKET_ACCOUNT for r in fills)}")
    note_event(f"liquidation fills against the market: "
               f"{any(r[-1] == 'liquidation' and r[9] == MARKET_ACCOUNT for r in fills)}")
    assert replay.seq == sum(3 if r[0] == "fill" else 1 for r in replay.out)
