"""A multi-asset pool holding a USDT-M and a USDC-M position (CLEARING.md sections 5.2 and
6), with exact integers worked by hand in the comments.

Units: every asset has minor unit 1e-8 (1 whole unit = 1e8 minor units). USDC is priced
at 0.9999 USDT (99,990,000 USDT minor units per USDC); ETH at 4,000 USDT, 90% up to 100.
BTCUSDT: tick 0.1, lot 0.001, K = 10,000 USDT minor; maintenance 0.4%, 20x.
ETHUSDC: tick 0.01, lot 0.001, K = 1,000 USDC minor; maintenance 0.5%, 10x.

Account A (multi-asset): 10 ETH, 1,000 USDT, 500 USDC; long 1.000 BTCUSDT at 30,000.0
(cost 3,000,000,000,000 USDT minor) and short 10.001 ETHUSDC at 4,000.00 (cost 400,000 x
10,001 x 1,000 = 4,000,400,000,000 USDC minor). B (single-asset) holds the other sides.
Marks: BTCUSDT 29,500.0, ETHUSDC 4,050.07.
"""

from __future__ import annotations

from backtest.replay import (RANK_ASSET_PRICES, RANK_INTEREST, RANK_MARKS, RANK_TRANSFERS, LiquidationRules,
                             Replay)
from clearing.collateral import Collateral, CollateralTiers
from clearing.margin import MarginTiers
from clearing.settlement import CONVERSION, FUND, INTEREST, Clearing, FeeSchedule, SymbolSpec
from matching import Matcher, SymbolRules
from matching.types import BUY, GTC, IOC, LIMIT, NEW, SELL, STP_CANCEL_TAKER

UNIT = 10**8
USDC_PRICE = 99_990_000  # 0.9999 USDT per USDC
SYMBOLS = {
    "BTCUSDT": SymbolSpec("USDT", 10_000, MarginTiers.from_rows([[0, 400_000, 0]], max_leverage=20)),
    "ETHUSDC": SymbolSpec("USDC", 1_000, MarginTiers.from_rows([[0, 500_000, 0]], max_leverage=10)),
}
COLLATERAL = Collateral({"ETH": UNIT, "USDC": UNIT, "USDT": UNIT},
                        {"ETH": CollateralTiers((100 * UNIT,), (90_000_000,)), "USDC": None, "USDT": None})


def pool(fees: tuple[int, int] = (0, 0)) -> Clearing:
    c = Clearing(dict(SYMBOLS), FeeSchedule((fees,)))
    c.collateral = COLLATERAL
    c.asset_prices.update({"ETH": 4_000 * UNIT, "USDC": USDC_PRICE})
    c.multi.add("A")
    for account, asset, balance in (("A", "ETH", 10 * UNIT), ("A", "USDT", 1_000 * UNIT),
                                    ("A", "USDC", 500 * UNIT), ("B", "USDT", 10**15), ("B", "USDC", 10**15),
                                    (FUND, "USDT", 1_000 * UNIT)):
        c.ledger.open_balance(account, asset, balance)
    c.load_position("A", "BTCUSDT", 1_000, 300_000)
    c.load_position("B", "BTCUSDT", -1_000, 300_000)
    c.load_position("A", "ETHUSDC", -10_001, 400_000)
    c.load_position("B", "ETHUSDC", 10_001, 400_000)
    c.marks.update({"BTCUSDT": 295_000, "ETHUSDC": 405_007})
    return c


def replay_of(c: Clearing, **rules) -> Replay:
    replay = Replay(Matcher({s: SymbolRules() for s in SYMBOLS}), c, [],
                    LiquidationRules(one_unit={a: UNIT for a in COLLATERAL.per_unit}, **rules),
                    interest_rates={"USDT": 500, "USDC": 1_234}, conversion_spread=100_000)
    for account in sorted(c.positions):
        replay.watch.check(account)
    return replay


