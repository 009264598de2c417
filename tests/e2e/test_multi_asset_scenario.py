"""Multi-asset mode end to end (CLEARING.md section 6): an account holding only ETH trades
BTCUSDT, loses, goes into USDT debt, pays compounding interest for hours, repays part by
depositing USDT and the rest by converting ETH. Every step is pinned from the output
tables, with the arithmetic in the comments."""

from __future__ import annotations

import polars as pl
import pytest

from backtest.cli import main

S = 1_700_000_000_000_000_000
SEC = 10**9
H = 3600 * SEC
USDT = 10**8  # minor units per USDT (and per ETH)


def build(out) -> None:
    out.mkdir(parents=True)
    (out / "dataset.toml").write_text(f'''[dataset]
    name = "multi-asset-scenario"
    start_ns = {S}
    end_ns = {S + 6 * H}
    provenance = "tests/e2e/test_multi_asset_scenario.py"
    
    [assets.USDT]
    minor_unit = "0.00000001"
    stable = true
    
    [assets.ETH]
    minor_unit = "0.00000001"
    
    [instruments.BTCUSDT]
    kind = "linear_perpetual"
    base = "BTC"
    settle = "USDT"
    tick_size = "0.1"
    lot_size = "0.001"
    min_qty = 1
    
    [rules]
    stp = "cancel_taker"
    fees = {{ maker = 0, taker = 50_000 }}
    margin_tiers.BTCUSDT = [[0, 400_000, 0]]
    max_leverage.BTCUSDT = 20
    interest = {{ interval_s = 3600, rates = {{ USDT = 500 }} }}
    collateral_tiers.ETH = [["100", 90_000_000], ["200", 80_000_000]]
    conversion = {{ spread = 100_000 }}
    ''')
    pl.DataFrame({"account": ["eth_holder", "maker"], "asset": ["ETH", "USDT"],
                  "balance": [10 * 10**8, 10**15], "margin_mode": ["multi_asset", "single_asset"],
                  "fee_tier": [0, 0]}).write_parquet(out / "accounts.parquet")
    pl.DataFrame({"ts": [S], "asset": ["ETH"], "price": [4_000 * 10**8]}).write_parquet(out / "asset_prices.parquet")
    pl.DataFrame({"ts": [S + SEC, S + 10 * SEC], "symbol": ["BTCUSDT"] * 2,
                  "mark_price": [300_000, 290_000], "index_price": [300_000, 290_000]}).write_parquet(out / "marks.parquet")
    rows = [  # ts, seq, account, action, id, side, type, tif, price, qty
        (S + 2 * SEC, 1, "maker", "new", 1, "sell", "limit", "gtc", 300_000, 1_000),
        (S + 3 * SEC, 2, "eth_holder", "new", 2, "buy", "market", "ioc", None, 1_000),
        (S + 11 * SEC, 3, "maker", "new", 3, "buy", "limit", "gtc", 290_000, 1_000),
        (S + 12 * SEC, 4, "eth_holder", "new", 4, "sell", "market", "ioc", None, 1_000),
    ]
    pl.DataFrame([{"ts": r[0], "seq": r[1], "account": r[2], "symbol": "BTCUSDT", "action": r[3], "order_id": r[4],
                   "side": r[5], "type": r[6], "tif": r[7], "price": r[8], "qty": r[9], "reduce_only": False}
                  for r in rows], schema={"ts": pl.Int64, "seq": pl.Int64, "account": pl.String, "symbol": pl.String,
                  "action": pl.String, "order_id": pl.Int64, "side": pl.String, "type": pl.String, "tif": pl.String,
                  "price": pl.Int64, "qty": pl.Int64, "reduce_only": pl.Boolean}).write_parquet(out / "orders.parquet")
    pl.DataFrame({"ts": [S + 3 * H + 30 * 60 * SEC, S + 4 * H + 30 * 60 * SEC],
                  "seq": [1, 2], "account": ["eth_holder"] * 2, "kind": ["deposit", "repay"],
                  "asset": ["USDT", "USDT"], "amount": [500 * 10**8, 10**15], "repay_with": [None, "ETH"]}
                 ).write_parquet(out / "transfers.parquet")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("multi")
    build(root / "ds")
    assert main(["validate", str(root / "ds")]) == 0
    assert main(["run", str(root / "ds"), "--out", str(root / "run")]) == 0
    return root / "run"


