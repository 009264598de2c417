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


def write(out, *, accounts, positions, marks, depth, trades, orders, rules: str = "") -> None:
    """A BTCUSDT market-data dataset: accounts (account, USDT balance), positions (account,
    qty, entry price), marks (ts, mark), depth (ts, seq, side, price, qty, snapshot), trades
    (ts, seq, price, qty, aggressor), orders (ts, seq, account, id, side, price, qty: GTC
    limits); `rules` is added to the manifest's [rules]."""
    out.mkdir(parents=True)
    (out / "dataset.toml").write_text(MANIFEST.format(
        name="market-data-scenario", start_ns=S, end_ns=S + 60 * SEC,
        provenance="tests/e2e/test_market_data_replay.py") + """\
fees = { maker = 0, taker = 50_000 }
margin_tiers.BTCUSDT = [[0, 400_000, 0]]
max_leverage.BTCUSDT = 50
""" + rules)
    pl.DataFrame([{"account": a, "asset": "USDT", "balance": b, "margin_mode": "single_asset", "fee_tier": 0}
                  for a, b in accounts]).write_parquet(out / "accounts.parquet")
    pl.DataFrame([{"account": a, "symbol": "BTCUSDT", "qty": q, "entry_price": p} for a, q, p in positions],
                 schema={"account": pl.String, "symbol": pl.String, "qty": pl.Int64, "entry_price": pl.Int64}
                 ).write_parquet(out / "positions.parquet")
    if marks:
        pl.DataFrame([{"ts": t, "symbol": "BTCUSDT", "mark_price": m, "index_price": m} for t, m in marks]
                     ).write_parquet(out / "marks.parquet")
    pl.DataFrame([{"ts": r[0], "seq": r[1], "symbol": "BTCUSDT", "side": r[2], "price": r[3], "qty": r[4],
                   "snapshot": r[5]} for r in depth]).write_parquet(out / "depth.parquet")
    if trades:
        pl.DataFrame([{"ts": r[0], "seq": r[1], "symbol": "BTCUSDT", "price": r[2], "qty": r[3],
                       "aggressor": r[4]} for r in trades]).write_parquet(out / "trades.parquet")
    if orders:
        pl.DataFrame([{"ts": r[0], "seq": r[1], "account": r[2], "symbol": "BTCUSDT", "action": "new",
                       "order_id": r[3], "side": r[4], "type": "limit", "tif": "gtc", "price": r[5],
                       "qty": r[6], "reduce_only": False} for r in orders]).write_parquet(out / "orders.parquet")


def build(out, queue_model: str = "front") -> None:
    write(out, accounts=[("long", 1_500 * USDT), ("bidder", 10_000 * USDT)],
          # 1 BTC long at 30,000: net +1,000 lots, so `market` opens short 1,000 lots at the
          # first mark (30,000), DESIGN.md's Conservation for a market-data replay.
          positions=[("long", 1_000, 300_000)],
          marks=[(S + SEC, 300_000), (S + 30 * SEC, 286_000)],
          depth=[(S + 2 * SEC, 1, "bid", 290_000, 300, True),
                 (S + 2 * SEC, 2, "bid", 285_000, 500, True),
                 (S + 2 * SEC, 3, "bid", 280_000, 2_000, True),
                 (S + 2 * SEC, 4, "ask", 301_000, 5_000, True)],
          trades=[(S + 10 * SEC, 1, 290_000, 300, "sell"),  # eats the 300 recorded lots ahead of bidder
                  (S + 11 * SEC, 2, 290_000, 50, "sell")],  # reaches bidder's order: 50 lots filled
          orders=[(S + 5 * SEC, 1, "bidder", 1, "buy", 290_000, 100)],
          rules=f'market = {{ queue_model = "{queue_model}" }}\n')


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


