"""CLEARING.md section 5's worked examples through the replay, with the exact integers:
Example 5 (the trigger), 8 (surplus), 9 (shortfall on a thin book), 10 (ADL with the
bitmex rank 7/13) and 13 (a cascade of three liquidations, then ADL of a fourth).

BTCUSDT: tick 0.1, lot 0.001, USDT minor 1e-8, so K = 10,000; 30,000.0 is 300,000 ticks,
1.500 BTC is 1,500 lots, 1 USDT is 100,000,000 minor units.
"""

from __future__ import annotations

from backtest.replay import ADL, MARGIN_CALL, RANK_MARKS, LiquidationRules, Replay
from clearing.margin import MarginTiers
from clearing.settlement import FILL_ROW, FUND, INSURANCE, Clearing, FeeSchedule, SymbolSpec
from matching import Matcher, SymbolRules
from matching.types import BUY, GTC, LIMIT, NEW, STP_CANCEL_TAKER

USDT = 100_000_000
K = 10_000
TIERS = MarginTiers.from_rows([  # CLEARING.md section 3's example tiers, in minor units
    [0, 400_000, 0], [50_000 * USDT, 500_000, 50 * USDT], [250_000 * USDT, 1_000_000, 1_300 * USDT],
    [1_000_000 * USDT, 2_500_000, 16_300 * USDT]], max_leverage=20)
NO_FEES = FeeSchedule(((0, 0),))
RICH = 10**9 * USDT


def setup(balances, positions, fund, *, k=K, tiers=TIERS, execution="sweep", band=5_000_000,
          max_takeover=None, adl_fees=False, fees=NO_FEES):
    clearing = Clearing({"X": SymbolSpec("USDT", k, tiers)}, fees)
    for account, balance in balances.items():
        clearing.ledger.open_balance(account, "USDT", balance)
    clearing.ledger.open_balance(FUND, "USDT", fund)
    for account, qty, entry in positions:
        clearing.load_position(account, "X", qty, entry)
    clearing.check_opening()
    replay = Replay(Matcher({"X": SymbolRules()}), clearing, [],
                    LiquidationRules(execution=execution, band=band, one_unit={"USDT": USDT},
                                     max_takeover=max_takeover, adl_fees=adl_fees))
    for account in sorted(clearing.positions):
        replay.watch.check(account)
    return replay


def bid(replay, ts, oid, price, qty, account="maker"):
    replay.orders(([ts], [NEW], [account], ["X"], [oid], [BUY], [LIMIT], [GTC], [price], [qty],
                   [STP_CANCEL_TAKER], [False]))


def mark(replay, ts, price):
    replay.schedule([(ts, RANK_MARKS, ts, "mark", "X", price)])
    replay.until(ts)


def rows(replay, kind):
    return [r for r in replay.out if r[0] == kind]


def example_5_account():
    # Wallet 3,000 USDT, long 1.500 at 30,000.0; the short side holds a rich wallet.
    return {"A": 3_000 * USDT, "S": RICH, "maker": RICH}, [("A", 1_500, 300_000), ("S", -1_500, 300_000)]


def test_example_5_safe_at_28112_5_liquidated_at_28112_4():
    balances, positions = example_5_account()
    replay = setup(balances, positions, fund=0)
    mark(replay, 1, 281_125)
    assert not rows(replay, MARGIN_CALL)
    mark(replay, 2, 281_124)
    (call,) = rows(replay, MARGIN_CALL)
    # Equity 168.60 USDT, maintenance 168.6744 USDT.
    assert (call[2], call[4], call[5]) == ("A", 16_860_000_000, 16_867_440_000)


def test_example_8_surplus_of_75_usdt_and_the_account_ends_at_zero():
    balances, positions = example_5_account()
    replay = setup(balances, positions, fund=0)
    bid(replay, 1, 1, 280_500, 1_500)  # 1.500 at 28,050.0
    mark(replay, 2, 281_124)
    (takeover,) = [r for r in rows(replay, FILL_ROW) if r[12] == "takeover"]
    assert takeover[13] == 42_000 * USDT and takeover[3] == 280_000  # B and its display price
    parcel = replay.clearing.parcels[0]
    assert parcel.fund_result == 75 * USDT and parcel.qty == 0
    assert replay.clearing.ledger.balance(FUND, "USDT") == 75 * USDT
    assert replay.clearing.ledger.balance("A", "USDT") == 0 and "A" not in replay.clearing.positions
    # Liquidation fills carry no fee for the fund and kind `liquidation`.
    (fill,) = [r for r in replay.out if r[0] == "fill"]
    assert fill[8] == FUND and fill[12] == 0 and fill[14] == "liquidation"


