"""Multi-asset accounts through the replay (CLEARING.md section 6), at random: ETH and BTC
collateral with tiers, a USDT-M and a USDC-M contract in one pool, USDT and USDC debt,
price moves in every collateral asset and in USDC, orders, marks, funding, interest times,
deposits, withdrawals and repays, under every liquidation mode. After every event each
asset is conserved on its own, positions net to zero, nobody is left liquidatable, no
balance counts past its last collateral tier, and a pool's equity is its balances at their
collateral value plus its USDT PnL plus its USDC PnL at the USDC price (rounded down)."""

from __future__ import annotations

from fractions import Fraction
from math import floor

from hypothesis import HealthCheck, given, note, settings
from hypothesis import event as note_event
from hypothesis import strategies as st

from backtest.replay import (RANK_ASSET_PRICES, RANK_FUNDING, RANK_INTEREST, RANK_MARKS, RANK_TRANSFERS,
                             LiquidationRules, Replay)
from clearing.collateral import Collateral, CollateralTiers, collateral_value
from clearing.liquidation import EXECUTIONS
from clearing.margin import MarginTiers
from clearing.settlement import Clearing, FeeSchedule, SymbolSpec
from matching import Matcher, SymbolRules
from matching.types import BUY, GTC, IOC, LIMIT, MARKET, NEW, SELL, STP_CANCEL_TAKER

TIERS = MarginTiers.from_rows([[0, 400_000, 0], [5_000_000, 1_000_000, 30_000]], max_leverage=20)
ASSETS = ("BTC", "ETH", "USDC", "USDT")
SETTLE = ("USDC", "USDT")
PER_UNIT = 100  # minor units per whole unit of every asset (small, so tiers bind)
COLLATERAL = Collateral({a: PER_UNIT for a in ASSETS}, {
    "USDT": None,
    "USDC": None,  # a stablecoin: 100%, no cap, at its price
    "ETH": CollateralTiers((10 * PER_UNIT, 20 * PER_UNIT), (90_000_000, 50_000_000)),
    "BTC": CollateralTiers((2 * PER_UNIT,), (95_000_000,)),
})
SYMBOLS = {"BTCUSDT": "USDT", "ETHUSDC": "USDC"}  # symbol -> settlement asset (K = 1 each)
ACCOUNTS = ["a", "b", "c", "d"]
MULTI = {"a", "b"}

orders = st.tuples(st.just("order"), st.sampled_from(ACCOUNTS), st.sampled_from(sorted(SYMBOLS)),
                   st.sampled_from([BUY, SELL]), st.sampled_from(["limit", "ioc", "market"]),
                   st.integers(95, 105), st.integers(1, 30))
# A resting limit and an IOC against it at the same price: a fill between two accounts (the
# plain orders above rarely meet in a short stream).
trades = st.tuples(st.just("trade"), st.sampled_from(ACCOUNTS), st.sampled_from(ACCOUNTS),
                   st.sampled_from(sorted(SYMBOLS)), st.sampled_from([BUY, SELL]), st.integers(85, 115),
                   st.integers(1, 30))
marks = st.tuples(st.just("mark"), st.sampled_from(sorted(SYMBOLS)), st.integers(80, 120))
# USDC near par (100 USDT minor units per whole USDC), the others anywhere.
prices = st.one_of(st.tuples(st.just("price"), st.sampled_from(["ETH", "BTC"]), st.integers(1, 400)),
                   st.tuples(st.just("price"), st.just("USDC"), st.integers(90, 110)))
fundings = st.tuples(st.just("funding"), st.sampled_from(sorted(SYMBOLS)), st.integers(-300_000, 300_000))
interest = st.tuples(st.just("interest"))
transfers = st.tuples(st.just("transfer"), st.sampled_from(ACCOUNTS),
                      st.sampled_from(["deposit", "withdraw", "repay"]), st.sampled_from(ASSETS),
                      st.integers(0, 3_000), st.sampled_from(["ETH", "BTC", "USDC", "USDT"]))
streams = st.lists(st.one_of(orders, trades, trades, marks, prices, fundings, interest, transfers, transfers),
                   min_size=1, max_size=50)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=streams, data=st.data())
