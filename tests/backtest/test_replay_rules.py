"""The replay's rules, one hand-computed case each: pre-trade and amend margin checks,
reduce-only, transfers, margin calls, funding sources and stream order.

Instrument: K = 100 minor units per tick x lot; tiers 0.4% MMR, max leverage 10; fees
maker 0.02%, taker 0.05%.
"""

from __future__ import annotations

from fractions import Fraction

import polars as pl

from backtest.replay import MARGIN_CALL, RANK_FUNDING, RANK_MARKS, RANK_TRANSFERS, TRANSFER, Replay
from clearing.margin import MarginTiers
from clearing.settlement import Clearing, FeeSchedule, SymbolSpec
from matching import Matcher, SymbolRules
from matching.types import (ACCEPTED, AMEND, AMENDED, BUY, CANCEL, GTC, IOC, LIMIT, MARKET, NEW, REJECTED,
                            SELL, STP_CANCEL_TAKER)

TIERS = MarginTiers.from_rows([[0, 400_000, 0]], max_leverage=10)
K = 100


def make(balances: dict[str, int], positions=(), events=()) -> Replay:
    clearing = Clearing({"X": SymbolSpec("USDT", K, TIERS)}, FeeSchedule(((20_000, 50_000),)))
    for account, balance in balances.items():
        clearing.ledger.open_balance(account, "USDT", balance)
    for account, qty, entry in positions:
        clearing.load_position(account, "X", qty, entry)
    clearing.check_opening()
    replay = Replay(Matcher({"X": SymbolRules()}), clearing, sorted(events))
    for account in sorted(clearing.positions):
        replay.watch.check(account)
    return replay


def order(replay: Replay, ts: int, account: str, oid: int, side: int, price: int | None, qty: int,
          *, action: int = NEW, tif: int = GTC, reduce_only: bool = False) -> list[tuple]:
    n0 = len(replay.out)
    otype = LIMIT if price is not None or action == AMEND else MARKET
    replay.orders(([ts], [action], [account], ["X"], [oid], [side], [otype],
                   [tif if otype == LIMIT else IOC], [price], [qty], [STP_CANCEL_TAKER], [reduce_only]))
    return replay.out[n0:]


def mark(ts: int, price: int) -> tuple:
    return (ts, RANK_MARKS, ts, "mark", "X", price)


def test_an_order_needs_its_initial_margin_plus_its_taker_fee():
    # Buy 10 lots at 1,000: notional 1,000,000; initial margin 100,000; taker fee 500.
    replay = make({"a": 100_499, "b": 100_500})
    assert order(replay, 1, "a", 1, BUY, 1_000, 10) == [(REJECTED, 1, "a", "X", 1, "insufficient_margin", 0)]
    assert order(replay, 2, "b", 2, BUY, 1_000, 10) == [(ACCEPTED, 2, "b", "X", 2, None, 10)]
    # The resting order's margin counts against the next one: b has nothing left.
    assert order(replay, 3, "b", 3, BUY, 1_000, 1)[0][5] == "insufficient_margin"


def test_open_orders_count_at_their_exact_margin_when_the_quick_bound_overstates_it():
    # After one resting order (margin exactly 100,000; the quick bound says 100,001), a
    # second identical order needs 100,000 + 500 more: 200,500 is exactly enough, 200,499
    # is one short. Both go past the bound to the exact figure.
    for balance, expected in ((200_500, ACCEPTED), (200_499, REJECTED)):
        replay = make({"a": balance})
        assert order(replay, 1, "a", 1, BUY, 1_000, 10)[0][0] == ACCEPTED
        assert order(replay, 2, "a", 2, BUY, 1_000, 10)[0][0] == expected
        assert replay._orders_margin_bound("a", "USDT") in (100_001, 200_002)


def test_the_open_order_bound_follows_new_orders_and_marks():
    # One resting order of 10 lots at 1,000: bound ceil(1,000 x 10 x 100 / 10) + 1. A mark
    # above the limit prices the order at the mark; another order adds to the aggregate.
    replay = make({"a": 1_000_000})
    assert order(replay, 1, "a", 1, BUY, 1_000, 10)[0][0] == ACCEPTED
    assert replay._orders_margin_bound("a", "USDT") == 100_001
    replay.schedule([mark(2, 2_000)])
    replay.until(2)
    assert replay._orders_margin_bound("a", "USDT") == 200_001
    assert order(replay, 3, "a", 2, BUY, 900, 10)[0][0] == ACCEPTED
    assert replay._orders_margin_bound("a", "USDT") == 400_002  # 2,000 x 20 lots, n = 2


def test_door_checks_come_before_margin_and_market_orders_need_a_mark():
    replay = make({"a": 0})
    assert order(replay, 1, "a", 1, BUY, 1_000, 0)[0][5] == "invalid_qty"
    assert order(replay, 2, "a", 2, BUY, None, 5)[0][5] == "no_mark_price"
    replay.schedule([mark(3, 1_000)])
    assert order(replay, 4, "a", 3, BUY, None, 5)[0][5] == "insufficient_margin"