def test_example_9_shortfall_of_150_usdt_leaves_850():
    balances, positions = example_5_account()
    replay = setup(balances, positions, fund=1_000 * USDT)
    bid(replay, 1, 1, 279_500, 1_000)  # 1.000 at 27,950.0
    bid(replay, 2, 2, 278_000, 500)  # 0.500 at 27,800.0
    mark(replay, 3, 281_124)
    assert replay.clearing.parcels[0].fund_result == -150 * USDT
    assert replay.clearing.ledger.balance(FUND, "USDT") == 850 * USDT
    assert replay.clearing.ledger.balance("A", "USDT") == 0
    # One insurance_fund row per fill: 1.000 at 27,950 costs 50, 0.500 at 27,800 costs 100.
    assert [r[3:7] for r in rows(replay, INSURANCE)] == [
        (-50 * USDT, 950 * USDT, "shortfall", 1), (-100 * USDT, 850 * USDT, "shortfall", 1)]


def test_example_10_floor_sends_half_a_btc_to_adl_at_rank_7_13():
    balances = {"A": 3_000 * USDT, "S1": 2_000 * USDT, "S2": RICH, "maker": RICH}
    positions = [("A", 1_500, 300_000), ("S1", -800, 320_000), ("S2", -700, 285_000)]
    replay = setup(balances, positions, fund=100 * USDT)
    bid(replay, 1, 1, 279_000, 1_000)  # 1.000 at 27,900.0
    bid(replay, 2, 2, 270_000, 5_000)  # 5.000 at 27,000.0
    mark(replay, 3, 280_000)  # the gap: equity 0 <= 168
    assert replay.clearing.ledger.balance(FUND, "USDT") == 0  # at its floor
    (adl,) = rows(replay, ADL)
    assert adl[2:] == (1, "A", "X", "S1", 500, 14_000 * USDT, 280_000, "7/13", 7 / 13)
    s1 = replay.clearing.positions["S1"]["X"]
    assert (s1.qty, s1.cost) == (-300, 9_600 * USDT)
    realised = [r[4] for r in rows(replay, "ledger") if r[2] == "S1" and r[5] == "realised_pnl"]
    assert realised == [2_000 * USDT]
    parcel = replay.clearing.parcels[0]
    assert (parcel.qty, parcel.adl_qty, parcel.fund_result) == (0, 500, -100 * USDT)
    assert [r[12] for r in rows(replay, FILL_ROW)] == ["takeover", "adl"]


def test_example_13_cascade_then_adl():
    # Tick 0.1, lot 1, minor unit 0.1: K = 1; MMR 0.5%, amount 0.
    tiers = MarginTiers.from_rows([[0, 500_000, 0]], max_leverage=20)
    balances = {a: 600 for a in "ABCD"} | {"E": 1_000, "F": 10**9, "maker": 10**9}
    positions = [(a, 10, 1_000) for a in "ABCD"] + [("E", -10, 1_000), ("F", -30, 950)]
    replay = setup(balances, positions, fund=0, k=1, tiers=tiers)
    for oid, price, qty in ((1, 943, 10), (2, 941, 10), (3, 939, 10), (4, 900, 1_000)):
        bid(replay, oid, oid, price, qty)
    mark(replay, 10, 945)
    assert not rows(replay, MARGIN_CALL)  # equity 50 > 48
    mark(replay, 11, 944)
    assert [r[2] for r in rows(replay, MARGIN_CALL)] == ["A", "B", "C", "D"]
    results = [(p.account, p.bankruptcy_notional, p.fund_result, p.adl_qty) for p in replay.clearing.parcels]
    assert results == [("A", 9_400, 30, 0), ("B", 9_400, 10, 0), ("C", 9_400, -10, 0), ("D", 9_400, 0, 10)]
    assert replay.clearing.ledger.balance(FUND, "USDT") == 30
    (adl,) = rows(replay, ADL)
    assert adl[5:9] == ("E", 10, 9_400, 940)
    assert "E" not in replay.clearing.positions
    assert replay.clearing.ledger.balance("E", "USDT") == 1_600  # realised +600
    for account in "ABCD":
        assert replay.clearing.ledger.balance(account, "USDT") == 0


