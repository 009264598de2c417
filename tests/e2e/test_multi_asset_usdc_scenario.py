"""Multi-asset mode end to end with a USDC-M contract (CLEARING.md section 6): an account
holding only ETH trades BTCUSDT and ETHUSDC from one pool. Its USDT-M fee and its USDC-M
fees, funding and loss post in their own settlement assets and become USDT and USDC debt;
each debt pays interest at its asset's rate; a USDC deposit repays the USDC interest then
principal, and repays convert ETH into each. An order on a coin-margined contract is
refused. Every step is pinned from the output tables, with the arithmetic in the comments.

USDC is priced at 0.9995 USDT, ETH at 4,000 USDT (90% up to 100 ETH); every asset's minor
unit is 1e-8. ETHUSDC: tick 0.01, lot 0.001, K = 1,000 USDC minor; BTCUSDT K = 10,000."""

from __future__ import annotations

import json

import polars as pl
import pytest

from backtest.cli import main

S = 1_700_000_000_000_000_000
SEC = 10**9
H = 3600 * SEC
UNIT = 10**8  # minor units per whole unit of every asset


def build(out) -> None:
    out.mkdir(parents=True)
    (out / "dataset.toml").write_text(f'''[dataset]
    name = "multi-asset-usdc-scenario"
    start_ns = {S}
    end_ns = {S + 6 * H}
    provenance = "tests/e2e/test_multi_asset_usdc_scenario.py"

    [assets.USDT]
    minor_unit = "0.00000001"
    stable = true

    [assets.USDC]
    minor_unit = "0.00000001"
    stable = true

    [assets.ETH]
    minor_unit = "0.00000001"

    [assets.BTC]
    minor_unit = "0.00000001"

    [instruments.BTCUSDT]
    kind = "linear_perpetual"
    base = "BTC"
    settle = "USDT"
    tick_size = "0.1"
    lot_size = "0.001"

    [instruments.ETHUSDC]
    kind = "linear_perpetual"
    base = "ETH"
    settle = "USDC"
    tick_size = "0.01"
    lot_size = "0.001"

    [instruments.BTCUSD_PERP]
    kind = "inverse_perpetual"
    base = "BTC"
    settle = "BTC"
    tick_size = "0.1"
    lot_size = "1"

    [rules]
    stp = "cancel_taker"
    fees = {{ maker = 0, taker = 50_000 }}
    margin_tiers.BTCUSDT = [[0, 400_000, 0]]
    margin_tiers.ETHUSDC = [[0, 500_000, 0]]
    margin_tiers.BTCUSD_PERP = [[0, 500_000, 0]]
    max_leverage.BTCUSDT = 20
    max_leverage.ETHUSDC = 20
    max_leverage.BTCUSD_PERP = 20
    interest = {{ interval_s = 3600, rates = {{ USDT = 500, USDC = 1_000 }} }}
    collateral_tiers.ETH = [["100", 90_000_000]]
    conversion = {{ spread = 100_000 }}
    ''')
    pl.DataFrame({"account": ["eth_holder", "maker", "maker", "maker"],
                  "asset": ["ETH", "USDT", "USDC", "BTC"],
                  "balance": [10 * UNIT, 10**15, 10**15, 10**12],
                  "margin_mode": ["multi_asset", "single_asset", "single_asset", "single_asset"],
                  "fee_tier": [0, 0, 0, 0]}).write_parquet(out / "accounts.parquet")
    pl.DataFrame({"ts": [S, S], "asset": ["ETH", "USDC"], "price": [4_000 * UNIT, 99_950_000]}
                 ).write_parquet(out / "asset_prices.parquet")
    pl.DataFrame({"ts": [S + SEC, S + SEC, S + 10 * SEC], "symbol": ["BTCUSDT", "ETHUSDC", "ETHUSDC"],
                  "mark_price": [300_000, 400_000, 410_000], "index_price": [300_000, 400_000, 410_000]}
                 ).write_parquet(out / "marks.parquet")
    pl.DataFrame({"ts": [S + 5 * SEC], "symbol": ["ETHUSDC"], "rate": [10_000]}).write_parquet(out / "funding.parquet")
    rows = [  # ts, seq, account, symbol, action, id, side, type, tif, price, qty
        (S + 2 * SEC, 1, "maker", "ETHUSDC", 1, "buy", "limit", "gtc", 400_000, 2_000),
        (S + 2 * SEC, 2, "maker", "BTCUSDT", 2, "sell", "limit", "gtc", 300_000, 100),
        (S + 3 * SEC, 3, "eth_holder", "ETHUSDC", 3, "sell", "market", "ioc", None, 2_000),
        (S + 3 * SEC, 4, "eth_holder", "BTCUSDT", 4, "buy", "market", "ioc", None, 100),
        (S + 11 * SEC, 5, "maker", "ETHUSDC", 5, "sell", "limit", "gtc", 410_000, 2_000),
        (S + 12 * SEC, 6, "eth_holder", "ETHUSDC", 6, "buy", "market", "ioc", None, 2_000),
        (S + 13 * SEC, 7, "eth_holder", "BTCUSD_PERP", 7, "buy", "limit", "gtc", 300_000, 1),
    ]
    pl.DataFrame([{"ts": r[0], "seq": r[1], "account": r[2], "symbol": r[3], "action": "new", "order_id": r[4],
                   "side": r[5], "type": r[6], "tif": r[7], "price": r[8], "qty": r[9], "reduce_only": False}
                  for r in rows], schema={"ts": pl.Int64, "seq": pl.Int64, "account": pl.String, "symbol": pl.String,
                  "action": pl.String, "order_id": pl.Int64, "side": pl.String, "type": pl.String, "tif": pl.String,
                  "price": pl.Int64, "qty": pl.Int64, "reduce_only": pl.Boolean}).write_parquet(out / "orders.parquet")
    pl.DataFrame({"ts": [S + 2 * H + 30 * 60 * SEC, S + 3 * H + 30 * 60 * SEC, S + 3 * H + 30 * 60 * SEC],
                  "seq": [1, 2, 3], "account": ["eth_holder"] * 3, "kind": ["deposit", "repay", "repay"],
                  "asset": ["USDC", "USDC", "USDT"], "amount": [100 * UNIT, 10**15, 10**15],
                  "repay_with": [None, "ETH", "ETH"]}).write_parquet(out / "transfers.parquet")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("multi-usdc")
    build(root / "ds")
    assert main(["validate", str(root / "ds")]) == 0
    assert main(["run", str(root / "ds"), "--out", str(root / "run")]) == 0
    return root / "run"