def test_multi_asset_accounts_conserve_every_asset_after_every_event(stream, data):
    clearing = Clearing({s: SymbolSpec(a, 1, TIERS) for s, a in SYMBOLS.items()}, FeeSchedule(((10_000, 50_000),)))
    clearing.collateral = COLLATERAL
    clearing.multi |= MULTI
    clearing.asset_prices.update({"ETH": data.draw(st.integers(1, 400)), "BTC": data.draw(st.integers(1, 400))})
    if data.draw(st.booleans()):  # else USDC counts at par until its first price
        clearing.asset_prices["USDC"] = data.draw(st.integers(90, 110))
    for account in ACCOUNTS:
        for asset in ASSETS:
            if account in MULTI or asset in SETTLE:
                # A multi-asset account may open in USDT or USDC debt (covered by its collateral).
                low = -1_500 if account in MULTI and asset in SETTLE else 0
                clearing.ledger.open_balance(account, asset, data.draw(st.integers(low, 3_000)))
    for symbol in sorted(SYMBOLS):
        qty = data.draw(st.integers(0, 20))
        long_acct, short_acct = data.draw(st.permutations(ACCOUNTS))[:2]
        clearing.load_position(long_acct, symbol, qty, data.draw(st.integers(90, 110)))
        clearing.load_position(short_acct, symbol, -qty, data.draw(st.integers(90, 110)))
    clearing.ledger.open_balance("insurance_fund", "USDT", data.draw(st.integers(0, 5_000)))
    clearing.ledger.open_balance("insurance_fund", "USDC", data.draw(st.integers(0, 2_000)))
    rules = LiquidationRules(execution=data.draw(st.sampled_from(EXECUTIONS)), band=5_000_000,
                             one_unit={a: PER_UNIT for a in ASSETS},
                             ranking=data.draw(st.sampled_from(["bitmex", "binance"])))
    replay = Replay(Matcher({s: SymbolRules() for s in SYMBOLS}), clearing, [], rules,
                    interest_rates={"USDT": 1_000_000, "USDC": 2_000_000},
                    conversion_spread=data.draw(st.sampled_from([0, 100_000])))
    for account in sorted(clearing.positions):
        replay.watch.check(account)
    external = {a: clearing.ledger.external[a] - clearing.opening_cost.get(a, 0) for a in ASSETS}
    order_id = 0
    for ts, event in enumerate(stream, start=1):
        kind = event[0]
        if kind == "order":
            _, account, symbol, side, how, price, q = event
            order_id += 1
            otype, tif, p = (MARKET, IOC, None) if how == "market" else (LIMIT, GTC if how == "limit" else IOC, price)
            replay.orders(([ts], [NEW], [account], [symbol], [order_id], [side], [otype], [tif], [p], [q],
                           [STP_CANCEL_TAKER], [False]))
        elif kind == "trade":
            _, maker, taker, symbol, side, price, q = event
            order_id += 2
            replay.orders(([ts, ts], [NEW, NEW], [maker, taker], [symbol, symbol], [order_id - 1, order_id],
                           [side, SELL if side == BUY else BUY], [LIMIT, LIMIT], [GTC, IOC], [price, price],
                           [q, q], [STP_CANCEL_TAKER] * 2, [False, False]))
        else:
            if kind == "mark":
                replay.schedule([(ts, RANK_MARKS, ts, "mark", event[1], event[2])])
            elif kind == "price":
                replay.schedule([(ts, RANK_ASSET_PRICES, ts, "asset_price", event[1], event[2])])
            elif kind == "funding":
                replay.schedule([(ts, RANK_FUNDING, ts, "funding", event[1], Fraction(event[2]), "table")])
            elif kind == "interest":
                replay.schedule([(ts, RANK_INTEREST, ts, "interest")])
            else:
                _, account, how, asset, amount, repay_with = event
                replay.schedule([(ts, RANK_TRANSFERS, ts, "transfer", ts, account, how, asset, amount, repay_with)])
            replay.until(ts)
        note(f"{ts}: {event}")
        for asset in ASSETS:
            deposits = replay.deposits.get(asset, 0) - replay.withdrawals.get(asset, 0)
            costs = sum(p.signed_cost() for s, a in SYMBOLS.items() if a == asset
                        for p in clearing.holders[s].values())
            costs += sum(p.signed_cost() for p in clearing.parcels if p.asset == asset)
            assert clearing.ledger.total(asset) - costs == external[asset] + deposits, (ts, event, asset)
            assert clearing.conservation_gap(asset) == 0, (ts, event, asset)
        for symbol, asset in SYMBOLS.items():
            assert clearing.net_qty(symbol) == 0
            # Each parcel is in its contract's settlement asset, whoever it came from.
            assert all(p.asset == asset for p in clearing.parcels if p.symbol == symbol)
        usdc = clearing.asset_prices.get("USDC", PER_UNIT)  # par until its first price
        for account in ACCOUNTS:
            held_symbols = clearing.positions.get(account, {})
            if all(s in clearing.marks for s in held_symbols):
                for asset in clearing.pools(account):
                    figures = clearing.pool(account, asset)
                    assert figures.equity > figures.maintenance, (ts, event, account)
            if account not in MULTI:  # single-asset: no debt, no negative equity
                for asset in SETTLE:
                    assert clearing.pool(account, asset).equity >= 0, (ts, event, account)
                continue
            # Effective margin, recomputed tier by tier with exact fractions: the tiered
            # assets never count past their last tier, USDT one for one, USDC at its price.
            counted = 0
            for asset in ASSETS:
                held = clearing.ledger.balance(account, asset)
                tiers = COLLATERAL.tiers[asset]
                price = PER_UNIT if asset == "USDT" else (usdc if asset == "USDC" else clearing.asset_prices[asset])
                if tiers is None or held < 0:
                    counted += floor(Fraction(held * price, PER_UNIT))
                    continue
                weighted, lower = Fraction(0), 0
                for bound, ratio in zip(tiers.bounds, tiers.ratios):
                    weighted += max(0, min(held, bound) - lower) * Fraction(ratio, 100_000_000)
                    lower = bound
                assert weighted <= sum((b - lo) * Fraction(r, 100_000_000) for b, lo, r in
                                       zip(tiers.bounds, (0,) + tiers.bounds, tiers.ratios))
                counted += floor(weighted * price / PER_UNIT)
                cap = tiers.bounds[-1]
                if held > cap:  # nothing counts past the last tier
                    assert collateral_value(held, price, PER_UNIT, tiers) == collateral_value(cap, price, PER_UNIT, tiers)
            assert clearing.effective_margin(account) == counted, (ts, event, account)
            # The pool's equity: that, plus USDT PnL, plus USDC PnL at the USDC price.
            pnl = {"USDT": 0, "USDC": 0}
            for symbol, pos in held_symbols.items():
                mark = clearing.marks.get(symbol)
                pnl[SYMBOLS[symbol]] += 0 if mark is None else pos.unrealised(mark, 1)
            expected = counted + pnl["USDT"] + floor(Fraction(pnl["USDC"] * usdc, PER_UNIT))
            assert clearing.pool(account, "USDT").equity == expected, (ts, event, account)
        assert clearing.ledger.balance("insurance_fund", "USDT") >= 0 or any(
            r[0] == "insurance" and r[5] == "collateral_takeover" for r in replay.out), (ts, event)
    out = replay.out
    note_event(f"interest charged: {any(r[0] == 'interest' for r in out)}")
    note_event(f"repayments: {any(r[0] == 'repayment' for r in out)}")
    note_event(f"collateral takeover: {any(r[0] == 'insurance' and r[5] == 'collateral_takeover' for r in out)}")
    note_event(f"multi-asset margin call: {any(r[0] == 'margin_call' and r[2] in MULTI for r in out)}")
    note_event(f"USDC-M fill of a multi-asset account: "
               f"{any(r[0] == 'fill' and r[2] == 'ETHUSDC' and (r[8] in MULTI or r[9] in MULTI) for r in out)}")
    note_event(f"USDC debt bought back by the fund: "
               f"{any(r[0] == 'ledger' and r[2:4] == ('insurance_fund', 'USDT') and r[4] < 0 and r[5] == 'conversion' for r in out)}")
    note_event(f"USDC parcel of a multi-asset account: "
               f"{any(p.asset == 'USDC' and p.account in MULTI for p in clearing.parcels)}")
