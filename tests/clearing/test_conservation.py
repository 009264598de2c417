"""Conservation of money and quantity under random fills, funding and transfers.

After every event, for every asset: sum of balances - sum of signed entry costs =
openings + deposits - withdrawals (DESIGN.md's Conservation, in its mark-free form), and
positions net to zero per symbol.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearing.settlement import Clearing, FeeSchedule, SymbolSpec

SYMBOLS = {"BTCUSDT": SymbolSpec("USDT", 10_000), "ETHUSDC": SymbolSpec("USDC", 1_000)}
ACCOUNTS = ["a", "b", "c", "d"]

fills = st.tuples(st.just("fill"), st.sampled_from(sorted(SYMBOLS)), st.integers(1, 10**7),
                  st.integers(1, 5_000), st.booleans(), st.sampled_from(ACCOUNTS),
                  st.sampled_from(ACCOUNTS))
rates = st.one_of(st.integers(-300_000, 300_000),
                  st.fractions(-300_000, 300_000, max_denominator=1_000))  # premium-sample rates
fundings = st.tuples(st.just("funding"), st.sampled_from(sorted(SYMBOLS)), st.integers(1, 10**7), rates)
transfers = st.tuples(st.just("transfer"), st.sampled_from(ACCOUNTS), st.sampled_from(["USDT", "USDC"]),
                      st.integers(-10**12, 10**12))
events = st.lists(st.one_of(fills, fills, fundings, transfers), min_size=1, max_size=40)
fee_tiers = st.lists(st.tuples(st.integers(-30_000, 50_000), st.integers(0, 100_000)),
                     min_size=1, max_size=3)


@settings(max_examples=500, deadline=None)
@given(events=events, tiers=fee_tiers, data=st.data())
def test_money_and_quantity_are_conserved_after_every_event(events, tiers, data):
    clearing = Clearing(dict(SYMBOLS), FeeSchedule(tuple(tiers)))
    for account in ACCOUNTS:
        clearing.fee_tier[account] = data.draw(st.integers(0, len(tiers) - 1))
        clearing.ledger.open_balance(account, "USDT", data.draw(st.integers(0, 10**13)))
    # Opening positions: a long and an equal short per symbol, at different entry prices.
    for symbol in sorted(SYMBOLS):
        qty = data.draw(st.integers(0, 3_000))
        long_acct, short_acct = data.draw(st.permutations(ACCOUNTS))[:2]
        clearing.load_position(long_acct, symbol, qty, data.draw(st.integers(1, 10**7)))
        clearing.load_position(short_acct, symbol, -qty, data.draw(st.integers(1, 10**7)))
    clearing.check_opening()
    for i, event in enumerate(events):
        if event[0] == "fill":
            _, symbol, price, qty, buy, taker, maker = event
            clearing.settle_fill(i, symbol, price, qty, buy, taker, maker, f"fill-{i}")
        elif event[0] == "funding":
            _, symbol, mark, rate = event
            clearing.settle_funding(i, symbol, mark, rate, f"funding-{i}")
            assert clearing.ledger.balance("rounding", SYMBOLS[symbol].settle) >= 0
        else:
            _, account, asset, amount = event
            clearing.ledger.post(i, account, asset, amount, "deposit" if amount > 0 else "withdraw",
                                 f"transfer-{i}")
        for asset in ("USDT", "USDC"):
            assert clearing.conservation_gap(asset) == 0, (i, event)
        for symbol in SYMBOLS:
            assert clearing.net_qty(symbol) == 0


def test_a_fill_between_two_accounts_books_fees_and_pnl_exactly():
    c = Clearing({"BTCUSDT": SymbolSpec("USDT", 10_000)}, FeeSchedule(((20_000, 50_000),)))
    assert c.settle_fill(1, "BTCUSDT", 300_000, 1_500, True, "t", "m", "f1") == (2_250_000_000, 900_000_000)
    assert c.settle_fill(2, "BTCUSDT", 310_000, 1_500, False, "t", "m", "f2") == (2_325_000_000, 930_000_000)
    gain = (310_000 - 300_000) * 1_500 * 10_000
    assert c.ledger.balance("t", "USDT") == gain - 2_250_000_000 - 2_325_000_000
    assert c.ledger.balance("m", "USDT") == -gain - 900_000_000 - 930_000_000
    assert c.ledger.balance("fees", "USDT") == 2_250_000_000 + 2_325_000_000 + 900_000_000 + 930_000_000
    assert not c.positions


def test_a_negative_maker_rate_is_a_rebate_paid_by_fees():
    c = Clearing({"BTCUSDT": SymbolSpec("USDT", 10_000)}, FeeSchedule(((-10_000, 50_000),)))
    taker_fee, maker_fee = c.settle_fill(1, "BTCUSDT", 300_001, 7, True, "t", "m", "f1")
    assert maker_fee == -2_100_007  # 21,000,070,000 x 0.01%: a credit, rounded down
    assert c.ledger.balance("m", "USDT") == 2_100_007
    assert c.ledger.balance("fees", "USDT") == taker_fee - 2_100_007


def test_funding_entries_and_the_rounding_residue():
    """CLEARING.md Example 7 through the ledger: long pays 2,592,459, short gets 2,592,458."""
    c = Clearing({"BTCUSDT": SymbolSpec("USDT", 10_000)}, FeeSchedule(((0, 0),)))
    c.settle_fill(1, "BTCUSDT", 300_001, 7, True, "long", "short", "f1")
    c.settle_funding(2, "BTCUSDT", 300_001, 12_345, "funding-1")
    assert c.ledger.balance("long", "USDT") == -2_592_459
    assert c.ledger.balance("short", "USDT") == 2_592_458
    assert c.ledger.balance("rounding", "USDT") == 1


def test_opening_positions_that_do_not_net_to_zero_are_refused():
    c = Clearing({"BTCUSDT": SymbolSpec("USDT", 10_000)})
    c.load_position("a", "BTCUSDT", 1_000, 300_000)
    c.load_position("b", "BTCUSDT", -400, 300_000)
    with pytest.raises(ValueError, match="BTCUSDT: net 600 lots"):
        c.check_opening()
