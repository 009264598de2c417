"""`backtest import tardis`: hand-made files in Tardis' documented CSV layouts (there is no
real Tardis sample on this machine), each case a quirk of the format: snapshots and
reconnect snapshots, amount 0 removals, gzip, unknown sides, off-grid values, malformed rows
and timestamps going backwards, each fault named by file, row (the line in the file) and
column."""

from __future__ import annotations

import argparse
import gzip
import tracemalloc
from pathlib import Path

import polars as pl
import pytest

from backtest.cli import main
from datasets.importers import tardis
from datasets.manifest import load_manifest
from matching.errors import InputError

US = 1_722_470_400_000_000  # 2024-08-01T00:00:00Z in microseconds
EXCHANGE = "binance-futures"


def _write(folder: Path, data_type: str, rows: list[tuple], *, gz: bool = False,
           date: str = "2024-08-01", symbol: str = "BTCUSDT", header: str | None = None) -> Path:
    """A Tardis file `{exchange}_{data_type}_{date}_{symbol}.csv[.gz]`; each row is the
    fields after `exchange` (a str row is written as is, for malformed lines)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [header or ",".join(tardis.HEADERS[data_type])]
    for row in rows:
        lines.append(row if isinstance(row, str) else ",".join([EXCHANGE, *map(str, row)]))
    text = "\n".join(lines) + "\n"
    name = f"{EXCHANGE}_{data_type}_{date}_{symbol}.csv"
    if gz:
        path = folder / f"{name}.gz"
        path.write_bytes(gzip.compress(text.encode(), mtime=0))
    else:
        path = folder / name
        path.write_text(text)
    return path


def _book(t_us: int, snapshot: bool, side: str, price: str, amount: str, symbol: str = "BTCUSDT") -> tuple:
    return (symbol, t_us - 50, t_us, "true" if snapshot else "false", side, price, amount)


def _trade(t_us: int, trade_id: str, side: str, price: str, amount: str) -> tuple:
    return ("BTCUSDT", t_us - 50, t_us, trade_id, side, price, amount)


def _ticker(t_us: int, funding_us: int | str, rate: str, index: str, mark: str) -> tuple:
    return ("BTCUSDT", t_us - 50, t_us, funding_us, rate, "", "1000.5", "", index, mark)


def _options(**overrides) -> argparse.Namespace:
    """The command's options as argparse gives them (the CLI adds SRC and OUT itself)."""
    values = dict(tick_size="0.1", lot_size="0.001", symbol=None, instrument_kind="linear_perpetual",
                  settle="USDT", base=None, minor_unit="0.00000001", min_qty=1, name=None,
                  mark_rounding="half-even")
    values.update(overrides)
    return argparse.Namespace(**values)


def _import(src: Path, out: Path, **overrides) -> list[str]:
    return tardis.run(src, out, _options(**overrides), lambda done, total: None)


def _faults(src: Path, tmp_path: Path, **overrides) -> InputError:
    with pytest.raises(InputError) as caught:
        _import(src, tmp_path / "rejected", **overrides)
    assert not (tmp_path / "rejected").exists()  # nothing that looks complete is left
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".rejected")] == []
    return caught.value


def _replay_depth(frame: pl.DataFrame) -> dict[str, dict[int, int]]:
    """The documented reading of `depth`: a run of snapshot rows clears the book at its
    first row, then every row sets its level's absolute size, 0 removing it."""
    book: dict[str, dict[int, int]] = {"bid": {}, "ask": {}}
    previous_snapshot = False
    for side, price, qty, snapshot in frame.select("side", "price", "qty", "snapshot").iter_rows():
        if snapshot and not previous_snapshot:
            book = {"bid": {}, "ask": {}}
        previous_snapshot = snapshot
        if qty:
            book[side][price] = qty
        else:
            book[side].pop(price, None)
    return book


BOOK_ROWS = [
    _book(US - 1_000, False, "bid", "64999.9", "9"),          # buffered before the snapshot
    _book(US, True, "ask", "65000.1", "0.500"),
    _book(US, True, "bid", "64999.9", "1.2"),
    _book(US, True, "bid", "64999.5", "3"),
    _book(US + 100, False, "bid", "64999.9", "0"),            # removes the level
    _book(US + 100, False, "ask", "65000.3", "2.5"),
    _book(US + 900, True, "ask", "65001.0", "0.7"),           # a reconnect: a new snapshot
    _book(US + 900, True, "bid", "65000.0", "0.3"),
    _book(US + 950, False, "ask", "65001.0", "0"),
    _book(US + 960, False, "ask", "65001.5", "1.25"),
]