def table(run, name: str) -> pl.DataFrame:
    frame = pl.read_parquet(run / f"{name}.parquet")
    return frame.with_columns(pl.col(c).cast(pl.String) for c, t in frame.schema.items() if t == pl.Categorical)


def test_one_pool_trades_usdt_m_and_usdc_m_and_refuses_a_coin_margined_order(run):
    events = table(run, "order_events").filter(pl.col("account") == "eth_holder")
    assert events.filter(pl.col("event") == "rejected").select("order_id", "reason").rows() == [
        (7, "multi_asset_instrument")]
    fills = table(run, "fills").filter(pl.col("taker_account") == "eth_holder")
    assert fills.select("symbol", "price", "qty", "taker_fee").rows() == [
        ("ETHUSDC", 400_000, 2_000, 400_000_000),  # 8e11 USDC minor x 0.05%
        ("BTCUSDT", 300_000, 100, 150_000_000),  # 3e11 USDT minor x 0.05%
        ("ETHUSDC", 410_000, 2_000, 410_000_000),  # 8.2e11 x 0.05%
    ]


def test_usdc_m_fees_funding_and_loss_post_in_usdc_and_the_usdt_m_fee_in_usdt(run):
    ledger = table(run, "ledger").filter((pl.col("account") == "eth_holder")
                                         & pl.col("kind").is_in(["fee", "realised_pnl", "funding"]))
    # Short 2 ETHUSDC at 4,000.00: fee 4 USDC. The BTCUSDT buy: fee 1.5 USDT. Funding at
    # 0.01% on 2 x 4,000.00: the short receives 0.8 USDC. Bought back at 4,100.00: the
    # short realises 800,000,000,000 - 820,000,000,000 = -200 USDC, fee 4.1 USDC.
    assert ledger.select("asset", "amount", "kind").rows() == [
        ("USDC", -400_000_000, "fee"),
        ("USDT", -150_000_000, "fee"),
        ("USDC", 80_000_000, "funding"),
        ("USDC", -20_000_000_000, "realised_pnl"),
        ("USDC", -410_000_000, "fee"),
    ]


def test_each_debt_pays_interest_at_its_own_rate(run):
    interest = table(run, "interest").select("ts", "asset", "debt", "rate", "amount").rows()
    # USDT debt 150,000,000 at 500: 750; then 150,000,750 -> 750.00375 -> 751; then
    # 150,001,501 -> 751 (750.0075). USDC debt 400,000,000 - 80,000,000 + 20,410,000,000 =
    # 20,730,000,000 at 1,000: 207,300; then 20,730,207,300 -> 207,302.073 -> 207,303; after
    # the 100 USDC deposit 10,730,414,603 -> 107,304.14603 -> 107,305. Both are repaid
    # before hour 4: no interest at hours 4 to 6.
    assert interest == [
        (S + H, "USDC", 20_730_000_000, 1_000, 207_300),
        (S + H, "USDT", 150_000_000, 500, 750),
        (S + 2 * H, "USDC", 20_730_207_300, 1_000, 207_303),
        (S + 2 * H, "USDT", 150_000_750, 500, 751),
        (S + 3 * H, "USDC", 10_730_414_603, 1_000, 107_305),
        (S + 3 * H, "USDT", 150_001_501, 500, 751),
    ]