@pytest.mark.parametrize("snapshot", [True, False])
def test_a_liquidation_waits_for_the_whole_update(tmp_path, snapshot):
    """A depth update that fills our resting bid and so makes its account liquidatable:
    the takeover is swept into the book the whole update leaves, never into a level the
    same update removes (a snapshot that does not name it, or a later row of one venue
    message: rows sharing ts and seq)."""
    second = [(S + 4 * SEC, 3, "ask", 279_000, 5_000, True), (S + 4 * SEC, 4, "bid", 270_000, 5_000, True)]
    if not snapshot:  # one message: the ask moves down, the 278,000 bid goes, a bid at 270,000 comes
        second = [(S + 4 * SEC, 3, "ask", 279_000, 5_000, False), (S + 4 * SEC, 3, "bid", 278_000, 0, False),
                  (S + 4 * SEC, 3, "bid", 270_000, 5_000, False), (S + 4 * SEC, 3, "ask", 301_000, 0, False)]
    write(tmp_path / "ds", accounts=[("long", 200 * USDT), ("other", 100_000 * USDT)], positions=[],
          marks=[(S + SEC, 300_000), (S + 3 * SEC, 280_000)],
          depth=[(S + 2 * SEC, 1, "bid", 278_000, 5_000, True), (S + 2 * SEC, 2, "ask", 301_000, 5_000, True)]
          + second,
          trades=[], orders=[(S + 2 * SEC + 1, 1, "long", 7, "buy", 299_000, 100)],
          rules="insurance_fund = { opening = 100_000_000_000, floor = 0 }\n")
    assert main(["run", str(tmp_path / "ds"), "--out", str(tmp_path / "run")]) == 0
    fills = pl.read_parquet(tmp_path / "run" / "fills.parquet").sort("seq")
    # long's bid at 29,900 is filled by the recorded ask at 27,900 (at 29,900, its price;
    # maker fee 0); at mark 28,000 the 0.1 BTC long is 190 USDT down on a 200 USDT balance,
    # under maintenance: taken over at bankruptcy 29,900 - 200 / 0.1 = 27,900, and the fund
    # sells into the bids the update leaves: 27,000, not the gone 27,800.
    assert fills.select("kind", "price", "qty").rows() == [
        ("trade", 299_000, 100), ("takeover", 279_000, 100), ("liquidation", 270_000, 100)]


def test_bad_market_data_inputs_are_named_not_crashed(tmp_path, capsys):
    """An exchange account's position, and a market-data symbol whose positions do not net
    to zero with no mark to price the market's side at: `validate` and `run` both exit 2
    naming the file, row and column (before, `run` raised from deep inside)."""
    common = dict(accounts=[("a", 1_000 * USDT)], trades=[], orders=[],
                  depth=[(S + 2 * SEC, 1, "bid", 290_000, 300, True)])
    write(tmp_path / "exchange", positions=[("a", 5, 300_000), ("market", -5, 300_000)],
          marks=[(S + SEC, 300_000)], **common)
    write(tmp_path / "unpriced", positions=[("a", 5, 300_000)], marks=[], **common)
    for name, needles in (("exchange", ("row 2, column account:", "exchange account")),
                          ("unpriced", ("row 1, column", "no mark"))):
        for command in (["validate", str(tmp_path / name)],
                        ["run", str(tmp_path / name), "--out", str(tmp_path / f"run-{name}")]):
            assert main(command) == 2, command
            err = capsys.readouterr().err
            assert all(needle in err for needle in needles), (command, err)
        assert not (tmp_path / f"run-{name}").exists()


def test_recorded_trades_without_depth_are_not_replayed(tmp_path):
    """Trades alone are there to check against (an importer writes them): the replay is an
    order-flow replay, so positions must net to zero and nothing fills from the recording."""
    write(tmp_path / "ds", accounts=[("a", 1_000 * USDT), ("b", 1_000 * USDT)],
          positions=[("a", 5, 300_000), ("b", -5, 300_000)], marks=[(S + SEC, 300_000)], depth=[],
          trades=[(S + 3 * SEC, 1, 299_000, 7, "sell")], orders=[(S + 2 * SEC, 1, "a", 1, "buy", 299_000, 10)])
    (tmp_path / "ds" / "depth.parquet").unlink()
    assert main(["run", str(tmp_path / "ds"), "--out", str(tmp_path / "run")]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["replay"] == "order_flow" and summary["fills"] == 0


def test_the_report_says_it_is_a_market_data_replay(run):
    page = (run / "report.html").read_text()
    assert "<tr><th>replay</th><td>market data" in page
    assert "<tr><th>recorded depth and trade rows</th><td>6</td></tr>" in page  # 4 depth + 2 trades
    assert "<tr><th>queue model</th><td>front</td></tr>" in page