def test_a_snapshot_then_updates_become_depth_rows_in_ticks_and_lots(tmp_path):
    _write(tmp_path / "src", "incremental_book_L2", BOOK_ROWS)
    lines = _import(tmp_path / "src", tmp_path / "out")
    depth = pl.read_parquet(tmp_path / "out" / "depth.parquet")
    assert depth.columns == ["ts", "seq", "symbol", "side", "price", "qty", "snapshot"]
    assert depth.row(0) == ((US) * 1000, 1, "BTCUSDT", "ask", 650_001, 500, True)
    assert depth["seq"].to_list() == list(range(1, 10))
    assert depth["ts"].to_list()[:4] == [US * 1000] * 3 + [(US + 100) * 1000]
    assert depth["snapshot"].to_list() == [True] * 3 + [False] * 2 + [True] * 2 + [False] * 2
    assert "depth: 9 rows" in lines
    assert any("1 updates before the first snapshot skipped" in line for line in lines)


def test_amount_zero_is_kept_as_a_qty_zero_row_that_removes_the_level(tmp_path):
    _write(tmp_path / "src", "incremental_book_L2", BOOK_ROWS[:6])
    _import(tmp_path / "src", tmp_path / "out")
    depth = pl.read_parquet(tmp_path / "out" / "depth.parquet")
    assert depth.filter(pl.col("qty") == 0).select("side", "price").rows() == [("bid", 649_999)]
    assert _replay_depth(depth) == {"bid": {649_995: 3000}, "ask": {650_001: 500, 650_003: 2500}}


def test_a_reconnect_snapshot_mid_file_replaces_the_book_and_is_reported(tmp_path):
    path = _write(tmp_path / "src", "incremental_book_L2", BOOK_ROWS)
    lines = _import(tmp_path / "src", tmp_path / "out")
    depth = pl.read_parquet(tmp_path / "out" / "depth.parquet")
    # Levels of the first snapshot (64999.5 bid, 65000.1 ask, 65000.3 ask) are gone.
    assert _replay_depth(depth) == {"bid": {650_000: 300}, "ask": {650_015: 1250}}
    assert any(line.startswith("depth snapshots: 2 (after a reconnect at "
                               f"{path.name} row 8)") for line in lines)


def test_gzip_input_gives_the_same_bytes_as_plain_csv(tmp_path):
    _write(tmp_path / "plain", "incremental_book_L2", BOOK_ROWS)
    _write(tmp_path / "gz", "incremental_book_L2", BOOK_ROWS, gz=True)
    _import(tmp_path / "plain", tmp_path / "a")
    _import(tmp_path / "gz", tmp_path / "b")
    assert (tmp_path / "a" / "depth.parquet").read_bytes() == (tmp_path / "b" / "depth.parquet").read_bytes()


def test_two_imports_of_the_same_files_are_byte_identical(tmp_path):
    _write_all(tmp_path / "src")
    _import(tmp_path / "src", tmp_path / "a")
    _import(tmp_path / "src", tmp_path / "b")
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == ["dataset.toml", "depth.parquet", "funding.parquet", "marks.parquet",
                     "recorded_liquidations.parquet", "trades.parquet"]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def _write_all(src: Path) -> None:
    _write(src, "incremental_book_L2", BOOK_ROWS)
    _write(src, "trades", [_trade(US + 10, "5001", "buy", "65000.1", "0.100"),
                           _trade(US + 20, "5002", "sell", "64999.9", "0.2"),
                           _trade(US + 30, "5003", "unknown", "64999.9", "0.2"),
                           _trade(US + 40, "", "sell", "64999.5", "1")], gz=True)
    eight_h = 8 * 3600 * 1_000_000
    _write(src, "derivative_ticker", [
        _ticker(US + 5, US + eight_h, "0.00010000", "65001.12345678", "65000.15000000"),
        _ticker(US + 6, US + eight_h, "0.00012000", "65001.12345678", "65000.15000000"),
        _ticker(US + 7, US + eight_h, "0.00012000", "65001.12345678", "65000.2"),
        ("BTCUSDT", US + 8, US + 9, "", "", "", "1000.5", "", "", ""),  # open interest only
        _ticker(US + eight_h + 3, US + 2 * eight_h, "-0.00003", "65010", "65010.2"),
    ])
    _write(src, "liquidations", [("BTCUSDT", US + 50, US + 60, "", "sell", "64990.0", "0.010"),
                                 ("BTCUSDT", US + 70, US + 80, "abc-1", "buy", "65005.5", "0.5")])
    (src / f"{EXCHANGE}_quotes_2024-08-01_BTCUSDT.csv.gz").write_bytes(b"")