def run_mode(execution):
    """Example 5's account on a thin book: 0.500 at 28,050.0 (better than bankruptcy),
    0.500 at 27,900.0, 5.000 at 26,000.0 (outside the 5% band around 28,112.4); the fund
    holds 20 USDT, floor 0; S holds the only short (the ADL counterparty)."""
    balances, positions = example_5_account()
    replay = setup(balances, positions, fund=20 * USDT, execution=execution)
    bid(replay, 1, 1, 280_500, 500)
    bid(replay, 2, 2, 279_000, 500)
    bid(replay, 3, 3, 260_000, 5_000)
    mark(replay, 4, 281_124)
    adl_qty = sum(r[6] for r in rows(replay, ADL))
    position = replay.clearing.position("A", "X")
    return replay.clearing.ledger.balance(FUND, "USDT"), adl_qty, None if position is None else position.qty


def test_the_three_execution_modes_give_different_hand_computed_outcomes():
    # ioc_at_bankruptcy: an IOC at 28,000.0 takes only the 0.500 at 28,050.0 (+25 USDT);
    # the other 1.000 goes to ADL at once.
    assert run_mode("ioc_at_bankruptcy") == (45 * USDT, 1_000, None)
    # sweep: the band holds 1.000; after +25 each lot at 27,900.0 costs 0.1 USDT, so the
    # fund (45) can pay for 450 of them: 950 lots fill, the fund ends at its floor, and the
    # floor sends the other 550 to ADL.
    assert run_mode("sweep") == (0, 550, None)
    # partial: the account's own order, limited at its bankruptcy price 28,000.0, sells
    # 0.500 at 28,050.0; it is then safe (equity 137.4 > maintenance 112.4496): no fund
    # result, no ADL, and it keeps 1.000.
    assert run_mode("partial") == (20 * USDT, 0, 1_000)


def test_the_takeover_cap_sends_what_the_fund_may_not_hold_straight_to_adl():
    # Fund 1,000 USDT, max_takeover 50%: it may hold parcels worth 500 USDT at bankruptcy
    # notional. Example 5's takeover (42,000 USDT for 1,500 lots, 28 USDT a lot) keeps the
    # largest k with ceil(42,000 x k / 1,500) <= 500: 17 lots (476 USDT; 18 would be 504).
    # The other 1,483 go to ADL at once (S, the only short); the 17 are swept at 28,050.0.
    balances, positions = example_5_account()
    replay = setup(balances, positions, fund=1_000 * USDT, max_takeover=50_000_000)
    bid(replay, 1, 1, 280_500, 1_500)
    mark(replay, 2, 281_124)
    (adl,) = rows(replay, ADL)
    assert (adl[5], adl[6], adl[7]) == ("S", 1_483, 41_524 * USDT)  # 42,000 - 476
    parcel = replay.clearing.parcels[0]
    assert (parcel.qty, parcel.filled_qty, parcel.adl_qty) == (0, 17, 1_483)
    assert parcel.fund_result == 85_000_000  # 17 lots x 0.05 USDT better than bankruptcy


def test_adl_fees_charge_the_deleveraged_account_its_taker_fee():
    # Example 10 with adl.fees on and a 0.05% taker fee: S1 pays 7 USDT on 14,000.
    balances = {"A": 3_000 * USDT, "S1": 2_000 * USDT, "S2": RICH, "maker": RICH}
    positions = [("A", 1_500, 300_000), ("S1", -800, 320_000), ("S2", -700, 285_000)]
    replay = setup(balances, positions, fund=100 * USDT, adl_fees=True, fees=FeeSchedule(((0, 50_000),)))
    bid(replay, 1, 1, 279_000, 1_000)
    bid(replay, 2, 2, 270_000, 5_000)
    mark(replay, 3, 280_000)
    (adl_fill,) = [r for r in rows(replay, FILL_ROW) if r[12] == "adl"]
    assert adl_fill[9:12] == ("S1", 0, 7 * USDT)
    assert replay.clearing.ledger.balance("S1", "USDT") == (2_000 + 2_000 - 7) * USDT


