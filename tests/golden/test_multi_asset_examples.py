"""CLEARING.md section 6 (multi-asset mode) with its exact integers: Example 11 (tiered
collateral: 350 ETH, the 500-ETH cap, MX, a negative USDT balance beside the ETH),
Example 12 (compounding interest on debt), repayment order and conversion."""

from __future__ import annotations

import pytest

from clearing.collateral import Collateral, CollateralTiers, collateral_value, effective_margin
from clearing.settlement import CONVERSION, INTEREST, REPAYMENT, Clearing, FeeSchedule, SymbolSpec

UNIT = 10**8  # minor units per whole unit of every asset here (minor unit 0.00000001)
USDT = 10**8  # 1 USDT in USDT minor units


def tiers(*rows: tuple[int, int]) -> CollateralTiers:
    """Tiers from (upper bound in whole units, ratio over 1e8) rows."""
    return CollateralTiers(tuple(b * UNIT for b, _ in rows), tuple(r for _, r in rows))


ETH = tiers((100, 90_000_000), (200, 80_000_000), (300, 70_000_000), (400, 60_000_000))
MX = tiers((10_000, 95_000_000), (20_000, 80_000_000), (30_000, 70_000_000))
COLLATERAL = Collateral({"USDT": UNIT, "USDC": UNIT, "ETH": UNIT, "MX": UNIT},
                        {"USDT": None, "USDC": None, "ETH": ETH, "MX": MX})
PRICES = {"USDT": USDT, "ETH": 4_000 * USDT, "MX": 3 * USDT}


@pytest.mark.parametrize("balances, expected_usdt", [
    pytest.param({"ETH": 350 * UNIT}, 1_080_000, id="350 ETH at 4,000: 270 x 4,000"),
    pytest.param({"ETH": 500 * UNIT}, 1_200_000, id="500 ETH: the last 100 count nothing"),
    pytest.param({"MX": 25_000 * UNIT}, 63_000, id="25,000 MX at 3: 21,000 x 3"),
    pytest.param({"ETH": 350 * UNIT, "USDT": -10_000 * USDT}, 1_070_000,
                 id="a USDT debt of 10,000 beside the 350 ETH counts in full"),
])
def test_example_11_effective_margin(balances, expected_usdt):
    assert effective_margin(balances, PRICES, COLLATERAL) == expected_usdt * USDT


def test_collateral_rounds_down_and_a_liability_rounds_up():
    # 1 minor unit of ETH at 4,000 USDT, 90%: 0.000036 USDT = 3,600 minor exactly; a
    # price of 4,000.00000001 makes it 3,600.0000009: floor 3,600. A debt of 1 minor unit
    # of ETH at that price: -4,000.00000001 minor: -ceil = -4,001.
    price = 4_000 * USDT + 1
    assert collateral_value(1, price, UNIT, ETH) == 3_600
    assert collateral_value(-1, price, UNIT, ETH) == -4_001


def multi_asset_clearing() -> Clearing:
    c = Clearing({"BTCUSDT": SymbolSpec("USDT", 10_000)}, FeeSchedule(((0, 0),)))
    c.collateral = COLLATERAL
    c.asset_prices.update({"ETH": 4_000 * USDT, "MX": 3 * USDT})
    c.multi.add("trader")
    return c


def test_example_12_interest_compounds_hourly_and_rounds_up():
    c = multi_asset_clearing()
    c.ledger.open_balance("trader", "USDT", -10_000 * USDT)
    c.ledger.open_balance("trader", "ETH", 350 * UNIT)
    charges = []
    for hour in (1, 2, 3):
        assert c.charge_interest(hour, {"USDT": 500}, f"interest:{hour}") == ["trader"]
        charges.append([r for r in c.out if r[0] == INTEREST and r[1] == hour][0][6])
    assert charges == [5_000_000, 5_000_025, 5_000_051]
    assert -c.ledger.balance("trader", "USDT") == 1_000_015_000_076
    assert c.ledger.balance(INTEREST, "USDT") == 15_000_076
    assert c.accrued[("trader", "USDT")] == 15_000_076
    assert c.ledger.balance("trader", "ETH") == 350 * UNIT  # collateral is not touched