def test_every_data_type_lands_in_its_table_and_the_dataset_is_valid(tmp_path):
    _write_all(tmp_path / "src")
    lines = _import(tmp_path / "src", tmp_path / "out")
    out = tmp_path / "out"
    manifest = load_manifest(out)
    spec = manifest.instruments["BTCUSDT"]
    assert (spec.tick_size, spec.lot_size, spec.base, spec.settle, spec.notional_factor) == \
        (tardis.Decimal("0.1"), tardis.Decimal("0.001"), "BTC", "USDT", 10_000)
    assert manifest.start_ns == US * 1000  # the first snapshot (the update before it is skipped)
    trades = pl.read_parquet(out / "trades.parquet")
    assert trades.select("price", "qty", "aggressor", "trade_id").rows() == [
        (650_001, 100, "buy", "5001"), (649_999, 200, "sell", "5002"), (649_995, 1000, "sell", None)]
    assert any(line.startswith("trades with side unknown skipped: 1") for line in lines)
    marks = pl.read_parquet(out / "marks.parquet")
    # 65000.15 rounds half-even to 650002 ticks; the repeat row adds nothing; 65000.2 is exact.
    assert marks.select("mark_price", "index_price").rows() == [
        (650_002, 650_011), (650_102, 650_100)]
    assert "ticker rows without a mark price skipped: 1" in lines
    funding = pl.read_parquet(out / "funding.parquet")
    # The last rate published before the 08:00 funding; the 16:00 one is after the data.
    assert funding.rows() == [((US + 8 * 3600 * 1_000_000) * 1000, "BTCUSDT", 12_000, 10**8)]
    assert any(line.startswith("funding at ") and "not written" in line for line in lines)
    liq = pl.read_parquet(out / "recorded_liquidations.parquet")
    assert liq.select("side", "price", "qty", "id").rows() == [
        ("sell", 649_900, 10, None), ("buy", 650_055, 500, "abc-1")]
    assert any("quotes" in line and line.startswith("files ignored") for line in lines)
    from datasets.validate import validate_dataset
    assert validate_dataset(out) == []


def test_an_off_grid_price_names_file_row_and_column(tmp_path):
    rows = BOOK_ROWS[:4] + [_book(US + 100, False, "bid", "64999.95", "1")]
    path = _write(tmp_path / "src", "incremental_book_L2", rows)
    error = _faults(tmp_path / "src", tmp_path)
    assert error.path == str(path)
    assert error.problems == ["row 6, column price: off the grid of 0.1 (value: '64999.95')"]


def test_an_off_grid_amount_and_every_other_fault_of_the_file_are_listed_together(tmp_path):
    rows = BOOK_ROWS[:4] + [_book(US + 100, False, "bid", "64999.9", "0.0005"),
                            _book(US + 200, False, "middle", "64999.9", "1"),
                            _book(US + 300, False, "ask", "-65000", "1")]
    _write(tmp_path / "src", "incremental_book_L2", rows)
    problems = _faults(tmp_path / "src", tmp_path).problems
    assert problems == [
        "row 6, column amount: off the grid of 0.001 (value: '0.0005')",
        "row 7, column side: unknown value; one of bid, ask (value: 'middle')",
        "row 8, column price: negative (value: '-65000')",
    ]


def test_a_malformed_row_is_a_fault_naming_its_first_missing_column(tmp_path):
    rows = BOOK_ROWS[:3] + [f"{EXCHANGE},BTCUSDT,{US},{US},false,bid,64999.9",
                            f"{EXCHANGE},BTCUSDT,{US},{US},false,bid,64999.9,1,extra"]
    _write(tmp_path / "src", "incremental_book_L2", rows)
    problems = _faults(tmp_path / "src", tmp_path).problems
    assert problems[0].startswith("row 5, column amount: malformed row: 7 fields where the layout has 8")
    assert problems[1].startswith("row 6, column 9 (extra): malformed row: 9 fields")
    assert len(problems) == 2