def test_the_pool_counts_usdc_pnl_and_margin_at_the_usdc_price():
    c = pool()
    # Effective margin: 10 ETH x 90% x 4,000 = 36,000 USDT; 1,000 USDT; 500 USDC x 0.9999 =
    # 499.95 USDT: 3,600,000,000,000 + 100,000,000,000 + 49,995,000,000.
    assert c.effective_margin("A") == 3_749_995_000_000
    # BTCUSDT at 29,500.0: notional 2,950,000,000,000, PnL -50,000,000,000, maintenance
    # 0.4% = 11,800,000,000, initial / 20 = 147,500,000,000 (all USDT).
    # ETHUSDC at 4,050.07: notional 10,001 x 405,007 x 1,000 = 4,050,475,007,000 USDC minor,
    # PnL 4,000,400,000,000 - 4,050,475,007,000 = -50,075,007,000 USDC, maintenance 0.5% =
    # 20,252,375,035, initial / 10 = 405,047,500,700. At 0.9999, once each:
    #   PnL -50,069,999,499.3 -> rounded down -50,069,999,500 (a loss counts in full),
    #   maintenance 20,250,349,797.4965 -> up 20,250,349,798,
    #   initial 405,006,995,949.93 -> up 405,006,995,950.
    figures = c.pool("A", "USDT")
    assert figures.equity == 3_749_995_000_000 - 50_000_000_000 - 50_069_999_500 == 3_649_925_000_500
    assert figures.maintenance == 11_800_000_000 + 20_250_349_798 == 32_050_349_798
    assert figures.initial == 147_500_000_000 + 405_006_995_950 == 552_506_995_950
    assert c.pools("A") == ["USDT"]
    # B is single-asset: one pool per settlement asset, nothing converted.
    assert c.pools("B") == ["USDC", "USDT"]
    assert c.pool("B", "USDC").equity == 10**15 + 50_075_007_000


def test_a_stablecoin_without_a_price_counts_at_par():
    c = pool()
    del c.asset_prices["USDC"]
    # 500 USDC at 1: 50,000,000,000; the ETHUSDC PnL -50,075,007,000 one for one.
    assert c.effective_margin("A") == 3_600_000_000_000 + 100_000_000_000 + 50_000_000_000
    assert c.pool("A", "USDT").equity == 3_750_000_000_000 - 50_000_000_000 - 50_075_007_000


def test_a_usdc_m_order_is_margined_at_the_usdc_price_and_other_kinds_are_refused():
    # Small numbers (K = 1, 100 minor units per whole unit). A holds 1,000 USDT minor; USDC
    # is at 0.98 (98 per 100); ETHUSDC maintenance 0.5%, 10x; taker fee 1%. A buy of q at
    # 100 (the mark) needs initial ceil(100q / 10) = 10q USDC and a fee of q USDC, in USDT
    # ceil(9.8q) and ceil(0.98q): q = 92 needs 902 + 91 = 993 <= 1,000 (passes); q = 93
    # needs 912 + 92 = 1,004 (refused). At par, 11q <= 1,000 would stop at 90.
    tiers = MarginTiers.from_rows([[0, 500_000, 0]], max_leverage=10)
    c = Clearing({"ETHUSDC": SymbolSpec("USDC", 1, tiers),
                  "BTCUSD": SymbolSpec("BTC", 1, tiers, kind="inverse_perpetual"),
                  "ETHBTC": SymbolSpec("BTC", 1, tiers)},
                 FeeSchedule(((0, 1_000_000),)))
    c.collateral = Collateral({"USDT": 100, "USDC": 100, "BTC": 100},
                              {"USDT": None, "USDC": None, "BTC": CollateralTiers((100,), (90_000_000,))})
    c.asset_prices.update({"USDC": 98, "BTC": 100})
    c.multi.add("A")
    c.ledger.open_balance("A", "USDT", 1_000)
    c.marks.update({"ETHUSDC": 100, "BTCUSD": 100, "ETHBTC": 100})
    replay = Replay(Matcher({s: SymbolRules() for s in c.symbols}), c, [], LiquidationRules())
    for oid, (symbol, qty) in enumerate((("ETHUSDC", 93), ("ETHUSDC", 92), ("BTCUSD", 1), ("ETHBTC", 1)), start=1):
        replay.orders(([oid], [NEW], ["A"], [symbol], [oid], [BUY], [LIMIT], [GTC], [100], [qty],
                       [STP_CANCEL_TAKER], [False]))
    assert [(r[0], r[4], r[5]) for r in replay.out] == [
        ("rejected", 1, "insufficient_margin"), ("accepted", 2, None),
        ("rejected", 3, "multi_asset_instrument"),  # coin-margined
        ("rejected", 4, "multi_asset_instrument"),  # linear, but settling in a non-stable asset
    ]
    # The resting order's margin counts in USDT too: ceil(920 x 0.98) = 902 of the 1,000 are
    # in use, so a withdrawal of 99 is refused (1,000 - 99 < 902), and a second buy of q
    # needs ceil(9.8q) + ceil(0.98q) <= 98: q = 10 needs 98 + 10 (refused), q = 9 needs 89 + 9.
    replay.schedule([(5, RANK_TRANSFERS, 1, "transfer", 1, "A", "withdraw", "USDT", 99, None)])
    replay.until(5)
    assert [r[6:] for r in replay.out if r[0] == "transfer"] == [("rejected", "insufficient_margin")]
    for oid, qty in ((6, 10), (7, 9)):
        replay.orders(([oid], [NEW], ["A"], ["ETHUSDC"], [oid], [BUY], [LIMIT], [GTC], [100], [qty],
                       [STP_CANCEL_TAKER], [False]))
    assert [(r[0], r[4], r[5]) for r in replay.out[-2:]] == [("rejected", 6, "insufficient_margin"),
                                                            ("accepted", 7, None)]


