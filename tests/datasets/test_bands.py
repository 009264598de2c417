"""`backtest generate depth DATASET --from-bands` (datasets/bands.py): a coarse book from
depth bands. Hand-built bands for each rule of the spread, the vectorised query against the
one-band reference, the command's in-place rewrite and its refusals, and the real crash
day's bookDepth (../shared/data, imported into a tmp folder) against PROVENANCE.md."""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import polars as pl
import pytest

from backtest.cli import main
from datasets import bands
from datasets.generate import MANIFEST
from datasets.importers import binance
from datasets.validate import check_dataset

START_NS = 1_722_470_400_000_000_000  # 2024-08-01T00:00:00Z
SECOND_NS = 1_000_000_000
K = 10_000  # BTCUSDT minor units per tick x lot
CRASH = Path("/work/shared/data/binance-futures-crash-2025-10-10")
needs_data = pytest.mark.skipif(not CRASH.is_dir(), reason="shared data not present")


def _bands(rows: list[tuple[int, int, int]], *, notional_per_lot: int | None = None) -> pl.DataFrame:
    """depth_bands rows from (ts offset in s, percentage, cumulative depth in lots)."""
    out = []
    for seq, (sec, pct, depth) in enumerate(rows, start=1):
        notional = depth * (notional_per_lot or 0)
        out.append((START_NS + sec * SECOND_NS, seq, "BTCUSDT", pct, depth, notional))
    return pl.DataFrame(out, orient="row", schema={"ts": pl.Int64, "seq": pl.Int64, "symbol": pl.String,
                                                   "percentage": pl.Int64, "depth": pl.Int64,
                                                   "notional": pl.Int64})


def _marks(rows: list[tuple[int, int]]) -> pl.DataFrame:
    return pl.DataFrame([(START_NS + sec * SECOND_NS, "BTCUSDT", m) for sec, m in rows], orient="row",
                        schema={"ts": pl.Int64, "symbol": pl.String, "mark_price": pl.Int64})


def _build(band_rows, mark_rows, levels: int = 4):
    return bands.build_depth(_bands(band_rows), _marks(mark_rows), levels=levels,
                             notional_factor={"BTCUSDT": None})


def _levels(book, side: str) -> list[tuple[int, int]]:
    return book.depth.filter(pl.col("side") == side).select("price", "qty").rows()


# -- the spread, rule by rule ----------------------------------------------------------------

def test_band_one_sits_strictly_between_the_mid_and_one_percent_with_the_remainder_nearest():
    # mid 1,000 ticks: band +1 is 1001..1010 (10 ticks), 4 runs ending at 1003, 1005, 1008,
    # 1010; 10 lots = 3, 3, 2, 2 (remainder 2 to the two nearest). Band -1 mirrors: 999..990.
    book = _build([(0, -1, 10), (0, 1, 10)], [(0, 1_000)])
    assert _levels(book, "ask") == [(1003, 3), (1005, 3), (1008, 2), (1010, 2)]
    assert _levels(book, "bid") == [(997, 3), (995, 3), (992, 2), (990, 2)]


def test_each_band_holds_its_own_lots_the_difference_of_the_cumulative_depths():
    # band +2 covers 1011..1020: 25 - 10 = 15 lots over 4 levels = 4, 4, 4, 3.
    book = _build([(0, 1, 10), (0, 2, 25)], [(0, 1_000)])
    assert _levels(book, "ask")[4:] == [(1013, 4), (1015, 4), (1018, 4), (1020, 3)]
    assert sum(q for p, q in _levels(book, "ask") if 100 * p <= 101 * 1_000) == 10
    assert sum(q for _, q in _levels(book, "ask")) == 25


def test_a_non_monotone_recording_gives_the_band_zero_lots_and_is_counted():
    book = _build([(0, 1, 10), (0, 2, 7), (0, 3, 12)], [(0, 1_000)])
    asks = _levels(book, "ask")
    assert not [p for p, _ in asks if 1010 < p <= 1020]  # band 2: 7 - 10 < 0 -> nothing
    assert sum(q for p, q in asks if p > 1020) == 5  # band 3: 12 - 7
    assert book.stats["BTCUSDT"]["clipped"] == 1


def test_fewer_lots_than_levels_go_one_each_to_the_levels_nearest_the_mid():
    book = _build([(0, 1, 2)], [(0, 1_000)])
    assert _levels(book, "ask") == [(1003, 1), (1005, 1)]