def test_a_usdc_deposit_repays_usdc_interest_first_and_eth_repays_each_debt(run):
    rows = table(run, "repayments").select("asset", "amount", "interest", "principal", "via", "from_asset",
                                           "from_amount").rows()
    # Deposit 100 USDC: accrued 207,300 + 207,303 = 414,603 first, principal 9,999,585,397.
    # Repay USDC (owed 10,730,414,603 + 107,305 = 10,730,521,908) with ETH at 4,000 less
    # 0.1%, into USDC at 0.9995: an ETH minor unit pays 4,000 x 0.999 / 0.9995 =
    # 3,997.998999... USDC minor: ceil(10,730,521,908 / 3,997.998999...) = 2,683,974 ETH
    # minor (exact 2,683,973.13...), paying floor(2,683,974 x 3,997.998999...) =
    # 10,730,525,366 USDC minor (3,458 more than owed stay with the account).
    # Repay USDT (owed 150,002,252) with ETH: 3,996 USDT minor per ETH minor:
    # ceil(150,002,252 / 3,996) = 37,539 ETH minor (37,538.1...), paying 150,005,844
    # (3,592 more than owed stay).
    assert rows == [
        ("USDC", 10_000_000_000, 414_603, 9_999_585_397, "deposit", None, None),
        ("USDC", 10_730_521_908, 107_305, 10_730_414_603, "repay", "ETH", 2_683_974),
        ("USDT", 150_002_252, 2_252, 150_000_000, "repay", "ETH", 37_539),
    ]
    conversion = table(run, "ledger").filter(pl.col("kind") == "conversion")
    assert conversion.select("account", "asset", "amount").rows() == [
        ("eth_holder", "ETH", -2_683_974), ("conversion", "ETH", 2_683_974),
        ("conversion", "USDC", -10_730_525_366), ("eth_holder", "USDC", 10_730_525_366),
        ("eth_holder", "ETH", -37_539), ("conversion", "ETH", 37_539),
        ("conversion", "USDT", -150_005_844), ("eth_holder", "USDT", 150_005_844),
    ]


def test_every_asset_is_conserved_on_its_own_and_the_pool_keeps_its_btc_position(run):
    final = {(a, s): b for a, s, b, _ in table(run, "accounts_final").rows()}
    assert final[("eth_holder", "USDC")] == 3_458
    assert final[("eth_holder", "USDT")] == 3_592
    assert final[("eth_holder", "ETH")] == 10 * UNIT - 2_683_974 - 37_539
    assert final[("interest", "USDC")] == 414_603 + 107_305
    assert final[("interest", "USDT")] == 750 + 751 + 751
    assert final[("fees", "USDC")] == 810_000_000 and final[("fees", "USDT")] == 150_000_000
    assert table(run, "positions_final").filter(pl.col("account") == "eth_holder").select(
        "symbol", "qty", "entry_cost").rows() == [("BTCUSDT", 100, 300_000_000_000)]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["multi_asset_accounts"] == 1 and summary["margin_calls"] == 0
    for asset in ("USDT", "USDC", "ETH"):
        assert summary["conservation"][asset]["gap_at_last_marks"] == 0
        assert summary["conservation"][asset]["gap_entry_cost"] == 0


@pytest.mark.parametrize("symbol, runs", [
    pytest.param("ETHUSDC", True, id="a loaded USDC-M position of a multi-asset account is served"),
    pytest.param("BTCUSD_PERP", False, id="a loaded coin-margined position of a multi-asset account is an input error"),
])
def test_loaded_positions_of_a_multi_asset_account(tmp_path, capsys, symbol, runs):
    build(tmp_path / "ds")
    pl.DataFrame({"account": ["eth_holder", "maker"], "symbol": [symbol] * 2, "qty": [1_000, -1_000],
                  "entry_price": [400_000] * 2}).write_parquet(tmp_path / "ds" / "positions.parquet")
    status = main(["run", str(tmp_path / "ds"), "--out", str(tmp_path / "run")])
    if runs:
        assert status == 0
        summary = json.loads((tmp_path / "run" / "summary.json").read_text())
        assert all(summary["conservation"][a]["gap_entry_cost"] == 0 for a in ("USDT", "USDC", "ETH"))
    else:
        assert status == 2 and not (tmp_path / "run").exists()
        err = " ".join(capsys.readouterr().err.split())  # whatever the console's wrapping
        assert "positions.parquet" in err and "account eth_holder" in err and "inverse_perpetual" in err