def test_reduce_only_may_only_reduce_and_skips_the_margin_check():
    replay = make({"a": 0, "b": 0}, positions=[("a", 5, 1_000), ("b", -5, 1_000)])
    assert order(replay, 1, "a", 1, BUY, 1_000, 1, reduce_only=True)[0][5] == "reduce_only_would_increase"
    assert order(replay, 2, "a", 2, SELL, 1_000, 6, reduce_only=True)[0][5] == "reduce_only_would_increase"
    assert order(replay, 3, "a", 3, SELL, 1_000, 5, reduce_only=True)[0][0] == ACCEPTED


def test_an_amend_that_raises_exposure_is_checked_with_the_order_counted_once():
    # Rest 5 lots at 1,000 (margin 50,000). Equity 100,500 covers an amend to 10 lots
    # exactly: margin 100,000 + taker fee 500 (the order's own 50,000 is not counted twice).
    replay = make({"a": 100_500})
    order(replay, 1, "a", 1, BUY, 1_000, 5)
    assert order(replay, 2, "a", 1, BUY, None, 10, action=AMEND) == [(AMENDED, 2, "a", "X", 1, None, 10)]
    # 11 lots need 110,000 + 550 > 100,500: rejected, remaining = the unchanged 10.
    assert order(replay, 3, "a", 1, BUY, None, 11, action=AMEND) == [
        (REJECTED, 3, "a", "X", 1, "insufficient_margin", 10)]
    assert replay.matcher.orders[1].qty == 10
    # Reducing is never checked; an unknown order is the matcher's reject.
    assert order(replay, 4, "a", 1, BUY, None, 2, action=AMEND)[0][0] == AMENDED
    assert order(replay, 5, "a", 99, BUY, None, 2, action=AMEND)[0][5] == "unknown_order"


def test_an_order_id_reused_by_another_account_is_not_the_first_owners_margin():
    # A validated dataset never reuses a `new` id; the replay still must not count b's
    # order as a's. a rests order 1 (margin 100,000) and 2, cancels 1, amends 2 (decided
    # from the bound, so id 1 stays in a's list), then b rests a large order under id 1:
    # a's next order is checked against a's own orders only and fits.
    replay = make({"a": 200_000, "b": 10**9})
    order(replay, 1, "a", 1, BUY, 1_000, 10)
    order(replay, 2, "a", 2, BUY, 1_000, 1)
    order(replay, 3, "a", 1, BUY, None, 0, action=CANCEL)
    assert order(replay, 4, "a", 2, BUY, 1_001, None, action=AMEND)[0][0] == AMENDED
    assert order(replay, 5, "b", 1, BUY, 1_000, 5_000)[0][0] == ACCEPTED
    assert order(replay, 6, "a", 3, BUY, 1_000, 8)[0][0] == ACCEPTED  # 10,010 + 80,000 + 400


def test_withdrawals_are_refused_beyond_balance_or_free_margin():
    events = [(1, RANK_TRANSFERS, 1, "transfer", 1, "a", "withdraw", "USDT", 1_001),
              (2, RANK_TRANSFERS, 2, "transfer", 2, "a", "withdraw", "USDT", 500),
              (3, RANK_TRANSFERS, 3, "transfer", 3, "b", "withdraw", "USDT", 600),
              (4, RANK_TRANSFERS, 4, "transfer", 4, "b", "deposit", "USDT", 7),
              (5, RANK_TRANSFERS, 5, "transfer", 5, "b", "repay", "USDT", 7)]
    # b holds 5 lots at 1,000 (initial margin 50,000) with a wallet of 50,500.
    replay = make({"a": 1_000, "b": 50_500, "c": 0}, positions=[("b", 5, 1_000), ("c", -5, 1_000)],
                  events=events)
    replay.until(None)
    rows = [r for r in replay.out if r[0] == TRANSFER]
    assert [(r[2], r[3], r[6], r[7]) for r in rows] == [
        ("a", "withdraw", "rejected", "insufficient_balance"),
        ("a", "withdraw", "applied", None),
        ("b", "withdraw", "rejected", "insufficient_margin"),
        ("b", "deposit", "applied", None),
        ("b", "repay", "rejected", "not_supported_yet")]
    assert replay.clearing.ledger.balance("a", "USDT") == 500
    assert replay.deposits == {"USDT": 7} and replay.withdrawals == {"USDT": 500}


def test_a_margin_call_row_precedes_the_liquidation_with_the_figures_at_the_trigger():
    # Long 10 at 1,000 (cost 1,000,000), wallet 20,000. Equity at mark m: 20,000 +
    # (m - 1,000) x 1,000; maintenance 4 x m. Liquidated when 20,000 + 1,000 m - 1,000,000
    # <= 4 m: m <= 980,000 / 996 = 983.9...: 983 liquidates, 984 does not.
    events = [mark(1, 984), mark(2, 983), mark(3, 970), mark(4, 1_000)]
    replay = make({"a": 20_000, "b": 10**9}, positions=[("a", 10, 1_000), ("b", -10, 1_000)],
                  events=events)
    replay.until(None)
    calls = [r for r in replay.out if r[0] == MARGIN_CALL]
    assert [(r[1], r[2], r[4], r[5]) for r in calls] == [(2, "a", 20_000 - 17 * 1_000, 3_932)]
    # Taken over at the bankruptcy notional 983 x 10 x 100 - 3,000 = 980,000; the empty
    # book leaves the parcel with the fund (nothing inside the band is not the floor: no
    # ADL), worked again at every later mark.
    assert "a" not in replay.clearing.positions and replay.clearing.ledger.balance("a", "USDT") == 0
    (parcel,) = replay.clearing.parcels
    assert (parcel.qty, parcel.cost, parcel.adl_qty) == (10, 980_000, 0)