def test_a_header_that_is_not_the_documented_layout_is_rejected_at_row_1(tmp_path):
    header = "exchange,symbol,timestamp,local_timestamp,snapshot,side,price,amount"
    _write(tmp_path / "src", "incremental_book_L2", BOOK_ROWS, header=header)
    problems = _faults(tmp_path / "src", tmp_path).problems
    assert problems == ["row 1, column is_snapshot: header 'snapshot' where Tardis' incremental_book_L2 "
                        "layout has 'is_snapshot' (value: 'snapshot')"]


@pytest.mark.parametrize("data_type, row, column, value", [
    pytest.param("trades", _trade(US, "1", "BUY", "65000.1", "1"), "side", "BUY",
                 id="a trade side in capitals is not Tardis' buy"),
    pytest.param("trades", _trade(US, "1", "", "65000.1", "1"), "side", "",
                 id="an empty trade side"),
    pytest.param("liquidations", ("BTCUSDT", US, US, "", "unknown", "65000.1", "1"), "side", "unknown",
                 id="a liquidation has no unknown side"),
    pytest.param("incremental_book_L2", _book(US, True, "buy", "65000.1", "1"), "side", "buy",
                 id="a book side is bid or ask, not buy"),
    pytest.param("incremental_book_L2", _book(US, True, "bid", "65000.1", "1")[:3] + ("yes",)
                 + _book(US, True, "bid", "65000.1", "1")[4:], "is_snapshot", "yes",
                 id="is_snapshot is true or false"),
])
def test_an_unknown_enum_value_is_a_fault_naming_row_and_column(tmp_path, data_type, row, column, value):
    path = _write(tmp_path / "src", data_type, [row])
    error = _faults(tmp_path / "src", tmp_path)
    assert error.path == str(path)
    assert len(error.problems) == 1
    assert error.problems[0].startswith(f"row 2, column {column}: unknown value")
    assert error.problems[0].endswith(f"(value: {value!r})")


def test_a_trade_of_zero_size_is_rejected(tmp_path):
    _write(tmp_path / "src", "trades", [_trade(US, "1", "buy", "65000.1", "0.000")])
    assert _faults(tmp_path / "src", tmp_path).problems == [
        "row 2, column amount: must be > 0 (value: '0.000')"]


def test_a_local_timestamp_going_backwards_is_reported_with_both_places(tmp_path):
    rows = [_trade(US + 10, "1", "buy", "65000.1", "1"), _trade(US + 30, "2", "buy", "65000.1", "1"),
            _trade(US + 20, "3", "buy", "65000.1", "1"), _trade(US + 40, "4", "buy", "65000.1", "1")]
    path = _write(tmp_path / "src", "trades", rows)
    assert _faults(tmp_path / "src", tmp_path).problems == [
        f"row 4, column local_timestamp: goes backwards from {US + 30} at {path.name} row 3 "
        f"(value: '{US + 20}')"]


def test_a_later_days_file_starting_before_the_previous_one_ends_is_reported(tmp_path):
    _write(tmp_path / "src", "trades", [_trade(US + 50, "1", "buy", "65000.1", "1")], date="2024-08-01")
    day2 = _write(tmp_path / "src", "trades", [_trade(US + 40, "2", "buy", "65000.1", "1")], date="2024-08-02")
    error = _faults(tmp_path / "src", tmp_path)
    assert error.path == str(day2)
    assert error.problems[0].startswith("row 2, column local_timestamp: goes backwards")


def test_a_timestamp_that_is_not_an_integer_is_a_fault(tmp_path):
    _write(tmp_path / "src", "trades", [("BTCUSDT", US, "1.5e15", "1", "buy", "65000.1", "1")])
    assert _faults(tmp_path / "src", tmp_path).problems == [
        "row 2, column local_timestamp: not an integer count of microseconds since the epoch "
        "(value: '1.5e15')"]


def test_an_off_grid_mark_is_rounded_by_default_and_an_error_when_asked(tmp_path):
    eight_h = 8 * 3600 * 1_000_000
    _write(tmp_path / "src", "derivative_ticker",
           [_ticker(US, US + eight_h, "0.0001", "65001.12345678", "65000.16")])
    lines = _import(tmp_path / "src", tmp_path / "out")
    assert pl.read_parquet(tmp_path / "out" / "marks.parquet")["mark_price"].to_list() == [650_002]
    assert "mark/index prices rounded to the 0.1 tick: 2 (largest 0.4000 tick)" in lines
    problems = _faults(tmp_path / "src", tmp_path, mark_rounding="error").problems
    assert problems == ["row 2, column mark_price: off the grid of 0.1 (value: '65000.16')",
                        "row 2, column index_price: off the grid of 0.1 (value: '65001.12345678')"]


