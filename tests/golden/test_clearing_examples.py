"""CLEARING.md's worked examples 1 to 7, with its exact integers.

BTCUSDT: tick 0.1, lot 0.001, USDT minor unit 1e-8, so K = 10,000 minor units per tick x
lot; 30,000.0 is 300,000 ticks; 1.5 BTC is 1,500 lots.
"""

from __future__ import annotations

import pytest

from clearing.margin import MarginTiers, TierError
from clearing.money import fee, funding_amounts, notional
from clearing.positions import Position, apply_fill

K = 10_000
USDT = 100_000_000  # minor units per USDT


def test_example_1_taker_and_maker_fees():
    n = notional(300_000, 1_500, K)
    assert n == 4_500_000_000_000
    assert fee(n, 50_000) == 2_250_000_000
    assert fee(n, 20_000) == 900_000_000


def test_example_2_fees_round_up_for_the_payer():
    n = notional(300_001, 7, K)
    assert n == 21_000_070_000
    assert fee(n, 50_000) == 10_500_035
    assert fee(n, 12_345) == 2_592_459  # exact 2,592,458.6415


def test_example_3_partial_close_removes_cost_rounded_against_the_long():
    pos = Position()
    assert apply_fill(pos, 1_000, notional(300_000, 1_000, K)) == 0
    assert apply_fill(pos, 500, notional(310_000, 500, K)) == 0
    assert pos.cost == 4_550_000_000_000
    realised = apply_fill(pos, -1_000, notional(320_000, 1_000, K))
    assert realised == 166_666_666_666
    assert (pos.qty, pos.cost) == (500, 1_516_666_666_666)


EXAMPLE_TIERS = [  # USDT: [0, 50k) 0.40%; [50k, 250k) 0.50% amount 50; ...
    [0, 400_000, 0, 125],
    [50_000 * USDT, 500_000, 50 * USDT, 100],
    [250_000 * USDT, 1_000_000, 1_300 * USDT, 50],
    [1_000_000 * USDT, 2_500_000, 16_300 * USDT, 20],
]


@pytest.mark.parametrize(("notional_usdt", "maintenance_usdt"), [
    pytest.param(42_000, 168, id="42,000 -> 168"),
    pytest.param(50_000, 200, id="50,000 -> 200 where both tiers agree"),
    pytest.param(120_000, 550, id="120,000 -> 550"),
    pytest.param(250_000, 1_200, id="250,000 -> 1,200"),
    pytest.param(1_000_000, 8_700, id="1,000,000 -> 8,700"),
])
def test_example_4_maintenance_margin_by_tier(notional_usdt, maintenance_usdt):
    tiers = MarginTiers.from_rows(EXAMPLE_TIERS)
    assert tiers.maintenance(notional_usdt * USDT) == maintenance_usdt * USDT


def test_example_4_tiers_agree_at_every_bound():
    tiers = MarginTiers.from_rows(EXAMPLE_TIERS)
    for i in range(1, len(tiers.floors)):
        f = tiers.floors[i]
        below = (f * tiers.mmr[i - 1]) // 100_000_000 - tiers.amounts[i - 1]
        assert tiers.maintenance(f) == below


def test_a_discontinuous_tier_table_is_rejected_naming_the_tier():
    rows = [list(r) for r in EXAMPLE_TIERS]
    rows[2][2] += 1
    with pytest.raises(TierError, match="tier 2: maintenance amount"):
        MarginTiers.from_rows(rows)


def test_example_5_liquidation_trigger_at_the_mark():
    """Wallet 3,000 USDT, long 1.500 at 30,000.0: safe at 28,112.5, liquidated at 28,112.4."""
    tiers = MarginTiers.from_rows(EXAMPLE_TIERS)
    wallet = 3_000 * USDT
    pos = Position()
    apply_fill(pos, 1_500, notional(300_000, 1_500, K))
    assert pos.cost == 45_000 * USDT

    equity = wallet + pos.unrealised(281_125, K)
    maintenance = tiers.maintenance(notional(281_125, 1_500, K))
    assert (equity, maintenance) == (16_875_000_000, 16_867_500_000)  # 168.75 vs 168.675
    assert equity > maintenance

    equity = wallet + pos.unrealised(281_124, K)
    maintenance = tiers.maintenance(notional(281_124, 1_500, K))
    assert (equity, maintenance) == (16_860_000_000, 16_867_440_000)  # 168.60 vs 168.6744
    assert equity <= maintenance


def test_example_6_funding_longs_pay_shorts():
    paid, received = funding_amounts(1_500, 300_000, K, 10_000)
    assert (paid, received) == (450_000_000, 450_000_000)


def test_example_7_funding_residue_goes_to_rounding():
    paid, received = funding_amounts(7, 300_001, K, 12_345)
    assert (paid, received, paid - received) == (2_592_459, 2_592_458, 1)


@pytest.mark.parametrize(("mark", "liquidatable"), [
    pytest.param(281_125, False, id="28,112.5: equity 168.75 above maintenance 168.675"),
    pytest.param(281_124, True, id="28,112.4: equity 168.60 at or below maintenance 168.6744"),
])
def test_example_5_through_the_account_figures(mark, liquidatable):
    from clearing.margin import account_margin

    tiers = MarginTiers.from_rows(EXAMPLE_TIERS)
    figures = account_margin(3_000 * USDT, [(1_500, 45_000 * USDT, mark, K, tiers)])
    assert figures.liquidatable is liquidatable
    assert figures.initial == -(-notional(mark, 1_500, K) // 125)