def test_premium_funding_and_table_funding_with_the_rounding_residue():
    # Long 7 lots at mark 1,000 (notional 700,000) at rate 1/3 over 1e8: the long pays
    # ceil(700,000 / 3e8) = 1, the short receives 0, rounding gets 1.
    events = [mark(1, 1_000),
              (2, RANK_FUNDING, 1, "funding", "X", Fraction(1, 3), "premium_index"),
              (3, RANK_FUNDING, 2, "funding", "X", Fraction(-20_000), "table")]
    replay = make({"a": 10**6, "b": 10**6}, positions=[("a", 7, 1_000), ("b", -7, 1_000)], events=events)
    replay.until(None)
    rows = [r for r in replay.out if r[0] == "funding"]
    assert [(r[3], r[8], r[9]) for r in rows] == [
        ("a", -1, "premium_index"), ("b", 0, "premium_index"), ("rounding", 1, "premium_index"),
        ("a", 140, "table"), ("b", -140, "table"), ("rounding", 0, "table")]


def test_streams_merge_by_ts_then_rank_then_seq():
    # At ts 5: a deposit (rank 0) funds the order (rank 7) of the same instant.
    events = [(5, RANK_TRANSFERS, 9, "transfer", 9, "a", "deposit", "USDT", 100_500)]
    replay = make({"a": 0}, events=events)
    out = order(replay, 5, "a", 1, BUY, 1_000, 10)
    assert [r[0] for r in out] == [TRANSFER, "ledger", ACCEPTED]


def test_run_tables_load_with_absent_optional_columns(tmp_path):
    from datasets.tables import ACCOUNTS, load_table

    path = tmp_path / "accounts.parquet"
    pl.DataFrame({"account": ["a"], "asset": ["USDT"], "balance": [5]}).write_parquet(path)
    frame = load_table(path, ACCOUNTS, known={"asset": {"USDT"}})
    assert frame.row(0) == ("a", "USDT", 5, None, None)


def test_a_user_left_flat_and_negative_is_made_whole_by_the_fund():
    # a: long 10 at 1,000 (cost 1,000,000), wallet 10,000. A reduce-only market sell into
    # one bid at 980 realises -20,000 and pays a taker fee of 490 (0.05% of 980,000): wallet
    # -10,490 with no position left. The fund pays the deficit (cause `bankruptcy`), so a
    # ends at 0.
    replay = make({"a": 10_000, "b": 10**9, "m": 10**9}, positions=[("a", 10, 1_000), ("b", -10, 1_000)])
    order(replay, 1, "m", 1, BUY, 980, 10)
    order(replay, 2, "a", 2, SELL, None, 10, reduce_only=True)
    assert replay.clearing.ledger.balance("a", "USDT") == 0
    assert replay.clearing.ledger.balance("insurance_fund", "USDT") == -10_490
    (row,) = [r for r in replay.out if r[0] == "insurance"]
    assert row[3:6] == (-10_490, -10_490, "bankruptcy")
    assert replay.clearing.conservation_gap("USDT") == 0


def test_resting_reduce_only_orders_can_never_flip_a_position():
    # a is long 10. Two reduce-only sells of 10: the second is refused, since the first
    # already covers the position (together they would flip it with no margin).
    replay = make({"a": 10**9, "b": 10**9, "m": 10**9}, positions=[("a", 10, 1_000), ("b", -10, 1_000)])
    assert order(replay, 1, "a", 1, SELL, 1_100, 10, reduce_only=True)[0][0] == ACCEPTED
    assert order(replay, 2, "a", 2, SELL, 1_100, 10, reduce_only=True)[0][5] == "reduce_only_would_increase"
    assert order(replay, 3, "a", 1, SELL, 1_200, 10, action=AMEND)[0][0] == AMENDED  # a new price: fine
    assert order(replay, 4, "a", 1, SELL, None, 11, action=AMEND)[0][5] == "reduce_only_would_increase"
    # A plain sell of 4 fills against m's bid: the position shrinks to 6 and the resting
    # reduce-only order of 10 is no longer covered: cancelled, reason `reduce_only`.
    order(replay, 5, "m", 4, BUY, 1_000, 4)
    out = order(replay, 6, "a", 5, SELL, 1_000, 4)
    cancels = [r for r in out if r[0] == "cancelled"]
    assert [(r[4], r[5]) for r in cancels] == [(1, "reduce_only")]
    assert replay.clearing.position("a", "X").qty == 6