def test_a_funding_rate_with_more_than_8_decimals_keeps_them_with_a_larger_scale():
    assert tardis.rate_over_scale("0.0001") == (10_000, 10**8)
    assert tardis.rate_over_scale("-0.0000123456789") == (-123_456_789, 10**13)
    assert tardis.rate_over_scale("1E-4") == (10_000, 10**8)


def test_rows_of_another_symbol_are_skipped_and_several_symbols_need_symbol(tmp_path):
    rows = [_book(US, True, "bid", "64999.9", "1"), _book(US, True, "bid", "3000.01", "1", "ETHUSDT")]
    _write(tmp_path / "src", "incremental_book_L2", rows)
    _write(tmp_path / "src", "incremental_book_L2", [_book(US, True, "bid", "3000.01", "1", "ETHUSDT")],
           symbol="ETHUSDT")
    error = _faults(tmp_path / "src", tmp_path)
    assert error.path == "--symbol" and "BTCUSDT, ETHUSDT" in error.problems[0]
    lines = _import(tmp_path / "src", tmp_path / "out", symbol="BTCUSDT")
    assert "rows of other symbol ETHUSDT skipped: 2" in lines
    assert pl.read_parquet(tmp_path / "out" / "depth.parquet")["price"].to_list() == [649_999]


def test_a_grid_whose_tick_times_lot_is_not_whole_minor_units_is_rejected_before_reading(tmp_path):
    _write(tmp_path / "src", "incremental_book_L2", BOOK_ROWS)
    error = _faults(tmp_path / "src", tmp_path, tick_size="0.1", lot_size="0.00000001")
    assert error.path.startswith("--tick-size")
    assert "not a whole number of USDT minor units" in error.problems[0]


def test_a_folder_without_tardis_files_is_rejected(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "notes.txt").write_text("hello")
    error = _faults(tmp_path / "src", tmp_path)
    assert error.path == str(tmp_path / "src") and "no Tardis CSV files" in error.problems[0]


def test_the_command_exits_2_naming_file_row_and_column(tmp_path, capsys):
    rows = BOOK_ROWS[:4] + [_book(US + 100, False, "bid", "64999.95", "1")]
    _write(tmp_path / "src", "incremental_book_L2", rows, gz=True)
    code = main(["import", "tardis", str(tmp_path / "src"), str(tmp_path / "out"),
                 "--tick-size", "0.1", "--lot-size", "0.001"])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2
    assert "incremental_book_L2_2024-08-01_BTCUSDT.csv.gz" in err
    assert "row 6, column price: off the grid of 0.1" in err


def test_the_command_requires_tick_and_lot_size(tmp_path, capsys):
    _write(tmp_path / "src", "incremental_book_L2", BOOK_ROWS)
    with pytest.raises(SystemExit) as caught:
        main(["import", "tardis", str(tmp_path / "src"), str(tmp_path / "out")])
    assert caught.value.code == 2
    assert "--tick-size" in capsys.readouterr().err


def test_the_command_writes_the_dataset_and_prints_the_summary(tmp_path, capsys):
    _write_all(tmp_path / "src")
    code = main(["import", "tardis", str(tmp_path / "src"), str(tmp_path / "out"),
                 "--tick-size", "0.1", "--lot-size", "0.001"])
    out = capsys.readouterr().out
    assert code == 0
    assert "depth: 9 rows" in out and "trades: 3 rows" in out and "funding: 1 rows" in out


def _big_book(n: int) -> list[str]:
    rows = [",".join([EXCHANGE, "BTCUSDT", str(US), str(US), "true", "bid", "60000.0", "1"])]
    for i in range(n):
        price = f"{60000 + (i % 2000) / 10:.1f}"
        rows.append(",".join([EXCHANGE, "BTCUSDT", str(US + i), str(US + i), "false",
                              "ask" if i % 2 else "bid", price, f"{i % 7}.{i % 1000:03d}"]))
    return rows


def test_memory_stays_bounded_as_the_input_grows(tmp_path, monkeypatch):
    """Python heap peak for 12k and 48k rows read in chunks of 100 kB into row groups of
    2,048 rows: one chunk and one row group at a time, never the file (the same holds at
    the real sizes, 16 MB and 65,536 rows)."""
    monkeypatch.setattr(tardis, "BATCH_ROWS", 2_048)
    monkeypatch.setattr(tardis, "CHUNK_BYTES", 100_000)
    peaks = []
    for n in (12_000, 48_000):
        src = tmp_path / f"src{n}"
        _write(src, "incremental_book_L2", _big_book(n), gz=True)
        tracemalloc.start()
        _import(src, tmp_path / f"out{n}")
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert pl.scan_parquet(tmp_path / f"out{n}" / "depth.parquet").select(pl.len()).collect().item() == n + 1
    assert peaks[1] < 1.3 * peaks[0], peaks