def test_usdc_m_pnl_fees_interest_and_repayment_post_in_usdc():
    c = pool(fees=(20_000, 50_000))  # maker 0.02%, taker 0.05%
    replay = replay_of(c)
    # A buys back 5.000 ETHUSDC at 4,100.00 from B: notional 410,000 x 5,000 x 1,000 =
    # 2,050,000,000,000 USDC minor. A's short removes floor(4,000,400,000,000 x 5,000 /
    # 10,001) = 2,000,000,000,000 (400,000,000 a lot, exact): realised -50,000,000,000 USDC.
    # Taker fee 0.05%: 1,025,000,000 USDC. USDC 50,000,000,000 - 50,000,000,000 -
    # 1,025,000,000 = -1,025,000,000: a USDC debt beside the ETH, not a rejection.
    replay.orders(([1, 2], [NEW, NEW], ["B", "A"], ["ETHUSDC"] * 2, [1, 2], [SELL, BUY], [LIMIT, LIMIT],
                   [GTC, IOC], [410_000, 410_000], [5_000, 5_000], [STP_CANCEL_TAKER] * 2, [False, False]))
    mine = [r[3:6] for r in replay.out if r[0] == "ledger" and r[2] == "A"]
    assert mine == [("USDC", -50_000_000_000, "realised_pnl"), ("USDC", -1_025_000_000, "fee")]
    assert c.ledger.balance("A", "USDC") == -1_025_000_000
    assert c.ledger.balance("A", "USDT") == 1_000 * UNIT  # untouched
    # One interest time at USDC's rate 1,234 (over 1e8): 1,025,000,000 x 1,234 / 1e8 =
    # 12,648.5 -> 12,649 USDC, paid to `interest` in USDC. (No USDT debt: no USDT interest.)
    replay.schedule([(3, RANK_INTEREST, 1, "interest")])
    replay.until(3)
    assert [r[2:] for r in replay.out if r[0] == INTEREST] == [("A", "USDC", 1_025_000_000, 1_234, 12_649)]
    assert c.ledger.balance(INTEREST, "USDC") == 12_649
    # Deposit 5 USDC: interest 12,649 first, principal 499,987,351; the debt is
    # 1,025,012,649 - 500,000,000 = 525,012,649. Then repay it all with ETH at 4,000 USDT
    # less 0.1%, into USDC at 0.9999: one ETH minor pays 4,000 x 0.999 / 0.9999 =
    # 3,996.3996... USDC minor, so ceil(525,012,649 / 3,996.3996...) = 131,372 ETH minor
    # (exact quotient 131,371.408...), which pay floor(131,372 x 3,996 / 0.9999) =
    # 525,015,013 USDC minor; the 2,364 beyond the debt stay with A.
    replay.schedule([(4, RANK_TRANSFERS, 1, "transfer", 1, "A", "deposit", "USDC", 5 * UNIT, None),
                     (5, RANK_TRANSFERS, 2, "transfer", 2, "A", "repay", "USDC", 10**15, "ETH")])
    replay.until(5)
    assert [r[4:] for r in replay.out if r[0] == "repayment"] == [
        (500_000_000, 12_649, 499_987_351, "deposit", None, None),
        (525_012_649, 0, 525_012_649, "repay", "ETH", 131_372),
    ]
    assert c.ledger.balance("A", "USDC") == 2_364
    assert c.ledger.balance("A", "ETH") == 10 * UNIT - 131_372
    assert (c.ledger.balance(CONVERSION, "ETH"), c.ledger.balance(CONVERSION, "USDC")) == (131_372, -525_015_013)
    for asset in ("ETH", "USDC", "USDT"):
        assert c.conservation_gap(asset) == 0


