"""Multi-asset accounts through the replay (CLEARING.md section 6), at random: ETH and BTC
collateral with tiers, USDT debt, price moves in every collateral asset, orders, marks,
funding, interest times, deposits, withdrawals and repays, under every liquidation mode.
After every event each asset is conserved on its own, positions net to zero, nobody is
left liquidatable, and no balance counts past its last collateral tier."""

from __future__ import annotations

from fractions import Fraction

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
ASSETS = ("BTC", "ETH", "USDT")
PER_UNIT = 100  # minor units per whole unit of every asset (small, so tiers bind)
COLLATERAL = Collateral({a: PER_UNIT for a in ASSETS}, {
    "USDT": None,
    "ETH": CollateralTiers((10 * PER_UNIT, 20 * PER_UNIT), (90_000_000, 50_000_000)),
    "BTC": CollateralTiers((2 * PER_UNIT,), (95_000_000,)),
})
ACCOUNTS = ["a", "b", "c", "d"]
MULTI = {"a", "b"}

orders = st.tuples(st.just("order"), st.sampled_from(ACCOUNTS), st.sampled_from([BUY, SELL]),
                   st.sampled_from(["limit", "ioc", "market"]), st.integers(95, 105), st.integers(1, 30))
marks = st.tuples(st.just("mark"), st.integers(80, 120))
prices = st.tuples(st.just("price"), st.sampled_from(["ETH", "BTC"]), st.integers(1, 400))
fundings = st.tuples(st.just("funding"), st.integers(-300_000, 300_000))
interest = st.tuples(st.just("interest"))
transfers = st.tuples(st.just("transfer"), st.sampled_from(ACCOUNTS),
                      st.sampled_from(["deposit", "withdraw", "repay"]), st.sampled_from(ASSETS),
                      st.integers(0, 3_000), st.sampled_from(["ETH", "BTC"]))
streams = st.lists(st.one_of(orders, orders, marks, prices, fundings, interest, transfers, transfers),
                   min_size=1, max_size=50)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=streams, data=st.data())
def test_multi_asset_accounts_conserve_every_asset_after_every_event(stream, data):
    clearing = Clearing({"BTCUSDT": SymbolSpec("USDT", 1, TIERS)}, FeeSchedule(((10_000, 50_000),)))
    clearing.collateral = COLLATERAL
    clearing.multi |= MULTI
    clearing.asset_prices.update({"ETH": data.draw(st.integers(1, 400)), "BTC": data.draw(st.integers(1, 400))})
    for account in ACCOUNTS:
        for asset in ASSETS:
            if account in MULTI or asset == "USDT":
                # A multi-asset account may open in USDT debt (covered by its collateral).
                low = -1_500 if account in MULTI and asset == "USDT" else 0
                clearing.ledger.open_balance(account, asset, data.draw(st.integers(low, 3_000)))
    qty = data.draw(st.integers(0, 20))
    long_acct, short_acct = data.draw(st.permutations(ACCOUNTS))[:2]
    clearing.load_position(long_acct, "BTCUSDT", qty, data.draw(st.integers(90, 110)))
    clearing.load_position(short_acct, "BTCUSDT", -qty, data.draw(st.integers(90, 110)))
    clearing.ledger.open_balance("insurance_fund", "USDT", data.draw(st.integers(0, 5_000)))
    rules = LiquidationRules(execution=data.draw(st.sampled_from(EXECUTIONS)), band=5_000_000,
                             one_unit={a: PER_UNIT for a in ASSETS})
    replay = Replay(Matcher({"BTCUSDT": SymbolRules()}), clearing, [], rules,
                    interest_rates={"USDT": 1_000_000}, conversion_spread=data.draw(st.sampled_from([0, 100_000])))
    for account in sorted(clearing.positions):
        replay.watch.check(account)
    external = {a: clearing.ledger.external[a] - clearing.opening_cost.get(a, 0) for a in ASSETS}
    order_id = 0
    for ts, event in enumerate(stream, start=1):
        kind = event[0]
        if kind == "order":
            _, account, side, how, price, q = event
            order_id += 1
            otype, tif, p = (MARKET, IOC, None) if how == "market" else (LIMIT, GTC if how == "limit" else IOC, price)
            replay.orders(([ts], [NEW], [account], ["BTCUSDT"], [order_id], [side], [otype], [tif], [p], [q],
                           [STP_CANCEL_TAKER], [False]))
        else:
            if kind == "mark":
                replay.schedule([(ts, RANK_MARKS, ts, "mark", "BTCUSDT", event[1])])
            elif kind == "price":
                replay.schedule([(ts, RANK_ASSET_PRICES, ts, "asset_price", event[1], event[2])])
            elif kind == "funding":
                replay.schedule([(ts, RANK_FUNDING, ts, "funding", "BTCUSDT", Fraction(event[1]), "table")])
            elif kind == "interest":
                replay.schedule([(ts, RANK_INTEREST, ts, "interest")])
            else:
                _, account, how, asset, amount, repay_with = event
                replay.schedule([(ts, RANK_TRANSFERS, ts, "transfer", ts, account, how, asset, amount, repay_with)])
            replay.until(ts)
        note(f"{ts}: {event}")
        for asset in ASSETS:
            deposits = replay.deposits.get(asset, 0) - replay.withdrawals.get(asset, 0)
            costs = sum(p.signed_cost() for p in clearing.holders["BTCUSDT"].values()) if asset == "USDT" else 0
            costs += sum(p.signed_cost() for p in clearing.parcels if p.asset == asset)
            assert clearing.ledger.total(asset) - costs == external[asset] + deposits, (ts, event, asset)
        assert clearing.net_qty("BTCUSDT") == 0
        for account in ACCOUNTS:
            for asset in clearing.pools(account) if "BTCUSDT" in clearing.marks else ():
                figures = clearing.pool(account, asset)
                assert figures.equity > figures.maintenance, (ts, event, account)
            if account not in MULTI:  # single-asset: no debt, no negative equity
                assert clearing.pool(account, "USDT").equity >= 0, (ts, event, account)
            for asset in ("ETH", "BTC"):  # nothing counts past the last tier
                held = clearing.ledger.balance(account, asset)
                cap = COLLATERAL.tiers[asset].bounds[-1]
                price = clearing.asset_prices[asset]
                if held > cap:
                    assert collateral_value(held, price, PER_UNIT, COLLATERAL.tiers[asset]) == \
                        collateral_value(cap, price, PER_UNIT, COLLATERAL.tiers[asset])
        assert clearing.ledger.balance("insurance_fund", "USDT") >= 0 or any(
            r[0] == "insurance" and r[5] == "collateral_takeover" for r in replay.out), (ts, event)
    out = replay.out
    note_event(f"interest charged: {any(r[0] == 'interest' for r in out)}")
    note_event(f"repayments: {any(r[0] == 'repayment' for r in out)}")
    note_event(f"collateral takeover: {any(r[0] == 'insurance' and r[5] == 'collateral_takeover' for r in out)}")
    note_event(f"multi-asset margin call: {any(r[0] == 'margin_call' and r[2] in MULTI for r in out)}")
