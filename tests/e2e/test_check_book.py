"""`backtest check-book DATASET` (backtest/check_book.py): depth replayed alone through
matching.market.MarketMatcher against the recorded bookTicker (by update id and by time) or
each snapshot's own top. Hand-built recordings with every outcome worked out, then the real
websocket samples and the crash day's band book of ../shared/data (slow)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from backtest.check_book import run_check_book
from backtest.cli import main
from datasets import bands, depth_day
from datasets.generate import MANIFEST
from datasets.importers import binance

T0 = 1_722_470_400_000_000_000  # 2024-08-01T00:00:00Z
MS = 1_000_000
DATA = Path("/work/shared/data")
WS = DATA / "binance-usdm-ws-hftbacktest"
CRASH = DATA / "binance-futures-crash-2025-10-10"
needs_data = pytest.mark.skipif(not WS.is_dir() or not CRASH.is_dir(), reason="shared data not present")


def _write(folder: Path, table: str, rows: list[tuple]) -> None:
    schema = binance.SCHEMAS[table]
    columns = list(zip(*rows)) if rows else [[] for _ in schema]
    pq.write_table(pa.table([pa.array(c, type=f.type) for c, f in zip(columns, schema)], schema=schema),
                   folder / f"{table}.parquet")


def _dataset(folder: Path, depth: list[tuple], tickers: list[tuple] | None = None,
             messages: list[tuple] | None = None) -> Path:
    """depth rows (ms, seq, side, price, qty, snapshot); tickers (ms, seq, u, bid, bid qty,
    ask, ask qty); messages (ms, seq_first, seq_last, kind, U, u)."""
    folder.mkdir(parents=True)
    (folder / "dataset.toml").write_text(MANIFEST.format(name="hand-made", start_ns=T0, end_ns=T0 + 60_000 * MS,
                                                         provenance="tests/e2e/test_check_book.py"))
    _write(folder, "depth", [(T0 + ms * MS, seq, "BTCUSDT", side, p, q, snap)
                             for ms, seq, side, p, q, snap in depth])
    if tickers is not None:
        _write(folder, "recorded_book_ticker", [(T0 + ms * MS, seq, "BTCUSDT", u, bp, bq, ap, aq)
                                                for ms, seq, u, bp, bq, ap, aq in tickers])
    if messages is not None:
        _write(folder, "depth_messages", [(T0 + ms * MS, first, last, "BTCUSDT", kind, U, u, None, None)
                                          for ms, first, last, kind, U, u in messages])
    return folder


# A snapshot (update 10) at 1 ms, a diff (updates 11..12) at 3 ms removing the ask at 101
# and growing the bid, a diff (13..15) at 5 ms putting 2 lots back at 101.
DEPTH = [(1, 1, "bid", 100, 5, True), (1, 2, "bid", 99, 3, True), (1, 3, "ask", 101, 4, True),
         (1, 4, "ask", 102, 6, True),
         (3, 5, "ask", 101, 0, False), (3, 6, "bid", 100, 7, False),
         (5, 7, "ask", 101, 2, False)]
MESSAGES = [(1, 1, 4, "snapshot", None, 10), (3, 5, 6, "diff", 11, 12), (5, 7, 7, "diff", 13, 15)]
TICKERS = [
    (0, 1, 9, 100, 5, 101, 4),    # before the first snapshot: counted apart, not compared
    (1, 2, 10, 100, 5, 101, 4),   # = snapshot u 10: (a) match; (b) match, same update
    (2, 3, 11, 100, 5, 102, 6),   # update 11 shown before its diff (stamped 3 ms): (b) mismatch, ahead
    (3, 4, 12, 100, 7, 102, 6),   # = diff u 12: (a) match; (b) match
    (6, 5, 14, 100, 7, 101, 9),   # u 14 < applied 15: (b) mismatch (sizes only), behind
    (6, 6, 15, 100, 7, 101, 2),   # = diff u 15: (a) match; (b) match
]


def test_by_update_id_every_coinciding_ticker_matches_and_by_time_the_late_diff_shows(tmp_path):
    ds = _dataset(tmp_path / "ds", DEPTH, TICKERS, MESSAGES)
    s = run_check_book(ds)["symbols"]["BTCUSDT"]
    a, b = s["by_update_id"], s["by_time"]
    assert (a["compared"], a["matched"], a["first_mismatches"]) == (3, 3, [])
    assert (b["compared"], b["matched"], b["price_matched"], b["before_book"]) == (5, 3, 4, 1)
    assert b["by_update_id_relation"] == {
        "same": {"compared": 3, "matched": 3, "rate": 1.0},
        "ticker_ahead": {"compared": 1, "matched": 0, "rate": 0.0},
        "ticker_behind": {"compared": 1, "matched": 0, "rate": 0.0}}
    first = b["first_mismatches"][0]
    assert (first["update_id"], first["depth_update_id"]) == (11, 10)
    assert (first["recorded"], first["replayed"]) == ([100, 5, 102, 6], [100, 5, 101, 4])
    # inside a diff: u 11 (its diff stamped 1 ms later), u 12 (same ms), u 14 and u 15 (their
    # diff stamped 1 ms before the ticker)
    assert b["depth_lag_ms"] == {"inside_a_diff": 4, "stamped_later": 1, "stamped_earlier": 2,
                                 "median": -0.5, "p90": 1.0, "max": 1.0}


def test_a_ticker_that_disagrees_at_its_own_update_id_is_listed_as_a_replay_error(tmp_path):
    tickers = [t if t[2] != 12 else (3, 4, 12, 100, 8, 102, 6) for t in TICKERS]
    ds = _dataset(tmp_path / "ds", DEPTH, tickers, MESSAGES)
    a = run_check_book(ds)["symbols"]["BTCUSDT"]["by_update_id"]
    assert (a["compared"], a["matched"], a["price_matched"]) == (3, 2, 3)
    assert a["first_mismatches"] == [{"ts": T0 + 3 * MS, "update_id": 12, "recorded": [100, 8, 102, 6],
                                      "replayed": [100, 7, 102, 6]}]


def test_without_depth_messages_only_the_time_aligned_check_runs_and_says_why(tmp_path):
    ds = _dataset(tmp_path / "ds", DEPTH, TICKERS)
    s = run_check_book(ds)["symbols"]["BTCUSDT"]
    assert s["by_update_id"] is None and "no depth_messages" in s["note"]
    assert (s["by_time"]["compared"], s["by_time"]["matched"]) == (5, 3)


def test_without_book_ticker_each_snapshot_is_its_own_reference_and_replaces_the_book(tmp_path):
    # The second snapshot names neither the bid at 100 nor the ask at 101: if they stayed,
    # the replayed top would be 100 / 101, not the snapshot's own 98 / 103.
    depth = [(1, 1, "bid", 100, 5, True), (1, 2, "ask", 101, 4, True),
             (2, 3, "bid", 98, 2, True), (2, 4, "bid", 97, 0, True), (2, 5, "ask", 103, 1, True)]
    ds = _dataset(tmp_path / "ds", depth)
    report = run_check_book(ds)
    s = report["symbols"]["BTCUSDT"]
    assert report["reference"] == "snapshots" and s["note"] == "no bookTicker: top of book per snapshot only"
    assert (s["snapshots"]["compared"], s["snapshots"]["matched"]) == (2, 2)


def test_the_command_prints_the_rates_and_the_replay_speed_and_json_on_request(tmp_path, capsys):
    ds = _dataset(tmp_path / "ds", DEPTH, TICKERS, MESSAGES)
    assert main(["check-book", str(ds)]) == 0
    out = capsys.readouterr().out
    assert "BTCUSDT (a) bookTicker where update ids coincide, price and size: 3/3 (100.00%)" in out
    assert "BTCUSDT (b) every bookTicker at its own time, price and size: 3/5 (60.00%)" in out
    assert "depth rows/s with the comparisons" in out
    assert main(["check-book", str(ds), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["depth_rows"] == 7 and report["symbols"]["BTCUSDT"]["by_update_id"]["rate"] == 1.0
    assert main(["check-book", str(ds), "--bench", "2"]) == 0
    assert "depth rows/s:" in capsys.readouterr().out


@pytest.mark.parametrize("setup, fault", [
    pytest.param(lambda ds: (ds / "depth.parquet").unlink(), "depth.parquet:\n  file not found",
                 id="no depth table"),
    pytest.param(lambda ds: _write(ds, "depth", [(T0, 1, "BTCUSDT", "bid", 100, -5, True)]),
                 "row 1, column qty: must be >= 0", id="a negative level size"),
    pytest.param(lambda ds: _write(ds, "recorded_book_ticker", [(T0, 1, "ETHUSDT", 1, 100, 1, 101, 1)]),
                 "row 1, column symbol: not in the manifest", id="a ticker of an unknown symbol"),
])
def test_bad_input_exits_2_naming_file_row_and_column(tmp_path, capsys, setup, fault):
    ds = _dataset(tmp_path / "ds", DEPTH, TICKERS, MESSAGES)
    setup(ds)
    assert main(["check-book", str(ds)]) == 2
    assert fault in capsys.readouterr().err


# -- the real recordings and the crash day ----------------------------------------------------

def _import(src: Path, out: Path, *args: str) -> Path:
    parser = argparse.ArgumentParser()
    binance.add_arguments(parser)
    binance.run(src, out, parser.parse_args(list(args)), lambda done, total: None)
    return out


@needs_data
@pytest.mark.slow
@pytest.mark.parametrize("name, symbol, by_id, by_time, prices, same, lag_median", [
    pytest.param("btcusdt_20240808.gz", "BTCUSDT", 629, (389, 66_056, 33), 41_186, 233, 27.0,
                 id="btcusdt: 629/629 by id, 389/66,056 by time"),
    pytest.param("ethusdt_20240808.gz", "ETHUSDT", 551, (256, 53_960, 32), 32_441, 135, 26.0,
                 id="ethusdt: 551/551 by id, 256/53,960 by time"),
])
def test_websocket_samples_match_bookticker_wherever_update_ids_coincide(
        tmp_path, capsys, name, symbol, by_id, by_time, prices, same, lag_median):
    ds = _import(WS / name, tmp_path / "ds")
    assert main(["check-book", str(ds), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    s = report["symbols"][symbol]
    a, b = s["by_update_id"], s["by_time"]
    assert (a["compared"], a["matched"]) == (by_id, by_id)  # PROVENANCE.md: 629/629, 551/551
    # By time the depth stream lags: a diff aggregates updates and is stamped after them,
    # so a ticker usually shows an update its diff delivers ~27 ms later. Where the ticker's
    # update id is the last one applied, the books agree every time.
    assert (b["matched"], b["compared"], b["before_book"]) == by_time
    assert b["price_matched"] == prices
    assert b["by_update_id_relation"]["same"] == {"compared": same, "matched": same, "rate": 1.0}
    assert b["by_update_id_relation"]["ticker_behind"]["compared"] == 0
    lag = b["depth_lag_ms"]
    assert lag["median"] == lag_median and lag["stamped_earlier"] == 0
    assert report["check_rows_per_s"] > 0
    print(f"\n{name}: check pass {report['check_rows_per_s']:,} depth rows/s")


@needs_data
@pytest.mark.slow
def test_the_crash_day_band_book_reproduces_every_snapshots_own_top(tmp_path, capsys):
    ds = _import(CRASH, tmp_path / "ds", "--klines", "mark")
    parser = argparse.ArgumentParser()
    bands.add_arguments(parser)
    bands.run(ds, parser.parse_args(["--from-bands"]), lambda done, total: None)
    assert main(["check-book", str(ds)]) == 0
    out = capsys.readouterr().out
    assert "BTCUSDT: no bookTicker: top of book per snapshot only" in out
    assert "BTCUSDT snapshots whose own top (price and size) the replay reproduces: 2,879/2,879 (100.00%)" in out


def test_the_bench_replays_a_generated_depth_day_and_reports_rows_per_second(tmp_path):
    parser = argparse.ArgumentParser()
    depth_day.add_arguments(parser)
    depth_day.run(tmp_path / "day", parser.parse_args(["--hours", "0.01"]), lambda done, total: None)
    result = run_check_book(tmp_path / "day", bench_rounds=1)["bench"]
    assert result["depth_rows"] > 2_000 and result["depth_rows_per_s"] > 0