def test_a_takeover_books_each_position_in_its_own_asset_and_the_fund_buys_back_the_usdc_debt():
    c = pool()
    replay = replay_of(c, execution="sweep", band=5_000_000)
    # BTCUSDT falls to 26,000.0 (PnL -400,000,000,000 USDT, maintenance 10,400,000,000):
    # with ETH at 4,000 the pool is safe. ETH then falls to 350: 10 x 90% x 350 = 3,150 USDT.
    # Equity = 315,000,000,000 + 100,000,000,000 + 49,995,000,000 (500 USDC)
    #          - 400,000,000,000 - 50,069,999,500 (the ETHUSDC PnL in USDT) = 14,925,000,500
    # <= maintenance 10,400,000,000 + 20,250,349,798 = 30,650,349,798: liquidated.
    replay.schedule([(1, RANK_MARKS, 1, "mark", "BTCUSDT", 260_000),
                     (2, RANK_ASSET_PRICES, 1, "asset_price", "ETH", 350 * UNIT)])
    replay.until(1)
    assert not any(r[0] == "margin_call" for r in replay.out)
    replay.until(2)
    assert [r[2:6] for r in replay.out if r[0] == "margin_call"] == [("A", "USDT", 14_925_000_500, 30_650_349_798)]
    # Shares of E = 14,925,000,500 by mark notional in USDT: BTCUSDT 2,600,000,000,000;
    # ETHUSDC floor(4,050,475,007,000 x 0.9999) = 4,050,069,959,499; sum 6,650,069,959,499.
    #   BTCUSDT floor(E x 2,600,000,000,000 / sum) = 5,835,277,152;
    #   ETHUSDC floor(E x 4,050,069,959,499 / sum) = 9,089,723,347, + 1 (the rest, to the
    #   largest) = 9,089,723,348 USDT -> in USDC floor(/ 0.9999) = 9,090,632,411.
    # B (long) = 2,600,000,000,000 - 5,835,277,152 = 2,594,164,722,848 USDT: realised
    #   -405,835,277,152 USDT (cost 3,000,000,000,000).
    # B (short) = 4,050,475,007,000 + 9,090,632,411 = 4,059,565,639,411 USDC: realised
    #   4,000,400,000,000 - 4,059,565,639,411 = -59,165,639,411 USDC.
    takeovers = [(r[2], r[-1]) for r in replay.out if r[0] == "fill_row"]
    assert takeovers == [("BTCUSDT", 2_594_164_722_848), ("ETHUSDC", 4_059_565_639_411)]
    realised = [(r[3], r[4]) for r in replay.out if r[0] == "ledger" and r[2] == "A" and r[5] == "realised_pnl"]
    assert realised == [("USDT", -405_835_277_152), ("USDC", -59_165_639_411)]
    assert [(p.symbol, p.asset, p.qty, p.cost) for p in c.parcels] == [
        ("BTCUSDT", "USDT", 1_000, 2_594_164_722_848), ("ETHUSDC", "USDC", -10_001, 4_059_565_639_411)]
    # Left: USDT 100,000,000,000 - 405,835,277,152 = -305,835,277,152; USDC 50,000,000,000 -
    # 59,165,639,411 = -9,165,639,411 (in USDT -9,164,722,847.06 -> -9,164,722,848); ETH
    # 315,000,000,000: effective margin exactly 0. All of it passes to the fund: the ETH
    # converts at 350 into 350,000,000,000 USDT; the USDC debt is bought back with
    # ceil(9,165,639,411 x 0.9999) = 9,164,722,848 USDT, which pays floor(9,164,722,848 /
    # 0.9999) = 9,165,639,411 USDC, the debt exactly; the USDT debt passes as it is.
    rows = [(r[2], r[3]) for r in replay.out if r[0] == "insurance" and r[5] == "collateral_takeover"]
    assert rows == [("USDT", 350_000_000_000), ("USDT", -9_164_722_848), ("USDT", -305_835_277_152)]
    for asset in ("ETH", "USDC", "USDT"):
        assert c.ledger.balance("A", asset) == 0
        assert c.conservation_gap(asset) == 0
    assert c.positions.get("A") is None
    # The fund: 100,000,000,000 + 350,000,000,000 - 9,164,722,848 - 305,835,277,152 =
    # 135,000,000,000: the 35 USDT haircut on the ETH. Its USDC is untouched (0): the USDC
    # parcel's result will post there. No book: both parcels wait for liquidity.
    assert c.ledger.balance(FUND, "USDT") == 135_000_000_000
    assert c.ledger.balance(FUND, "USDC") == 0
    assert (c.ledger.balance(CONVERSION, "ETH"), c.ledger.balance(CONVERSION, "USDT"),
            c.ledger.balance(CONVERSION, "USDC")) == (10 * UNIT, -350_000_000_000 + 9_164_722_848, -9_165_639_411)