def test_a_band_narrower_than_n_ticks_uses_every_tick_once():
    # mid 300: band +1 is 301..303 (3 ticks) for 5 levels asked: 3 levels, 9 lots = 3 each.
    book = _build([(0, 1, 9), (0, -1, 9)], [(0, 300)], levels=5)
    assert _levels(book, "ask") == [(301, 3), (302, 3), (303, 3)]
    assert _levels(book, "bid") == [(299, 3), (298, 3), (297, 3)]
    assert book.stats["BTCUSDT"]["narrow"] == 2


def test_a_band_with_no_tick_inside_drops_its_lots_and_says_so():
    # mid 50: 1% is half a tick; band +1 (50 < p <= 50.5) holds no tick, band +2 holds 51.
    book = _build([(0, 1, 4), (0, 2, 6)], [(0, 50)])
    assert _levels(book, "ask") == [(51, 2)]
    s = book.stats["BTCUSDT"]
    assert (s["no_tick"], s["dropped_lots"]) == (1, 4)


def test_a_missing_band_is_covered_by_the_next_one_from_the_last_edge_present():
    # band +2 missing: band +3 covers 1%..3% (1011..1030) with 30 - 10 = 20 lots.
    book = _build([(0, 1, 10), (0, 3, 30)], [(0, 1_000)], levels=2)
    assert _levels(book, "ask") == [(1005, 5), (1010, 5), (1020, 10), (1030, 10)]