# Regressions from the review of the liquidation code (K = 1, MMR 0.5%, no fees).
T_SMALL = MarginTiers.from_rows([[0, 500_000, 0]], max_leverage=20)


def small(balances, positions, fund, **rules):
    replay = setup(balances, [(a, q, e) for a, q, e in positions], fund, k=1, tiers=T_SMALL, **rules)
    return replay


def test_the_sweep_is_sized_fill_by_fill_so_the_floor_holds_to_the_minor_unit():
    # A: long 7 at 110 (cost 770), wallet 67: B = 703 at mark 101 (100.43 a lot). Seven
    # 1-lot bids at 100, each its own fill removing cost from what is left: ceil(703 / 7) =
    # 101, ceil(602 / 6) = 101, ceil(501 / 5) = 101, ... (one removal of 3 lots would be
    # ceil(2109 / 7) = 302, not 303). The fund (2, floor 0) pays 1 per fill: 2 fill, the
    # third would take it to -1, so the other 5 lots go to ADL.
    balances = {"A": 67, "S": 10**9} | {f"m{i}": 10**9 for i in range(7)}
    replay = small(balances, [("A", 7, 110), ("S", -7, 110)], fund=2)
    for i in range(7):
        bid(replay, 1, i + 1, 100, 1, account=f"m{i}")
    mark(replay, 2, 101)
    parcel = replay.clearing.parcels[0]
    assert replay.clearing.ledger.balance(FUND, "USDT") >= 0
    assert (parcel.filled_qty, parcel.removed_cost, parcel.adl_qty) == (2, 202, 5)
    assert replay.clearing.ledger.balance(FUND, "USDT") == 0


def test_a_takeover_deep_below_zero_never_gives_a_short_a_negative_bankruptcy_notional():
    # Wallet 100, long X 10 at 100, short Y 1 at 100; X's mark gaps to 1: equity -890.
    # Y's share would be -809 < -N = -100: held at -100 (B = 0), the excess -709 goes to X
    # (B = 10 + 790 = 800). The account ends at 0.
    clearing = Clearing({s: SymbolSpec("USDT", 1, T_SMALL) for s in ("X", "Y")}, NO_FEES)
    for account, balance in {"A": 100, "S": 10**6}.items():
        clearing.ledger.open_balance(account, "USDT", balance)
    for account, symbol, qty in (("A", "X", 10), ("S", "X", -10), ("A", "Y", -1), ("S", "Y", 1)):
        clearing.load_position(account, symbol, qty, 100)
    clearing.marks.update({"X": 1, "Y": 100})
    parcels = clearing.takeover(1, "A", "USDT", 1, "sweep")
    assert [(p.symbol, p.bankruptcy_notional) for p in parcels] == [("X", 800), ("Y", 0)]
    assert clearing.ledger.balance("A", "USDT") == 0
    assert clearing.conservation_gap("USDT") == 0


def test_crossing_the_funds_own_parcels_respects_its_floor():
    # L1 long 10 at 110 and S1 short 10 at 90, wallets 60, mark 104, empty book, IOC mode:
    # both are taken over (B 1,040 and 960); crossing them would cost the fund 80: refused
    # at floor 0, both parcels stay open.
    replay = small({"L1": 60, "S1": 60}, [("L1", 10, 110), ("S1", -10, 90)], fund=0,
                   execution="ioc_at_bankruptcy")
    mark(replay, 1, 104)
    assert replay.clearing.ledger.balance(FUND, "USDT") == 0
    assert [abs(p.qty) for p in replay.clearing.parcels] == [10, 10]


def test_a_resting_reduce_only_order_goes_when_adl_closes_the_position():
    replay = small({"A": 67, "S": 10**9, "maker": 10**9}, [("A", 7, 110), ("S", -7, 110)], fund=0,
                   execution="ioc_at_bankruptcy")
    replay.orders(([1], [NEW], ["S"], ["X"], [1], [BUY], [LIMIT], [GTC], [50], [7],
                   [STP_CANCEL_TAKER], [True]))
    mark(replay, 2, 101)  # A liquidated; the empty book sends all 7 lots to ADL against S
    assert replay.clearing.position("S", "X") is None
    assert 1 not in replay.matcher.orders
    assert [(r[4], r[5]) for r in replay.out if r[0] == "cancelled"] == [(1, "reduce_only")]