def test_a_repayment_clears_accrued_interest_first_then_principal():
    c = multi_asset_clearing()
    c.ledger.open_balance("trader", "USDT", -10_000 * USDT)
    c.charge_interest(1, {"USDT": 500}, "interest:1")  # accrued 5,000,000 (0.05 USDT)
    c.record_repayment(2, "trader", "USDT", 10_000 * USDT + 5_000_000, 3_000_000, "deposit", None, None)
    c.record_repayment(3, "trader", "USDT", 10_000 * USDT + 2_000_000, 5 * USDT, "deposit", None, None)
    rows = [r for r in c.out if r[0] == REPAYMENT]
    assert [(r[4], r[5], r[6]) for r in rows] == [(3_000_000, 3_000_000, 0),
                                                  (5 * USDT, 2_000_000, 5 * USDT - 2_000_000)]
    assert ("trader", "USDT") not in c.accrued


def test_a_conversion_is_two_ledger_pairs_and_conserves_each_asset():
    c = multi_asset_clearing()
    c.ledger.open_balance("trader", "ETH", 2 * UNIT)
    # 0.5 ETH at 4,000 less a 0.1% spread: 1,998 USDT exactly.
    paid = c.convert(1, "trader", "ETH", UNIT // 2, "USDT", 100_000, "transfer:1")
    assert paid == 1_998 * USDT
    assert c.ledger.balance("trader", "ETH") == UNIT + UNIT // 2
    assert c.ledger.balance(CONVERSION, "ETH") == UNIT // 2
    assert c.ledger.balance(CONVERSION, "USDT") == -1_998 * USDT
    for asset in ("ETH", "USDT"):
        assert c.conservation_gap(asset) == 0


def test_a_multi_asset_pool_counts_every_balance_at_its_collateral_value():
    c = multi_asset_clearing()
    c.symbols["BTCUSDT"] = SymbolSpec("USDT", 10_000)
    c.ledger.open_balance("trader", "ETH", 350 * UNIT)
    c.ledger.open_balance("trader", "USDT", -10_000 * USDT)
    c.ledger.open_balance("other", "USDT", 10**15)
    c.load_position("trader", "BTCUSDT", 1_000, 300_000)  # 1 BTC long at 30,000
    c.load_position("other", "BTCUSDT", -1_000, 300_000)
    c.marks["BTCUSDT"] = 290_000  # 1,000 USDT down
    assert c.pools("trader") == ["USDT"]
    assert c.pool("trader", "USDT").equity == (1_070_000 - 1_000) * USDT
    c.asset_prices["ETH"] = 2_000 * USDT  # the collateral halves: 540,000 - 10,000 - 1,000
    assert c.pool("trader", "USDT").equity == 529_000 * USDT


def test_a_multi_asset_liquidation_passes_collateral_and_debt_to_the_fund_which_converts_it():
    # k = 1, maintenance 0.5%. A (multi-asset): 1 ETH (100 minor units per ETH) at 100 USDT,
    # 80% -> 80 USDT of collateral, USDT -50 (debt), long 10 at 100. At mark 97: equity
    # 80 - 50 - 30 = 0 <= maintenance 5 (4.85 rounded up): liquidated. The takeover at
    # B = 970 realises -30 (USDT -80), so the effective margin is exactly 0. The USDT -80
    # and the 1 ETH pass to the fund, which converts the ETH at 100 (no spread): +100 USDT,
    # net +20 (the haircut). The parcel sells to the resting bid at 97 = B: no surplus.
    from backtest.replay import RANK_MARKS, LiquidationRules, Replay
    from clearing.margin import MarginTiers
    from clearing.settlement import FUND
    from matching import Matcher, SymbolRules
    from matching.types import BUY, GTC, LIMIT, NEW, STP_CANCEL_TAKER

    c = Clearing({"X": SymbolSpec("USDT", 1, MarginTiers.from_rows([[0, 500_000, 0]], max_leverage=20))},
                 FeeSchedule(((0, 0),)))
    c.collateral = Collateral({"USDT": 1, "ETH": 100}, {"USDT": None, "ETH": CollateralTiers((1_000,), (80_000_000,))})
    c.asset_prices["ETH"] = 100
    c.multi.add("A")
    for account, asset, balance in (("A", "USDT", -50), ("A", "ETH", 100), ("S", "USDT", 10**6),
                                    ("maker", "USDT", 10**6), (FUND, "USDT", 1_000)):
        c.ledger.open_balance(account, asset, balance)
    c.load_position("A", "X", 10, 100)
    c.load_position("S", "X", -10, 100)
    replay = Replay(Matcher({"X": SymbolRules()}), c, [], LiquidationRules(execution="sweep", band=5_000_000,
                                                                          one_unit={"USDT": 1}))
    for account in sorted(c.positions):
        replay.watch.check(account)
    replay.orders(([1], [NEW], ["maker"], ["X"], [1], [BUY], [LIMIT], [GTC], [97], [10], [STP_CANCEL_TAKER], [False]))
    replay.schedule([(2, RANK_MARKS, 2, "mark", "X", 97)])
    replay.until(2)
    assert (c.ledger.balance("A", "USDT"), c.ledger.balance("A", "ETH")) == (0, 0)
    assert c.positions.get("A") is None
    assert c.ledger.balance(FUND, "USDT") == 1_020 and c.ledger.balance(FUND, "ETH") == 0
    assert (c.ledger.balance(CONVERSION, "ETH"), c.ledger.balance(CONVERSION, "USDT")) == (100, -100)
    takeover = [r[3] for r in replay.out if r[0] == "insurance" and r[5] == "collateral_takeover"]
    assert takeover == [100, -80]  # assets in name order: the ETH converted, then the USDT debt
    assert [p.exit_notional for p in c.parcels] == [970]
    for asset in ("USDT", "ETH"):
        assert c.conservation_gap(asset) == 0


def test_set_mode_is_refused_while_the_account_holds_a_position_an_order_or_debt():
    from backtest.replay import RANK_TRANSFERS, LiquidationRules, Replay
    from matching import Matcher, SymbolRules
    from matching.types import BUY, GTC, LIMIT, NEW, STP_CANCEL_TAKER

    from clearing.margin import MarginTiers

    c = Clearing({"X": SymbolSpec("USDT", 1, MarginTiers.from_rows([[0, 500_000, 0]], max_leverage=20))},
                 FeeSchedule(((0, 0),)))
    c.collateral = Collateral({"USDT": 1}, {"USDT": None})
    for account in ("A", "B"):
        c.ledger.open_balance(account, "USDT", 1_000)
    c.load_position("B", "X", 1, 100)
    c.load_position("A", "X", -1, 100)
    replay = Replay(Matcher({"X": SymbolRules()}), c, [], LiquidationRules(one_unit={"USDT": 1}))

    def switch(ts, account, amount):
        replay.schedule([(ts, RANK_TRANSFERS, ts, "transfer", ts, account, "set_mode", "USDT", amount, None)])
        replay.until(ts)
        return [r for r in replay.out if r[0] == "transfer"][-1][6:]

    assert switch(1, "A", 1) == ("rejected", "mode_switch_blocked")  # a position
    c.ledger.open_balance("C", "USDT", 500)
    replay.orders(([2], [NEW], ["C"], ["X"], [1], [BUY], [LIMIT], [GTC], [90], [1], [STP_CANCEL_TAKER], [False]))
    assert switch(3, "C", 1) == ("rejected", "mode_switch_blocked")  # an open order
    c.ledger.open_balance("D", "USDT", 0)
    assert switch(4, "D", 1) == ("applied", None) and "D" in c.multi
    c.ledger.balances[("D", "USDT")] = -5  # debt, as fees or losses would leave it
    assert switch(5, "D", 0) == ("rejected", "mode_switch_blocked")
    c.ledger.balances[("D", "USDT")] = 0
    assert switch(6, "D", 0) == ("applied", None) and "D" not in c.multi
    assert switch(7, "D", 2) == ("rejected", "not_supported_yet")
