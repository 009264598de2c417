"""`backtest generate depth-day OUT` (datasets/depth_day.py): a synthetic day of depth at
venue message rates. Short spans: same seed same bytes, a valid dataset, the book model's
promises (one-tick spread at the walk's bid after every message, nothing crossed), the row
counts the model implies, trades at the touch, and bad options refused."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from backtest.cli import main
from datasets import depth_day
from datasets.manifest import load_manifest
from datasets.market_stream import iter_market_batches
from datasets.validate import check_dataset
from matching.market import MarketMatcher
from matching.types import BUY, SELL


def _generate(out: Path, *args: str) -> list[str]:
    parser = argparse.ArgumentParser()
    depth_day.add_arguments(parser)
    return depth_day.run(out, parser.parse_args(list(args)), lambda done, total: None)


@pytest.fixture(scope="module")
def day(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dd") / "day"
    _generate(out, "--hours", "0.02", "--seed", "3")  # 72 s: 720 messages
    return out


def test_same_seed_same_bytes_and_another_seed_another_day(day, tmp_path):
    _generate(tmp_path / "again", "--hours", "0.02", "--seed", "3")
    for name in ("dataset.toml", "depth.parquet", "trades.parquet", "marks.parquet"):
        assert (tmp_path / "again" / name).read_bytes() == (day / name).read_bytes(), name
    _generate(tmp_path / "other", "--hours", "0.02", "--seed", "4")
    assert (tmp_path / "other" / "depth.parquet").read_bytes() != (day / "depth.parquet").read_bytes()


def test_the_day_is_a_valid_binance_btcusdt_dataset(day):
    assert check_dataset(day).faults == []
    instrument = load_manifest(day).instruments["BTCUSDT"]
    assert (str(instrument.tick_size), str(instrument.lot_size)) == ("0.1", "0.001")


def test_rows_are_the_snapshot_then_per_message_the_touch_move_and_the_random_updates(day):
    bids = depth_day.walk(3, 720)
    moved = np.abs(np.diff(bids))
    depth = pl.read_parquet(day / "depth.parquet")
    snap = depth.filter(pl.col("snapshot"))
    assert snap.height == 2_000 and snap["ts"].n_unique() == 1
    assert depth.height == 2_000 + int(np.where(moved > 0, 2 * moved + 1, 0).sum()) + 8 * 719
    assert depth["seq"].to_list() == list(range(1, depth.height + 1))
    assert depth["ts"].n_unique() == 720  # one ts per message, 100 ms apart
    assert pl.read_parquet(day / "trades.parquet").height == 40 * 72
    assert pl.read_parquet(day / "marks.parquet").height == 72


def test_after_every_message_the_book_is_one_tick_wide_at_the_walks_bid(day):
    """Replayed through the market-data book: best bid = the walk, best ask = bid + 1."""
    bids = depth_day.walk(3, 720)
    matcher = MarketMatcher(load_manifest(day).matcher_rules())
    book = matcher.books["BTCUSDT"]
    message, last_ts, tops = -1, None, []
    for ts_, _r, _s, sym_, side_, price_, qty_, snap_, end_ in iter_market_batches(day / "depth.parquet", None):
        for ts, sym, side, price, qty, snap, end in zip(ts_, sym_, side_, price_, qty_, snap_, end_):
            if ts != last_ts and last_ts is not None:
                tops.append((book.best(BUY)[0], book.best(SELL)[0]))
            last_ts = ts
            matcher.depth(ts, sym, side, price, qty, snap)
            if end:
                matcher.end_snapshot(ts, sym)
    tops.append((book.best(BUY)[0], book.best(SELL)[0]))
    assert tops == [(int(b), int(b) + 1) for b in bids]


def test_trades_print_at_the_touch_buys_at_the_ask_and_sells_at_the_bid(day):
    bids = depth_day.walk(3, 720)
    trades = pl.read_parquet(day / "trades.parquet")
    msg = (trades["ts"].to_numpy() - depth_day.START_NS) // 100_000_000
    expected = np.where(trades["aggressor"].to_numpy() == "buy", bids[msg] + 1, bids[msg])
    assert (trades["price"].to_numpy() == expected).all()
    assert trades["trade_id"].to_list() == list(range(1, trades.height + 1))


@pytest.mark.parametrize("args, option", [
    pytest.param(["--hours", "0"], "--hours", id="an empty span"),
    pytest.param(["--hours", "soon"], "--hours", id="hours not a number"),
    pytest.param(["--hours", "1", "--rate", "0"], "--rate", id="no messages a second"),
    pytest.param(["--hours", "1", "--levels", "-1"], "--levels", id="negative levels"),
])
def test_bad_options_exit_2_and_write_nothing(tmp_path, capsys, args, option):
    assert main(["generate", "depth-day", str(tmp_path / "out"), *args]) == 2
    assert option in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.partial-*"))