@pytest.mark.parametrize("band_sec, marks, mid", [
    pytest.param(10, [(0, 1_000), (10, 2_000), (20, 3_000)], 2_000, id="a mark at the band's ts is used"),
    pytest.param(15, [(0, 1_000), (10, 2_000), (20, 3_000)], 2_000, id="the last mark before the band"),
    pytest.param(0, [(5, 1_000), (10, 2_000)], 1_000, id="before every mark: the first mark"),
])
def test_the_mid_is_the_last_mark_at_or_before_the_band_or_else_the_first(band_sec, marks, mid):
    book = _build([(band_sec, 1, 4)], marks, levels=1)
    assert _levels(book, "ask") == [(mid * 101 // 100, 4)]
    assert book.stats["BTCUSDT"]["mid_first"] == (1 if band_sec == 0 else 0)


def test_every_band_timestamp_is_one_snapshot_with_its_own_increasing_seq_bids_then_asks():
    book = _build([(0, -1, 8), (0, 1, 8), (30, -2, 8), (30, 1, 4)], [(0, 1_000)], levels=2)
    d = book.depth
    assert d["snapshot"].all() and d["seq"].to_list() == list(range(1, d.height + 1))
    first = d.filter(pl.col("ts") == START_NS)
    assert first.select("side", "price").rows() == [("bid", 995), ("bid", 990), ("ask", 1005), ("ask", 1010)]
    assert d["ts"].unique().sort().to_list() == [START_NS, START_NS + 30 * SECOND_NS]


@pytest.mark.parametrize("seed", range(6))
def test_the_vectorised_spread_equals_the_one_band_reference(seed):
    rng = random.Random(seed)
    levels = rng.choice([1, 3, 7, 20])
    band_rows, mark_rows = [], []
    for snap in range(8):
        mid = rng.choice([rng.randrange(40, 400), rng.randrange(10_000, 2_000_000)])
        mark_rows.append((snap * 30, mid))
        for sign in (-1, 1):
            depth = 0
            for k in range(1, 6):
                if rng.random() < 0.15:
                    continue  # a missing band
                depth = max(0, depth + rng.randrange(-5, 200))
                band_rows.append((snap * 30, sign * k, depth))
    book = _build(band_rows, mark_rows, levels=levels)
    expected = []
    for snap in range(8):
        mid = mark_rows[snap][1]
        for sign, side in ((-1, "bid"), (1, "ask")):
            inner, before = 0, 0
            for sec, pct, depth in band_rows:
                if sec != snap * 30 or pct * sign < 0:
                    continue
                prices = bands.band_prices(mid, inner, abs(pct), levels, ask=sign > 0)
                lots = bands.split_lots(max(0, depth - before), len(prices)) if prices else []
                expected += [(START_NS + sec * SECOND_NS, side, p, q) for p, q in zip(prices, lots) if q]
                inner, before = abs(pct), depth
    got = book.depth.select("ts", "side", "price", "qty").rows()
    assert sorted(got) == sorted(expected)
    for ts, side, price, _ in got:  # never at or through the mid
        mid = mark_rows[(ts - START_NS) // SECOND_NS // 30][1]
        assert price < mid if side == "bid" else price > mid


def test_the_notional_check_finds_a_recording_averaging_where_the_spread_puts_it():
    # 1 lot x K x 1005 ticks: the band's recorded average is 1005 ticks, inside 1001..1010.
    frame = _bands([(0, 1, 10)], notional_per_lot=1_005 * K)
    book = bands.build_depth(frame, _marks([(0, 1_000)]), levels=4, notional_factor={"BTCUSDT": K})
    n = book.stats["BTCUSDT"]["notional"]
    # spread's average (3x1003 + 3x1005 + 2x1008 + 2x1010) / 10 = 1006.0: 0.1% of the mid = 10 bp
    assert n["bands"] == 1 and n["outside"] == 0 and n["max_bp"] == pytest.approx(10.0)


# -- the command -------------------------------------------------------------------------------

def _dataset(folder: Path, band_rows, mark_rows) -> Path:
    folder.mkdir(parents=True)
    (folder / "dataset.toml").write_text(MANIFEST.format(
        name="hand-made", start_ns=START_NS, end_ns=START_NS + 3_600 * SECOND_NS,
        provenance="tests/datasets/test_bands.py"))
    _bands(band_rows, notional_per_lot=1_000 * K).write_parquet(folder / "depth_bands.parquet")
    marks = _marks(mark_rows).with_columns(pl.col("mark_price").alias("index_price"))
    marks.write_parquet(folder / "marks.parquet")
    (folder / "other.txt").write_text("kept")
    return folder


BAND_ROWS = [(0, -2, 30), (0, -1, 10), (0, 1, 12), (0, 2, 40), (30, -1, 5), (30, 1, 6)]


def test_the_command_writes_a_valid_depth_table_in_place_and_keeps_every_other_file(tmp_path, capsys):
    ds = _dataset(tmp_path / "ds", BAND_ROWS, [(0, 1_000)])
    assert main(["generate", "depth", str(ds), "--from-bands", "--levels-per-band", "3"]) == 0
    out = capsys.readouterr().out
    assert "BTCUSDT: 2 snapshots (one per bookDepth timestamp) from 6 bands" in out
    assert (ds / "other.txt").read_text() == "kept" and (ds / "depth_bands.parquet").is_file()
    assert check_dataset(ds).faults == []
    first = (ds / "depth.parquet").read_bytes()
    assert main(["generate", "depth", str(ds), "--from-bands", "--levels-per-band", "3"]) == 0
    assert "replacing the one this command wrote before" in capsys.readouterr().out
    assert (ds / "depth.parquet").read_bytes() == first  # same inputs, same bytes
    assert not list(tmp_path.glob(".ds.partial-*"))


def test_a_recorded_depth_table_is_never_replaced(tmp_path, capsys):
    ds = _dataset(tmp_path / "ds", BAND_ROWS, [(0, 1_000)])
    (ds / "depth.parquet").write_bytes(b"a recording's depth")
    assert main(["generate", "depth", str(ds), "--from-bands"]) == 2
    assert "did not write" in capsys.readouterr().err
    assert (ds / "depth.parquet").read_bytes() == b"a recording's depth"


@pytest.mark.parametrize("rows, fault", [
    pytest.param([(0, 7, 10)], "row 1, column percentage: must be -5..-1 (bids) or 1..5 (asks)",
                 id="a percentage outside 1..5"),
    pytest.param([(0, 1, -3)], "row 1, column depth: must be >= 0", id="negative depth"),
    pytest.param([(0, 1, 3), (0, 1, 4)], "row 2, column percentage: duplicate", id="a band twice in a snapshot"),
    pytest.param([(30, 1, 3), (0, 1, 4)], "row 2, column ts: goes backwards", id="time going backwards"),
])
def test_bad_bands_are_named_by_file_row_and_column_and_nothing_is_written(tmp_path, capsys, rows, fault):
    ds = _dataset(tmp_path / "ds", rows, [(0, 1_000)])
    assert main(["generate", "depth", str(ds), "--from-bands"]) == 2
    err = capsys.readouterr().err
    assert "depth_bands.parquet" in err and fault in err
    assert not (ds / "depth.parquet").exists() and not list(tmp_path.glob(".ds.partial-*"))


def test_bands_without_marks_are_refused_saying_where_the_mid_comes_from(tmp_path, capsys):
    ds = _dataset(tmp_path / "ds", BAND_ROWS, [(0, 1_000)])
    (ds / "marks.parquet").unlink()
    assert main(["generate", "depth", str(ds), "--from-bands"]) == 2
    assert "marks.parquet" in capsys.readouterr().err


def test_the_flag_is_required_and_levels_must_be_positive(tmp_path, capsys):
    ds = _dataset(tmp_path / "ds", BAND_ROWS, [(0, 1_000)])
    with pytest.raises(SystemExit):
        main(["generate", "depth", str(ds)])
    assert main(["generate", "depth", str(ds), "--from-bands", "--levels-per-band", "0"]) == 2
    assert "--levels-per-band" in capsys.readouterr().err


# -- the real crash day --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def crash_book(tmp_path_factory) -> tuple[Path, list[str]]:
    out = tmp_path_factory.mktemp("crash") / "ds"
    parser = argparse.ArgumentParser()
    binance.add_arguments(parser)
    binance.run(CRASH, out, parser.parse_args(["--klines", "mark"]), lambda done, total: None)
    parser = argparse.ArgumentParser()
    bands.add_arguments(parser)
    lines = bands.run(out, parser.parse_args(["--from-bands"]), lambda done, total: None)
    return out, lines


@needs_data
def test_crash_day_bands_become_2879_snapshots_that_validate(crash_book):
    folder, lines = crash_book
    depth = pl.read_parquet(folder / "depth.parquet")
    # PROVENANCE.md counts 2,880 distinct timestamps as text: line 25,883 writes one of them
    # with a leading space (" 2025-10-10 21:34:32"); as times there are 2,879, one per row
    # of each band.
    assert depth["ts"].n_unique() == 2_879
    assert depth.height == 558_956 and depth["snapshot"].all()
    assert depth["seq"].to_list() == list(range(1, depth.height + 1))
    assert lines[0] == ("BTCUSDT: 2,879 snapshots (one per bookDepth timestamp) from 28,790 bands, "
                        "up to 20 levels per band -> 558,956 depth rows, 37,002,134,209 lots")
    assert any("crossed bands: 969 snapshots" in line for line in lines)
    assert check_dataset(folder).faults == []


@needs_data
def test_crash_day_cumulative_lots_within_each_percent_reproduce_every_band(crash_book):
    folder, _ = crash_book
    depth = pl.read_parquet(folder / "depth.parquet")
    marks = (pl.read_parquet(folder / "marks.parquet").filter(pl.col("symbol") == "BTCUSDT")
             .select("ts", pl.col("mark_price").alias("mid")))
    bands_ = pl.read_parquet(folder / "depth_bands.parquet").sort("ts").join_asof(marks, on="ts")
    rows = depth.join(bands_.select("ts", "mid").unique(), on="ts")
    within = []
    for k in range(1, 6):
        ask = (pl.col("side") == "ask") & (100 * pl.col("price") <= (100 + k) * pl.col("mid"))
        bid = (pl.col("side") == "bid") & (100 * pl.col("price") >= (100 - k) * pl.col("mid"))
        within.append(rows.filter(ask).group_by("ts").agg(pl.col("qty").sum().alias("got"))
                      .with_columns(pl.lit(k).alias("percentage")))
        within.append(rows.filter(bid).group_by("ts").agg(pl.col("qty").sum().alias("got"))
                      .with_columns(pl.lit(-k).alias("percentage")))
    got = pl.concat(within).with_columns(pl.col("percentage").cast(pl.Int64))
    cmp = bands_.join(got, on=["ts", "percentage"], how="left").with_columns(pl.col("got").fill_null(0))
    assert cmp.filter(pl.col("got") != pl.col("depth")).height == 0  # all 28,790 bands, exactly
    # PROVENANCE.md fact 1: the thinnest +1% ask band, 521.714 BTC at 21:22:31
    thin = cmp.filter((pl.col("ts") == 1760131351 * SECOND_NS) & (pl.col("percentage") == 1)).row(0, named=True)
    assert thin["got"] == thin["depth"] == 521_714
    asks = rows.filter((pl.col("ts") == 1760131351 * SECOND_NS) & (pl.col("side") == "ask"))
    assert asks["price"].min() > thin["mid"]  # never at or through the mid