def table(run, name: str) -> pl.DataFrame:
    frame = pl.read_parquet(run / f"{name}.parquet")
    return frame.with_columns(pl.col(c).cast(pl.String) for c, t in frame.schema.items() if t == pl.Categorical)


def test_the_eth_collateral_carries_a_btc_position_and_the_loss_becomes_usdt_debt(run):
    # 10 ETH at 4,000, 90%: 36,000 USDT of margin for a 1 BTC long at 30,000 (initial
    # margin at 20x: 1,500). Taker fees 15 and 14.5 USDT, a realised loss of 1,000 USDT
    # (sold at 29,000): the USDT balance goes to -1,029.5 USDT, debt, not a rejection.
    events = table(run, "order_events")
    assert events.filter(pl.col("event") == "rejected").height == 0
    ledger = table(run, "ledger").filter(pl.col("account") == "eth_holder")
    trading = ledger.filter(pl.col("kind").is_in(["fee", "realised_pnl"]))["amount"].to_list()
    assert trading == [-1_500_000_000, -100_000_000_000, -1_450_000_000]


def test_interest_compounds_on_the_debt_every_hour_rounded_up(run):
    interest = table(run, "interest")
    # 102,950,000,000 x 500 / 1e8 = 514,750 exactly; then 514,752.57 -> 514,753;
    # 514,755.15 -> 514,756; after the 500 USDT deposit 264,757.72 -> 264,758; no debt
    # is left at hours 5 and 6.
    assert interest.select("ts", "debt", "amount").rows() == [
        (S + H, 102_950_000_000, 514_750),
        (S + 2 * H, 102_950_514_750, 514_753),
        (S + 3 * H, 102_951_029_503, 514_756),
        (S + 4 * H, 52_951_544_259, 264_758),
    ]
    assert (interest["rate"] == 500).all()


def test_a_deposit_repays_interest_first_and_a_repay_converts_eth_at_the_price_less_the_spread(run):
    rows = table(run, "repayments").select("amount", "interest", "principal", "via", "from_asset",
                                           "from_amount").rows()
    # Deposit 500 USDT: the accrued 1,544,259 interest first, the rest principal.
    # Repay with ETH: owed 52,951,809,017; ETH at 4,000 less 0.1% pays 3,996 USDT minor per
    # ETH minor: ceil(52,951,809,017 / 3,996) = 13,251,204 ETH minor, which pay
    # 52,951,811,184 USDT minor (2,167 more than owed stay with the account).
    assert rows == [
        (50_000_000_000, 1_544_259, 49_998_455_741, "deposit", None, None),
        (52_951_809_017, 264_758, 52_951_544_259, "repay", "ETH", 13_251_204),
    ]
    conversion = table(run, "ledger").filter(pl.col("kind") == "conversion")
    assert conversion.select("account", "asset", "amount").rows() == [
        ("eth_holder", "ETH", -13_251_204), ("conversion", "ETH", 13_251_204),
        ("conversion", "USDT", -52_951_811_184), ("eth_holder", "USDT", 52_951_811_184),
    ]


def test_every_asset_is_conserved_on_its_own_and_the_debt_is_gone(run):
    final = {(a, s): b for a, s, b, _ in table(run, "accounts_final").rows()}
    assert final[("eth_holder", "USDT")] == 2_167
    assert final[("eth_holder", "ETH")] == 10 * USDT - 13_251_204
    assert final[("interest", "USDT")] == 1_544_259 + 264_758
    assert final[("fees", "USDT")] == 2_950_000_000
    import json
    summary = json.loads((run / "summary.json").read_text())
    assert summary["multi_asset_accounts"] == 1
    for asset in ("USDT", "ETH"):
        assert summary["conservation"][asset]["gap_at_last_marks"] == 0
    for asset in ("USDT", "ETH"):
        assert sum(b for (_, s), b in final.items() if s == asset) == \
            sum(o for _, s, _, o in table(run, "accounts_final").rows() if s == asset) + (
                500 * USDT if asset == "USDT" else 0)