def _mixed_book(n: int) -> list[str]:
    """Depth lines with updates before the first snapshot, reconnect snapshots, removals
    and rows of another symbol, for comparing the two paths."""
    rows = []
    t = US
    for i in range(n):
        t += i % 3
        symbol = "ETHUSDT" if i % 11 == 5 else "BTCUSDT"
        snapshot = 40 <= i % 400 < 60
        side = "bid" if i % 2 else "ask"
        price = f"{60000 + (i % 97) / 10 + (0 if side == 'bid' else 20):.1f}"
        amount = "0" if i % 5 == 0 else f"{i % 13}.{i % 1000:03d}"
        rows.append(",".join([EXCHANGE, symbol, str(t - 7), str(t), "true" if snapshot else "false",
                              side, price, amount]))
    return rows


def _mixed_trades(n: int) -> list[str]:
    sides = ("buy", "sell", "unknown", "sell", "buy")
    return [",".join([EXCHANGE, "BTCUSDT" if i % 7 else "ETHUSDT", str(US + i - 3), str(US + i),
                      "" if i % 9 == 0 else str(1000 + i), sides[i % 5], f"{60000 + (i % 50) / 10:.1f}",
                      f"0.{1 + i % 900:03d}"]) for i in range(n)]


def test_the_vectorised_path_writes_what_the_row_by_row_path_writes(tmp_path, monkeypatch):
    _write(tmp_path / "src", "incremental_book_L2", _mixed_book(3_000), gz=True)
    _write(tmp_path / "src", "trades", _mixed_trades(2_000))
    monkeypatch.setattr(tardis, "CHUNK_BYTES", 4_099)  # cuts inside lines and snapshot runs
    fast_lines = _import(tmp_path / "src", tmp_path / "fast", symbol="BTCUSDT")
    real_options = tardis.Options

    def row_by_row(*args, **kwargs):
        return real_options(*args, **kwargs, vectorised=False)

    monkeypatch.setattr(tardis, "Options", row_by_row)
    slow_lines = _import(tmp_path / "src", tmp_path / "slow", symbol="BTCUSDT")
    assert fast_lines == slow_lines
    assert any("depth snapshots: 8 (after a reconnect at" in line for line in fast_lines)
    assert any(line.startswith("trades with side unknown skipped: ") for line in fast_lines)
    for table in ("depth", "trades"):
        fast = pl.read_parquet(tmp_path / "fast" / f"{table}.parquet")
        slow = pl.read_parquet(tmp_path / "slow" / f"{table}.parquet")
        assert fast.height > 1_000
        assert fast.equals(slow), table
    assert (tmp_path / "fast" / "dataset.toml").read_text() == (tmp_path / "slow" / "dataset.toml").read_text()


def test_a_fault_in_a_later_chunk_is_named_at_its_line(tmp_path, monkeypatch):
    lines = _mixed_book(1_000)
    lines[700] = lines[700].rsplit(",", 1)[0] + ",0.0001"  # off the lot grid, line 702
    lines[850] = lines[850].replace(",bid,", ",BID,").replace(",ask,", ",ASK,")
    path = _write(tmp_path / "src", "incremental_book_L2", lines)
    monkeypatch.setattr(tardis, "CHUNK_BYTES", 9_001)
    error = _faults(tmp_path / "src", tmp_path, symbol="BTCUSDT")
    assert error.path == str(path)
    assert error.problems[0] == "row 702, column amount: off the grid of 0.001 (value: '0.0001')"
    assert error.problems[1].startswith("row 852, column side: unknown value; one of bid, ask")
    assert len(error.problems) == 2


def test_a_truncated_gzip_file_is_a_fault_not_a_traceback(tmp_path):
    path = _write(tmp_path / "src", "incremental_book_L2", _big_book(5_000), gz=True)
    path.write_bytes(path.read_bytes()[:20_000])
    error = _faults(tmp_path / "src", tmp_path)
    assert error.path == str(path)
    assert error.problems[-1].startswith("row ") and "unreadable from here" in error.problems[-1]
