"""A market-data replay end to end (DESIGN.md "Two kinds of replay", mode 2): a recorded
book owned by `market`, one of our accounts queued in it, a recorded trade that reaches
its order, and a leveraged long whose liquidation walks the thin recorded bids. Every fill
is pinned from the output tables, with the arithmetic in the comments."""

from __future__ import annotations

import json

import polars as pl
import pytest

from backtest.cli import main
from datasets.generate import MANIFEST

S = 1_700_000_000_000_000_000
SEC = 10**9
USDT = 10**8  # minor units per USDT
K = 10_000  # minor units per tick x lot: 0.1 USDT x 0.001 BTC = 0.0001 USDT


def build(out, queue_model: str = "front") -> None:
    out.mkdir(parents=True)
    (out / "dataset.toml").write_text(MANIFEST.format(
        name="market-data-scenario", start_ns=S, end_ns=S + 60 * SEC,
        provenance="tests/e2e/test_market_data_replay.py") + f"""\
fees = {{ maker = 0, taker = 50_000 }}
margin_tiers.BTCUSDT = [[0, 400_000, 0]]
max_leverage.BTCUSDT = 50
market = {{ queue_model = "{queue_model}" }}
""")
    pl.DataFrame({"account": ["long", "bidder"], "asset": ["USDT", "USDT"],
                  "balance": [1_500 * USDT, 10_000 * USDT], "margin_mode": ["single_asset"] * 2,
                  "fee_tier": [0, 0]}).write_parquet(out / "accounts.parquet")
    # 1 BTC long at 30,000: net +1,000 lots, so `market` opens short 1,000 lots at the
    # first mark (30,000), DESIGN.md's Conservation for a market-data replay.
    pl.DataFrame({"account": ["long"], "symbol": ["BTCUSDT"], "qty": [1_000],
                  "entry_price": [300_000]}).write_parquet(out / "positions.parquet")
    pl.DataFrame({"ts": [S + SEC, S + 30 * SEC], "symbol": ["BTCUSDT"] * 2,
                  "mark_price": [300_000, 286_000], "index_price": [300_000, 286_000]}
                 ).write_parquet(out / "marks.parquet")
    depth = [  # ts, seq, side, price, qty, snapshot
        (S + 2 * SEC, 1, "bid", 290_000, 300, True),
        (S + 2 * SEC, 2, "bid", 285_000, 500, True),
        (S + 2 * SEC, 3, "bid", 280_000, 2_000, True),
        (S + 2 * SEC, 4, "ask", 301_000, 5_000, True),
    ]
    pl.DataFrame([{"ts": r[0], "seq": r[1], "symbol": "BTCUSDT", "side": r[2], "price": r[3], "qty": r[4],
                   "snapshot": r[5]} for r in depth]).write_parquet(out / "depth.parquet")
    trades = [  # ts, seq, price, qty, aggressor
        (S + 10 * SEC, 1, 290_000, 300, "sell"),  # eats the 300 recorded lots ahead of bidder
        (S + 11 * SEC, 2, 290_000, 50, "sell"),  # reaches bidder's order: 50 lots filled
    ]
    pl.DataFrame([{"ts": r[0], "seq": r[1], "symbol": "BTCUSDT", "price": r[2], "qty": r[3], "aggressor": r[4]}
                  for r in trades]).write_parquet(out / "trades.parquet")
    pl.DataFrame({"ts": [S + 5 * SEC], "seq": [1], "account": ["bidder"], "symbol": ["BTCUSDT"], "action": ["new"],
                  "order_id": [1], "side": ["buy"], "type": ["limit"], "tif": ["gtc"], "price": [290_000],
                  "qty": [100], "reduce_only": [False]}).write_parquet(out / "orders.parquet")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("market")
    build(root / "ds")
    assert main(["validate", str(root / "ds")]) == 0
    assert main(["run", str(root / "ds"), "--out", str(root / "run")]) == 0
    return root / "run"


def test_recorded_trades_reach_our_queued_order(run):
    fills = pl.read_parquet(run / "fills.parquet").sort("seq")
    first = fills.row(0, named=True)
    # bidder joined behind 300 recorded lots at 29,000; the recorded sell of 300 used them
    # up; the next recorded sell of 50 reached it: the market (taker, order 0) sold 50.
    assert (first["kind"], first["taker_account"], first["taker_order_id"], first["maker_account"],
            first["maker_order_id"], first["price"], first["qty"], first["aggressor"]) == \
        ("trade", "market", 0, "bidder", 1, 290_000, 50, "sell")
    # 50 lots x 29,000 USDT/BTC: 1,450 USDT; the market pays no fee, the maker fee is 0.
    assert first["notional"] == 290_000 * 50 * K == 1_450 * USDT
    assert (first["taker_fee"], first["maker_fee"]) == (0, 0)


def test_liquidation_walks_the_recorded_bids(run):
    fills = pl.read_parquet(run / "fills.parquet").sort("seq")
    liq = fills.filter(pl.col("kind") == "liquidation")
    # Mark 28,600: long's equity 1,500 - 1,400 = 100 USDT <= maintenance 0.4% x 28,600 =
    # 114.4 USDT: taken over at bankruptcy 28,500 (30,000 - 1,500 / 1 BTC). The fund sells
    # 1,000 lots into the bids within the 5% band (down to 27,170): bidder's 50 left at
    # 29,000 first (no recorded lots ahead of it any more), then the 300 recorded there (the
    # recording never showed them go: depth is the truth of sizes, trades only move queues),
    # 500 at 28,500 and the last 150 at 28,000.
    assert liq.select("price", "qty", "maker_account").rows() == [
        (290_000, 50, "bidder"), (290_000, 300, "market"), (285_000, 500, "market"),
        (280_000, 150, "market")]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["replay"] == "market_data"
    # The fund: surplus (29,000 - 28,500) x 0.35 BTC = 175 USDT, nothing at 28,500,
    # shortfall (28,500 - 28,000) x 0.15 BTC = 75 USDT: it closes at +100 USDT.
    assert summary["liquidation"]["fund_close"] == 100 * USDT
    conservation = summary["conservation"]["USDT"]
    assert conservation["gap_at_last_marks"] == conservation["gap_entry_cost"] == 0


def test_positions_net_to_zero_with_the_market_as_counterparty(run):
    positions = pl.read_parquet(run / "positions_final.parquet")
    assert positions.group_by("symbol").agg(pl.col("qty").sum()).rows() == [("BTCUSDT", 0)]
    held = dict(positions.select("account", "qty").rows())
    # market: opened -1,000, sold 50 to bidder (-1,050), bought 950 from the fund: -100;
    # bidder +100 (50 from the recorded trade, 50 from the fund).
    assert held == {"market": -100, "bidder": 100}


def test_book_final_shows_what_is_left(run):
    book = pl.read_parquet(run / "book_final.parquet")
    # 28,000: 2,000 recorded - 150 taken; the ask untouched; nothing of ours rests.
    assert book.select("side", "price", "qty", "order_count").rows() == [
        ("buy", 280_000, 1_850, 1), ("sell", 301_000, 5_000, 1)]


def test_same_inputs_same_bytes(run, tmp_path):
    build(tmp_path / "ds")
    assert main(["run", str(tmp_path / "ds"), "--out", str(tmp_path / "run")]) == 0
    a = json.loads((run / "summary.json").read_text())["tables"]
    b = json.loads((tmp_path / "run" / "summary.json").read_text())["tables"]
    assert a == b
