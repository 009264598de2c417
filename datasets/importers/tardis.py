"""`backtest import tardis SRC OUT`: Tardis.dev downloadable CSV files into a dataset folder.

SRC is a folder of Tardis CSV files, plain or gzipped (`.csv`, `.csv.gz`), named as Tardis
names them (`{exchange}_{data_type}_{date}_{symbol}.csv.gz`). Four data types are read, with
the column layouts Tardis documents (https://docs.tardis.dev/downloadable-csv-files); the
header line must match exactly:

    incremental_book_L2  exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount
    trades               exchange,symbol,timestamp,local_timestamp,id,side,price,amount
    derivative_ticker    exchange,symbol,timestamp,local_timestamp,funding_timestamp,
                         funding_rate,predicted_funding_rate,open_interest,last_price,
                         index_price,mark_price
    liquidations         exchange,symbol,timestamp,local_timestamp,id,side,price,amount

Other files in SRC (book_snapshot_25, quotes, ...) are listed as ignored. The tables written
are the ones the Binance importer writes (DESIGN.md's data contracts; docs/import-tardis.md):

    depth                  ts, seq, symbol, side (bid|ask), price, qty, snapshot
    trades                 ts, seq, symbol, price, qty, aggressor (buy|sell), trade_id
    marks                  ts, symbol, mark_price, index_price
    funding                ts, symbol, rate, scale
    recorded_liquidations  ts, seq, symbol, side (buy|sell), price, qty, id

Choices:
- Time. `ts` = `local_timestamp` x 1000 (Tardis writes microseconds; we keep nanoseconds).
  Tardis orders every file by local_timestamp, the recorder's one clock common to all four
  files, so it is what merges them faithfully; the venue's `timestamp` may step backwards
  between channels. A `local_timestamp` that goes backwards within a data type (across its
  files in name order, i.e. by date) is an error naming file, row and column. `funding.ts`
  is the venue's funding time (`funding_timestamp`), not an arrival time.
- `seq` counts the rows of each table from 1 in file order: the tie-break inside one ts.
- Grid. Prices and sizes are decimal strings converted to integer ticks and lots exactly
  (string arithmetic; Decimal for exponents); a depth, trade or liquidation value off the
  grid is an error. Mark and index prices are computed references, not prices an order can
  rest at, and venues publish them with more decimals than the tick (Binance: 8), so by
  default they are rounded to the nearest tick (half to even, at most half a tick) and the
  summary counts the rounded values and the largest rounding; `--mark-rounding error`
  makes them errors like every other price.
- Snapshots. Tardis marks the rows of a full-book snapshot `is_snapshot=true`; a snapshot
  row after a non-snapshot row starts a new snapshot (the start of a day, or a reconnect)
  and the book must be cleared first. `depth.snapshot` keeps that flag unchanged, so a
  snapshot is a maximal run of consecutive `snapshot=true` rows of the symbol and a replay
  clears the symbol's book at the first row of each run, then sets the levels. Updates
  before the first snapshot are skipped (Tardis: buffered updates received before the
  exchange sent its snapshot) and counted. `qty` is the level's absolute size; 0 removes it.
- Trades whose side is Tardis' documented `unknown` (the venue did not say who was the
  aggressor) are skipped and counted: a market-data replay cannot put them on a side of
  the book. Any other side value is an error. `trade_id` and liquidation `id` are kept as
  strings (Tardis ids are strings on several venues; null when the venue gives none).
- Funding. A derivative_ticker row carries the funding rate that will settle at
  `funding_timestamp`; the rate last published before that time is the one written, at
  that time, when a later row names the next funding time or when the data runs past it.
  The rate is the exact decimal as an integer over `scale` = 10^max(8, its decimals).
  `predicted_funding_rate`, `open_interest` and `last_price` are not written.
- Marks: one row per change of (mark_price, index_price) after rounding; a ticker row
  without a mark price is skipped.
- One symbol per dataset: `--symbol`, or the only symbol the files hold. Tardis CSV files
  carry no instrument specification, so `--tick-size` and `--lot-size` are required: the
  importer cannot infer the grid of a symbol from its rows (a price like 100.5 fits ticks
  of 0.1 and 0.5 alike).
- Faults: every fault of a file (up to MAX_FAULTS) is reported together as
  `row N, column C: message (value: ...)`, where N is the line number in the file as an
  editor shows it, the header being line 1 (so the first data row is row 2).

Two paths, one set of rules. Every row can go through the row-by-row path (the csv module
and the `_*_row` parsers: the reference, and the one that names faults). Depth and trades,
the big files, go first through a vectorised path: CHUNK_BYTES of whole lines parsed by
polars into strings, converted and checked by expressions, accepted only whole; the first
chunk it does not accept (any fault, or a line polars might read differently from the csv
module) and everything after it go row by row. Both write the same rows (a test compares
them over chunk edges inside snapshot runs). Measured on this machine (2 shared cores):
a gzipped 6,001,000-row incremental_book_L2 file imports in 10.7 s (about 560,000 rows/s,
peak RSS 221 MB; 2,001,000 rows: 4.0 s, 211 MB); row by row, about 136,000 rows/s.

Memory is bounded: one chunk of text and its frame, or one Parquet row group of
BATCH_ROWS rows, and a few scalars of state per data type; never the file.
"""

from __future__ import annotations

import argparse
import csv
import codecs
import gzip
import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pyarrow.parquet as pq

from datasets.folders import staged_folder
from datasets.manifest import load_manifest
from datasets.orders import BATCH_ROWS, MAX_FAULTS
from matching.errors import InputError

HELP = "Tardis.dev CSV files (incremental_book_L2, trades, derivative_ticker, liquidations)"
DESCRIPTION = """\
Turn a folder of Tardis.dev downloadable CSV files (plain or .csv.gz) of one symbol into a
dataset folder: incremental_book_L2 -> depth, trades -> trades, derivative_ticker -> marks
and funding, liquidations -> recorded_liquidations. Tardis files carry no instrument
specification, so --tick-size and --lot-size are required (the grid cannot be inferred
from the rows). ts is the recorder's local_timestamp in ns. A snapshot (is_snapshot=true
after an update: a new day or a reconnect) replaces the book: depth.snapshot keeps the
flag, and a replay clears the book at the first row of each run of snapshot rows.
docs/import-tardis.md has every rule."""
EPILOG = ("backtest import tardis data/tardis-2024-08-01 data/btc-tardis "
          "--tick-size 0.1 --lot-size 0.001")

DATA_TYPES = ("incremental_book_L2", "trades", "derivative_ticker", "liquidations")
HEADERS = {
    "incremental_book_L2": ("exchange", "symbol", "timestamp", "local_timestamp", "is_snapshot",
                            "side", "price", "amount"),
    "trades": ("exchange", "symbol", "timestamp", "local_timestamp", "id", "side", "price", "amount"),
    "derivative_ticker": ("exchange", "symbol", "timestamp", "local_timestamp", "funding_timestamp",
                          "funding_rate", "predicted_funding_rate", "open_interest", "last_price",
                          "index_price", "mark_price"),
    "liquidations": ("exchange", "symbol", "timestamp", "local_timestamp", "id", "side", "price",
                     "amount"),
}
TABLE_OF = {"incremental_book_L2": "depth", "trades": "trades", "derivative_ticker": "marks",
            "liquidations": "recorded_liquidations"}
_NAME = re.compile(r"(?:^|[_.-])(incremental_book_L2|trades|derivative_ticker|liquidations)(?:[_.-])")
INT64_MAX = 2**63 - 1
FUNDING_SCALE_DECIMALS = 8  # the project's fixed rate scale, 1e8 (DESIGN.md Numbers)

SCHEMAS = {
    "depth": pa.schema([("ts", pa.int64()), ("seq", pa.int64()), ("symbol", pa.string()),
                        ("side", pa.string()), ("price", pa.int64()), ("qty", pa.int64()),
                        ("snapshot", pa.bool_())]),
    "trades": pa.schema([("ts", pa.int64()), ("seq", pa.int64()), ("symbol", pa.string()),
                         ("price", pa.int64()), ("qty", pa.int64()), ("aggressor", pa.string()),
                         ("trade_id", pa.string())]),
    "marks": pa.schema([("ts", pa.int64()), ("symbol", pa.string()), ("mark_price", pa.int64()),
                        ("index_price", pa.int64())]),
    "funding": pa.schema([("ts", pa.int64()), ("symbol", pa.string()), ("rate", pa.int64()),
                          ("scale", pa.int64())]),
    "recorded_liquidations": pa.schema([("ts", pa.int64()), ("seq", pa.int64()), ("symbol", pa.string()),
                                        ("side", pa.string()), ("price", pa.int64()),
                                        ("qty", pa.int64()), ("id", pa.string())]),
}
DEPTH_SIDES = ("bid", "ask")  # as Tardis and the binance importer write them
SIDES = ("buy", "sell")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tick-size", required=True, metavar="DECIMAL",
                        help="price grid of the symbol, e.g. 0.1 (required: Tardis files do not carry it)")
    parser.add_argument("--lot-size", required=True, metavar="DECIMAL",
                        help="quantity grid of the symbol, e.g. 0.001 (required)")
    parser.add_argument("--symbol", help="the symbol to import (default: the only one in the files)")
    parser.add_argument("--instrument-kind", default="linear_perpetual",
                        choices=("linear_perpetual", "inverse_perpetual", "spot"),
                        help="instrument kind (default linear_perpetual)")
    parser.add_argument("--settle", default="USDT", help="settlement asset (default USDT)")
    parser.add_argument("--base", help="base asset (default: the symbol without the settle suffix)")
    parser.add_argument("--minor-unit", default="0.00000001", metavar="DECIMAL",
                        help="value of one minor unit of the settle asset (default 0.00000001)")
    parser.add_argument("--min-qty", type=int, default=1, metavar="LOTS", help="minimum order qty (default 1)")
    parser.add_argument("--name", help="dataset name (default tardis-EXCHANGE-SYMBOL)")
    parser.add_argument("--mark-rounding", choices=("half-even", "error"), default="half-even",
                        help="mark and index prices off the tick grid: round half-even to the "
                             "nearest tick and count (default, as the binance importer) or reject")


# ---------------------------------------------------------------------------------------
# Exact decimal conversion


class _Fault(Exception):
    """One bad value: the message of a `row, column` fault (internal control flow only
    between a parser and the row loop that records it)."""


@dataclass(frozen=True)
class Grid:
    """Decimal strings to integer multiples of `step` (ticks or lots), exactly.

    >>> Grid.of(Decimal("0.1")).units("100.50")
    1005
    """

    step: Decimal
    decimals: int  # digits after the point of `step`
    step_scaled: int  # step x 10^decimals, an integer

    @classmethod
    def of(cls, step: Decimal) -> Grid:
        decimals = max(0, -step.as_tuple().exponent)  # type: ignore[operator]
        return cls(step, decimals, int(step.scaleb(decimals)))

    def scaled(self, text: str) -> tuple[int, bool]:
        """`text` x 10^decimals as an integer, and whether that was exact (digits beyond
        `decimals` all zero). Raises _Fault on a value that is not a non-negative decimal."""
        whole, dot, frac = text.partition(".")
        if whole.isascii() and whole.isdigit() and (not dot or (frac.isascii() and frac.isdigit())):
            d = self.decimals
            exact = not frac[d:].strip("0")
            return int(whole + frac[:d].ljust(d, "0")), exact
        try:
            value = Decimal(text)
        except InvalidOperation:
            raise _Fault("not a decimal number") from None
        if not value.is_finite():
            raise _Fault("not a finite number")
        if value < 0:
            raise _Fault("negative")
        shifted = value.scaleb(self.decimals)
        whole_units = int(shifted)
        return whole_units, shifted == whole_units

    def units(self, text: str) -> int:
        """The exact number of steps in `text`; _Fault when it is off the grid."""
        scaled, exact = self.scaled(text)
        units, rest = divmod(scaled, self.step_scaled)
        if rest or not exact:
            raise _Fault(f"off the grid of {self.step}")
        if units > INT64_MAX:
            raise _Fault("too large for int64")
        return units

    def nearest(self, text: str) -> tuple[int, Decimal]:
        """The nearest number of steps (half to even) and the rounding in steps."""
        try:
            value = Decimal(text)
        except InvalidOperation:
            raise _Fault("not a decimal number") from None
        if not value.is_finite() or value < 0:
            raise _Fault("not a non-negative decimal number")
        exact = value / self.step
        units = int(exact.to_integral_value(rounding=ROUND_HALF_EVEN))
        if units > INT64_MAX:
            raise _Fault("too large for int64")
        return units, abs(exact - units)


def rate_over_scale(text: str) -> tuple[int, int]:
    """An exact decimal rate as (integer, scale), scale = 10^max(8, decimals).

    >>> rate_over_scale("-0.00012345")
    (-12345, 100000000)
    """
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise _Fault("not a decimal number") from None
    if not value.is_finite():
        raise _Fault("not a finite number")
    decimals = max(FUNDING_SCALE_DECIMALS, -value.as_tuple().exponent)  # type: ignore[operator]
    scaled = value.scaleb(decimals)
    if scaled != scaled.to_integral_value() or abs(scaled) > INT64_MAX:
        raise _Fault("does not fit an int64 over its scale")
    return int(scaled), 10**decimals


def _micros(text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise _Fault("not an integer count of microseconds since the epoch")
    value = int(text)
    if value > INT64_MAX // 1000:
        raise _Fault("too large: its nanoseconds do not fit an int64")
    return value


# ---------------------------------------------------------------------------------------
# Output


class TableWriter:
    """Rows of one table into Parquet, BATCH_ROWS per row group (bounded memory)."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path = path
        self.schema = schema
        self.pending: list[tuple] = []  # rows not yet written, at most BATCH_ROWS
        self.rows = 0  # rows added in all
        self.first_ts: int | None = None  # smallest ts written (None: no row yet)
        self.last_ts: int | None = None  # largest ts written
        self._writer: pq.ParquetWriter | None = None

    def add(self, row: tuple) -> None:
        self.pending.append(row)
        self.rows += 1
        if len(self.pending) >= BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, self.schema, compression="zstd")
        if self.pending or not self.rows:
            columns = list(zip(*self.pending)) or [[] for _ in self.schema.names]
            if columns[0]:
                low, high = min(columns[0]), max(columns[0])
                self.first_ts = low if self.first_ts is None else min(self.first_ts, low)
                self.last_ts = high if self.last_ts is None else max(self.last_ts, high)
            table = pa.table([pa.array(c, type=f.type) for c, f in zip(columns, self.schema)],
                             schema=self.schema)
            self._writer.write_table(table)
        self.pending = []

    def add_table(self, table: pa.Table) -> None:
        """A batch of rows at once, as one row group (the vectorised path's chunks)."""
        if self.pending:
            self.flush()
        if not table.num_rows:
            return
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, self.schema, compression="zstd")
        ts = table.column("ts")
        low, high = pa.compute.min(ts).as_py(), pa.compute.max(ts).as_py()
        self.first_ts = low if self.first_ts is None else min(self.first_ts, low)
        self.last_ts = high if self.last_ts is None else max(self.last_ts, high)
        self._writer.write_table(table)
        self.rows += table.num_rows

    def close(self) -> None:
        self.flush()
        assert self._writer is not None
        self._writer.close()


# ---------------------------------------------------------------------------------------
# Reading


@dataclass
class SourceFile:
    path: Path
    data_type: str
    first_symbol: str | None = None
    exchange: str | None = None


@dataclass
class Counts:
    """What the summary reports, per run."""

    rows_read: int = 0
    other_symbol: dict[str, int] = field(default_factory=dict)
    pre_snapshot: int = 0
    snapshots: int = 0
    reconnects: list[str] = field(default_factory=list)  # "file:row" of snapshots after the first
    unknown_side: int = 0
    first_unknown_side: str | None = None
    marks_rounded: int = 0
    max_mark_rounding: Decimal = Decimal(0)
    ticker_without_mark: int = 0
    funding_pending: int | None = None  # funding time after the data ends (µs)


def _open_binary(path: Path) -> io.BufferedIOBase:
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")  # type: ignore[return-value]


def classify(src: Path) -> tuple[list[SourceFile], list[str]]:
    """The Tardis files of SRC by data type (DATA_TYPES order, then name), and the names
    of the files ignored."""
    if not src.is_dir():
        raise InputError(str(src), ["not a folder: SRC is a folder of Tardis CSV files"])
    found: list[SourceFile] = []
    ignored: list[str] = []
    for path in sorted(p for p in src.iterdir() if p.is_file()):
        match = _NAME.search(path.name)
        if match and (path.name.endswith(".csv") or path.name.endswith(".csv.gz")):
            found.append(SourceFile(path, match.group(1)))
        else:
            ignored.append(path.name)
    if not found:
        raise InputError(str(src), ["no Tardis CSV files found: expected names such as "
                                    "binance-futures_trades_2024-08-01_BTCUSDT.csv.gz holding one of "
                                    + ", ".join(DATA_TYPES)])
    found.sort(key=lambda f: (DATA_TYPES.index(f.data_type), f.path.name))
    return found, ignored


def _check_header(source: SourceFile, raw: bytes) -> None:
    """The header line must be Tardis' documented layout of the file's data type."""
    expected = HEADERS[source.data_type]
    if not raw:
        raise InputError(str(source.path), ["row 1, column -: empty file: the header line is missing"])
    header = tuple(raw.decode("utf-8", errors="replace").rstrip("\r\n").split(","))
    if header == expected:
        return
    problems = [f"row 1, column {want}: header {got!r} where Tardis' {source.data_type} "
                f"layout has {want!r} (value: {got!r})"
                for got, want in zip(header, expected) if got != want]
    if len(header) != len(expected):
        problems.append(f"row 1, column -: {len(header)} columns where the {source.data_type} "
                        f"layout has {len(expected)}: {','.join(expected)}")
    raise InputError(str(source.path), problems)


def _peek(source: SourceFile) -> None:
    """Check the header; fill `first_symbol` and `exchange` from the first data row."""
    try:
        with _open_binary(source.path) as handle:
            _check_header(source, handle.readline())
            fields = handle.readline().decode("utf-8", errors="replace").rstrip("\r\n").split(",")
    except (OSError, EOFError) as exc:
        raise InputError(str(source.path), [f"unreadable: {exc}"]) from None
    if len(fields) == len(HEADERS[source.data_type]):
        source.exchange, source.first_symbol = fields[0], fields[1]


class FileFaults:
    """The faults of one file, capped at MAX_FAULTS."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.items: list[str] = []
        self.line = 2  # the line being read, for a fault that stops the reading

    def add(self, line: int, column: str, message: str, value: object) -> None:
        if len(self.items) < MAX_FAULTS:
            self.items.append(f"row {line}, column {column}: {message} (value: {value!r})")

    @property
    def full(self) -> bool:
        return len(self.items) >= MAX_FAULTS

    def raise_any(self) -> None:
        if self.items:
            note = [f"(stopped after {MAX_FAULTS} faults)"] if self.full else []
            raise InputError(str(self.path), self.items + note)


@dataclass
class Clock:
    """The last local_timestamp of one data type, for the going-backwards check."""

    last_us: int | None = None  # None: no row yet
    last_file: str = ""  # file name and line of that row, for the fault message
    last_line: int = 0


def _check_clock(clock: Clock, local_us: int, line: int, file: str, faults: FileFaults) -> None:
    if clock.last_us is not None and local_us < clock.last_us:
        faults.add(line, "local_timestamp", f"goes backwards from {clock.last_us} at "
                   f"{clock.last_file} row {clock.last_line}", str(local_us))
        return
    clock.last_us, clock.last_file, clock.last_line = local_us, file, line


# ---------------------------------------------------------------------------------------
# The import


@dataclass(frozen=True)
class Options:
    symbol: str
    tick: Grid
    lot: Grid
    round_marks: bool
    vectorised: bool = True  # depth and trades through the polars path (False: row by row)


def _import_file(source: SourceFile, opts: Options, writers: dict[str, TableWriter],
                 clock: Clock, state: dict, counts: Counts,
                 progress: Callable[[int], None]) -> None:
    """Stream one file's rows of `opts.symbol` into its tables; raise InputError listing
    every fault of the file. `state` carries a data type's state across its files.

    Depth and trades (the big files) go CHUNK_BYTES of whole lines at a time through the
    vectorised path; the first chunk it cannot take whole (any fault, or a line it might
    not parse the way the csv module would) and everything after it go through the
    row-by-row path, which is the reference and names every fault. Tickers and
    liquidations are small and always go row by row."""
    faults = FileFaults(source.path)
    line = 2  # the line number of the next line read; the header is line 1
    try:
        with _open_binary(source.path) as handle:
            _check_header(source, handle.readline())
            rest: Iterator[bytes] = handle
            fast = FAST.get(source.data_type) if opts.vectorised else None
            carry = b""  # the start of a line the last block cut
            while fast is not None:
                faults.line = line
                block = handle.read(CHUNK_BYTES)
                data = carry + block
                cut = len(data) if not block else data.rfind(b"\n") + 1
                if not data:
                    break
                if not cut:  # one line longer than a block: row by row from here
                    rest = _lines_then(data, handle)
                    break
                chunk, carry = data[:cut], data[cut:]
                lines = chunk.count(b"\n") + (not chunk.endswith(b"\n"))
                if not fast(chunk, lines, line, source, opts, writers, clock, state, counts):
                    rest = _lines_then(chunk + carry, handle)
                    break
                line += lines
                counts.rows_read += lines
                progress(counts.rows_read)
            _rows_one_by_one(rest, line, source, opts, writers, clock, state, counts, faults, progress)
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as exc:
        faults.items.append(f"row {faults.line}, column -: unreadable from here: {exc}")
    faults.raise_any()


def _lines_then(data: bytes, handle: io.BufferedIOBase) -> Iterator[bytes]:
    """The lines of `data`, then of `handle`; a last line of `data` that a block cut in two
    is completed from `handle` first."""
    for raw in io.BytesIO(data):
        if not raw.endswith(b"\n"):
            raw += handle.readline()
        yield raw
    yield from handle


def _rows_one_by_one(lines: Iterator[bytes], first_line: int, source: SourceFile, opts: Options,
                     writers: dict[str, TableWriter], clock: Clock, state: dict, counts: Counts,
                     faults: FileFaults, progress: Callable[[int], None]) -> None:
    """The reference path: each line through the csv module and the row parsers."""
    names = HEADERS[source.data_type]
    width = len(names)
    kind = source.data_type
    file = source.path.name
    reader = csv.reader(codecs.iterdecode(lines, "utf-8"))
    faults.line = first_line
    for fields in reader:
        line = faults.line = first_line + reader.line_num - 1
        counts.rows_read += 1
        if counts.rows_read % BATCH_ROWS == 0:
            progress(counts.rows_read)
        if len(fields) != width:
            column = names[len(fields)] if len(fields) < width else f"{width + 1} (extra)"
            faults.add(line, column, f"malformed row: {len(fields)} fields where the layout has {width}",
                       ",".join(fields))
        elif fields[1] != opts.symbol:
            counts.other_symbol[fields[1]] = counts.other_symbol.get(fields[1], 0) + 1
        else:
            local_us = _parse(_micros, fields, 3, "local_timestamp", line, faults)
            exchange_us = _parse(_micros, fields, 2, "timestamp", line, faults)
            if local_us is not None and exchange_us is not None:
                _check_clock(clock, local_us, line, file, faults)
                ts = local_us * 1000
                if kind == "incremental_book_L2":
                    _depth_row(fields, line, ts, source, opts, writers["depth"], state, counts, faults)
                elif kind == "trades":
                    _trade_row(fields, line, ts, source, opts, writers["trades"], counts, faults)
                elif kind == "derivative_ticker":
                    _ticker_row(fields, line, ts, local_us, opts, writers, state, counts, faults)
                else:
                    _liquidation_row(fields, line, ts, opts, writers["recorded_liquidations"], faults)
        if faults.full:
            break


def _parse(parse: Callable[[str], object], fields: list[str], index: int, column: str,
           line: int, faults: FileFaults) -> object | None:
    try:
        return parse(fields[index])
    except _Fault as exc:
        faults.add(line, column, str(exc), fields[index])
        return None


def _depth_row(fields, line, ts, source, opts, out, state, counts, faults) -> None:
    flag = fields[4]
    if flag not in ("true", "false"):
        faults.add(line, "is_snapshot", "unknown value; one of true, false", flag)
        return
    snapshot = flag == "true"
    side = fields[5] if fields[5] in DEPTH_SIDES else None
    if side is None:
        faults.add(line, "side", "unknown value; one of bid, ask", fields[5])
    price = _parse(opts.tick.units, fields, 6, "price", line, faults)
    qty = _parse(opts.lot.units, fields, 7, "amount", line, faults)
    if price == 0:
        faults.add(line, "price", "must be > 0", fields[6])
        price = None
    if side is None or price is None or qty is None:
        return
    if snapshot and not state.get("depth_in_snapshot", False):
        counts.snapshots += 1
        if state.get("depth_seen_snapshot"):
            counts.reconnects.append(f"{source.path.name} row {line}")
        state["depth_seen_snapshot"] = True
    state["depth_in_snapshot"] = snapshot
    if not state.get("depth_seen_snapshot"):
        counts.pre_snapshot += 1
        return
    out.add((ts, out.rows + 1, opts.symbol, side, price, qty, snapshot))


def _trade_row(fields, line, ts, source, opts, out, counts, faults) -> None:
    side = fields[5]
    if side == "unknown":
        counts.unknown_side += 1
        if counts.first_unknown_side is None:
            counts.first_unknown_side = f"{source.path.name} row {line}"
        return
    if side not in SIDES:
        faults.add(line, "side", "unknown value; one of buy, sell (or Tardis' unknown, skipped)", side)
    price, qty = _price_amount(fields, line, opts, faults)
    if side not in SIDES or not price or not qty:
        return
    out.add((ts, out.rows + 1, opts.symbol, price, qty, side, fields[4] or None))


def _liquidation_row(fields, line, ts, opts, out, faults) -> None:
    side = fields[5]
    if side not in SIDES:
        faults.add(line, "side", "unknown value; one of buy, sell", side)
    price, qty = _price_amount(fields, line, opts, faults)
    if side not in SIDES or not price or not qty:
        return
    out.add((ts, out.rows + 1, opts.symbol, side, price, qty, fields[4] or None))


def _price_amount(fields, line, opts, faults) -> tuple[int | None, int | None]:
    """A trade's or liquidation's price (ticks) and amount (lots) from columns 6 and 7,
    each a fault (and falsy) when off the grid or not > 0."""
    price = _parse(opts.tick.units, fields, 6, "price", line, faults)
    qty = _parse(opts.lot.units, fields, 7, "amount", line, faults)
    for value, column, index in ((price, "price", 6), (qty, "amount", 7)):
        if value == 0:
            faults.add(line, column, "must be > 0", fields[index])
    return price, qty


def _mark(text: str, column: str, line: int, opts: Options, counts: Counts,
          faults: FileFaults) -> int | None:
    try:
        if not opts.round_marks:
            return opts.tick.units(text)
        units, rounding = opts.tick.nearest(text)
    except _Fault as exc:
        faults.add(line, column, str(exc), text)
        return None
    if rounding:
        counts.marks_rounded += 1
        counts.max_mark_rounding = max(counts.max_mark_rounding, rounding)
    return units


def _ticker_row(fields, line, ts, local_us, opts, writers, state, counts, faults) -> None:
    state["ticker_last_us"] = local_us
    # Funding: the rate named for `funding_timestamp` settles at that time; write the last
    # one published once a row names the next funding time.
    funding_text, rate_text = fields[4], fields[5]
    if funding_text and rate_text:
        due = _parse(_micros, fields, 4, "funding_timestamp", line, faults)
        rate = _parse(rate_over_scale, fields, 5, "funding_rate", line, faults)
        if due is not None and rate is not None:
            pending = state.get("funding")
            if pending is not None and due < pending[0]:
                faults.add(line, "funding_timestamp", f"goes backwards from {pending[0]}", funding_text)
            else:
                if pending is not None and due > pending[0]:
                    _write_funding(writers["funding"], opts.symbol, pending)
                state["funding"] = (due, rate)
    mark_text, index_text = fields[10], fields[9]
    if not mark_text:
        counts.ticker_without_mark += 1
        return
    mark = _mark(mark_text, "mark_price", line, opts, counts, faults)
    index = _mark(index_text, "index_price", line, opts, counts, faults) if index_text else None
    if mark is None or (index is None and index_text):
        return
    if mark == 0:
        faults.add(line, "mark_price", "must be > 0", mark_text)
        return
    if state.get("last_mark") != (mark, index):
        state["last_mark"] = (mark, index)
        writers["marks"].add((ts, opts.symbol, mark, index))


def _write_funding(out: TableWriter, symbol: str, pending: tuple[int, tuple[int, int]]) -> None:
    due_us, (rate, scale) = pending
    out.add((due_us * 1000, symbol, rate, scale))


def _finish_funding(writers: dict[str, TableWriter], opts: Options, state: dict,
                    counts: Counts) -> None:
    """The last funding time: written if the data reached it, else reported as pending."""
    pending = state.get("funding")
    if pending is None:
        return
    last = state.get("ticker_last_us")
    if last is not None and last >= pending[0]:
        _write_funding(writers["funding"], opts.symbol, pending)
    else:
        counts.funding_pending = pending[0]


# ---------------------------------------------------------------------------------------
# The vectorised path (depth and trades): the same rules as the row parsers above, as polars
# expressions over a chunk of lines. It only ever accepts a chunk whole; anything it does
# not accept goes to the row-by-row path, which then finds and names the faults.

CHUNK_BYTES = 4 << 20  # whole lines of text per chunk (about 50,000 lines of depth)
US_MAX = INT64_MAX // 1000  # a local_timestamp in µs whose ns still fits an int64


def _units_expr(column: str, grid: Grid) -> pl.Expr:
    """Exact steps of a decimal string column; null where the value is not a plain
    non-negative decimal on the grid that fits an int64."""
    d = grid.decimals
    text = pl.col(column)
    parts = text.str.split_exact(".", 1)
    frac = parts.struct.field("field_1").fill_null("")
    digits = pl.concat_str([parts.struct.field("field_0"), frac.str.slice(0, d).str.pad_end(d, "0")])
    scaled = digits.cast(pl.Int64, strict=False)
    ok = (text.str.contains(r"^[0-9]+(\.[0-9]+)?$") & frac.str.slice(d).str.contains(r"^0*$")
          & (digits.str.len_bytes() <= 18) & (scaled % grid.step_scaled == 0))
    return pl.when(ok).then(scaled // grid.step_scaled)


def _micros_expr(column: str) -> pl.Expr:
    text = pl.col(column)
    value = text.cast(pl.Int64, strict=False)
    return pl.when(text.str.contains(r"^[0-9]{1,18}$") & (value <= US_MAX)).then(value)


def _chunk_frame(data: bytes, lines: int, data_type: str) -> pl.DataFrame | None:
    """The chunk as a frame of strings, one row a line, or None when a line might not
    parse as the csv module parses it: a quote or a CR, bad UTF-8, a line with too many
    fields (polars refuses it), a lost line. A line with too few fields leaves the last
    column null, and an empty line a row of nulls: the callers' null checks refuse both."""
    if b'"' in data or b"\r" in data:
        return None
    names = HEADERS[data_type]
    try:
        frame = pl.read_csv(data, has_header=False, schema={n: pl.String for n in names},
                            quote_char=None, rechunk=False)
    except pl.exceptions.PolarsError:
        return None
    return frame if frame.height == lines else None


def _own_rows(frame: pl.DataFrame, symbol: str) -> tuple[pl.DataFrame, list[tuple[str, int]]]:
    """The rows of `symbol` with their 0-based index in the chunk, and the other symbols' counts."""
    mine = (pl.col("symbol") == symbol).fill_null(False)
    others = (frame.filter(~mine).group_by(pl.col("symbol").fill_null("")).len()
              .sort("symbol").rows())
    return frame.with_row_index("i").filter(mine), others


def _checked(conv: pl.DataFrame, ok: pl.Expr, clock: Clock) -> bool:
    """Every row passes `ok` and local_timestamp never goes backwards (from the clock on)."""
    if not conv.select(ok.fill_null(False).all()).item():
        return False
    local = conv.get_column("local")
    if local.is_empty():
        return True
    return not ((local.diff() < 0).any() or (clock.last_us is not None and local[0] < clock.last_us))


def _commit(conv: pl.DataFrame, others: list[tuple[str, int]], first_line: int, file: str,
            clock: Clock, counts: Counts) -> None:
    for symbol, n in others:
        counts.other_symbol[symbol] = counts.other_symbol.get(symbol, 0) + n
    if conv.height:
        clock.last_us = conv.get_column("local")[-1]
        clock.last_file, clock.last_line = file, first_line + conv.get_column("i")[-1]


def _write(out: TableWriter, rows: pl.DataFrame, columns: list[pl.Expr], symbol: str) -> None:
    seq = (pl.int_range(pl.len(), dtype=pl.Int64) + (out.rows + 1)).alias("seq")
    frame = rows.select((pl.col("local") * 1000).alias("ts"), seq, pl.lit(symbol).alias("symbol"), *columns)
    out.add_table(frame.to_arrow().cast(out.schema))


def _converted(chunk: bytes, lines: int, source: SourceFile, opts: Options, clock: Clock,
               columns: list[str], ok: pl.Expr) -> tuple[pl.DataFrame, list] | None:
    """A chunk's own rows with both clocks in microseconds, price in ticks and amount in
    lots, plus `columns` as given; None when a row fails `ok` or the common checks (times
    present, price > 0), so the row-by-row path takes the chunk and names the fault."""
    frame = _chunk_frame(chunk, lines, source.data_type)
    if frame is None:
        return None
    rows, others = _own_rows(frame, opts.symbol)
    conv = rows.select("i", _micros_expr("local_timestamp").alias("local"),
                       _micros_expr("timestamp").alias("exchange"), *columns,
                       _units_expr("price", opts.tick).alias("price"),
                       _units_expr("amount", opts.lot).alias("qty"))
    common = pl.col("local").is_not_null() & pl.col("exchange").is_not_null() & (pl.col("price") > 0)
    if not _checked(conv, common & ok, clock):
        return None
    return conv, others


def _fast_depth(chunk: bytes, lines: int, first_line: int, source: SourceFile, opts: Options,
                writers: dict[str, TableWriter], clock: Clock, state: dict, counts: Counts) -> bool:
    """_depth_row over a chunk: snapshot runs, the skip before the first snapshot."""
    converted = _converted(chunk, lines, source, opts, clock, ["is_snapshot", "side"],
                           pl.col("is_snapshot").is_in(["true", "false"])
                           & pl.col("side").is_in(list(DEPTH_SIDES)) & pl.col("qty").is_not_null())
    if converted is None:
        return False
    conv, others = converted
    seen_before = state.get("depth_seen_snapshot", False)
    conv = conv.with_columns((pl.col("is_snapshot") == "true").alias("snapshot"))
    conv = conv.with_columns(
        (pl.col("snapshot") & ~pl.col("snapshot").shift(1, fill_value=state.get("depth_in_snapshot", False)))
        .alias("starts"),
        ((pl.col("snapshot").cast(pl.Int64).cum_sum() > 0) | seen_before).alias("seen"))
    starts = conv.filter("starts").get_column("i").to_list()
    counts.snapshots += len(starts)
    counts.reconnects += [f"{source.path.name} row {first_line + i}"
                          for i in (starts if seen_before else starts[1:])]
    kept = conv.filter("seen")
    counts.pre_snapshot += conv.height - kept.height
    if conv.height:
        state["depth_in_snapshot"] = conv.get_column("snapshot")[-1]
        state["depth_seen_snapshot"] = conv.get_column("seen")[-1]
    _commit(conv, others, first_line, source.path.name, clock, counts)
    _write(writers["depth"], kept, [pl.col("side"), pl.col("price"), pl.col("qty"), pl.col("snapshot")],
           opts.symbol)
    return True


def _fast_trades(chunk: bytes, lines: int, first_line: int, source: SourceFile, opts: Options,
                 writers: dict[str, TableWriter], clock: Clock, state: dict, counts: Counts) -> bool:
    """_trade_row over a chunk: `unknown` sides skipped and counted."""
    converted = _converted(chunk, lines, source, opts, clock, ["side", "id"],
                           pl.col("side").is_in(["buy", "sell", "unknown"]) & (pl.col("qty") > 0))
    if converted is None:
        return False
    conv, others = converted
    unknown = conv.filter(pl.col("side") == "unknown").get_column("i")
    if unknown.len():
        counts.unknown_side += unknown.len()
        if counts.first_unknown_side is None:
            counts.first_unknown_side = f"{source.path.name} row {first_line + unknown[0]}"
    _commit(conv, others, first_line, source.path.name, clock, counts)
    _write(writers["trades"], conv.filter(pl.col("side") != "unknown"),
           [pl.col("price"), pl.col("qty"), pl.col("side").alias("aggressor"), pl.col("id").alias("trade_id")],
           opts.symbol)
    return True


FAST = {"incremental_book_L2": _fast_depth, "trades": _fast_trades}


# ---------------------------------------------------------------------------------------


def _key(name: str) -> str:
    """A TOML key: bare when it can be, else quoted."""
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else json.dumps(name)


def _manifest(name: str, symbol: str, options: argparse.Namespace, base: str,
              start_ns: int | None, end_ns: int | None, provenance: str) -> str:
    settle = options.settle
    lines = ["[dataset]", f"name = {json.dumps(name)}"]
    if start_ns is not None and end_ns is not None:
        lines += [f"start_ns = {start_ns}", f"end_ns = {end_ns}"]
    lines += [f"provenance = {json.dumps(provenance)}", "",
              f"[assets.{_key(settle)}]", f"minor_unit = {json.dumps(options.minor_unit)}",
              f"stable = {'true' if settle in ('USDT', 'USDC', 'BUSD', 'FDUSD', 'USD') else 'false'}", "",
              f"[instruments.{_key(symbol)}]", f"kind = {json.dumps(options.instrument_kind)}",
              f"base = {json.dumps(base)}", f"settle = {json.dumps(settle)}",
              f"tick_size = {json.dumps(options.tick_size)}", f"lot_size = {json.dumps(options.lot_size)}",
              f"min_qty = {options.min_qty}", "", "[rules]", 'stp = "cancel_taker"', ""]
    return "\n".join(lines)


def _grid(text: str, option: str) -> Grid:
    try:
        step = Decimal(text)
    except InvalidOperation:
        step = None
    if step is None or not step.is_finite() or step <= 0:
        raise InputError(option, [f"must be a positive decimal such as 0.1 (value: {text!r})"])
    return Grid.of(step)


def _choose_symbol(files: list[SourceFile], wanted: str | None) -> str:
    symbols = sorted({f.first_symbol for f in files if f.first_symbol is not None})
    if wanted:
        return wanted
    if len(symbols) == 1:
        return symbols[0]
    if not symbols:
        raise InputError("--symbol", ["the files hold no data rows, so the symbol cannot be "
                                      "read from them: give --symbol"])
    raise InputError("--symbol", [f"the files hold several symbols ({', '.join(symbols)}): "
                                  "give --symbol (one symbol per dataset)"])


def run(src: Path, out: Path, options: argparse.Namespace,
        progress: Callable[[int, int | None], None]) -> list[str]:
    """Import the Tardis files of `src` into dataset folder `out`; return summary lines."""
    tick = _grid(options.tick_size, "--tick-size")
    lot = _grid(options.lot_size, "--lot-size")
    files, ignored = classify(src)
    for source in files:
        _peek(source)
    symbol = _choose_symbol(files, options.symbol)
    exchanges = sorted({f.exchange for f in files if f.exchange})
    if len(exchanges) > 1:
        raise InputError(str(src), [f"files of several exchanges ({', '.join(exchanges)}): "
                                    "one exchange per dataset"])
    exchange = exchanges[0] if exchanges else "unknown"
    base = options.base or (symbol[: -len(options.settle)] if symbol.endswith(options.settle)
                            and len(symbol) > len(options.settle) else symbol)
    name = options.name or f"tardis-{exchange}-{symbol}"
    opts = Options(symbol, tick, lot, options.mark_rounding == "half-even")
    counts = Counts()
    tick_progress = lambda done: progress(done, None)  # noqa: E731
    with staged_folder(out) as stage:
        # Check the instrument (tick x lot in whole minor units) before reading any row.
        (stage / "dataset.toml").write_text(_manifest(name, symbol, options, base, None, None, ""))
        try:
            load_manifest(stage)
        except InputError as exc:
            raise InputError("--tick-size/--lot-size/--settle/--minor-unit/--min-qty", exc.problems) from None
        present = sorted({f.data_type for f in files}, key=DATA_TYPES.index)
        tables = [TABLE_OF[t] for t in present]
        if "derivative_ticker" in present:
            tables.append("funding")
        writers = {t: TableWriter(stage / f"{t}.parquet", SCHEMAS[t]) for t in tables}
        state: dict = {}
        clocks = {t: Clock() for t in present}
        for source in files:
            _import_file(source, opts, writers, clocks[source.data_type], state, counts, tick_progress)
        if "derivative_ticker" in present:
            _finish_funding(writers, opts, state, counts)
        for writer in writers.values():
            writer.close()
        progress(counts.rows_read, counts.rows_read)
        firsts = [w.first_ts for w in writers.values() if w.first_ts is not None]
        lasts = [w.last_ts for w in writers.values() if w.last_ts is not None]
        start_ns = min(firsts) if firsts else None
        end_ns = max(lasts) + 1 if lasts else None
        provenance = (f"backtest import tardis: {len(files)} Tardis.dev CSV files of {exchange} "
                      f"{symbol} ({', '.join(f.path.name for f in files)}); ts = local_timestamp; "
                      f"marks {'rounded to the nearest tick' if opts.round_marks else 'exact'}")
        (stage / "dataset.toml").write_text(_manifest(name, symbol, options, base, start_ns, end_ns,
                                                      provenance))
        load_manifest(stage)
    return _summary(files, ignored, writers, counts, symbol, exchange, opts)


def _summary(files: list[SourceFile], ignored: list[str], writers: dict[str, TableWriter],
             counts: Counts, symbol: str, exchange: str, opts: Options) -> list[str]:
    lines = [f"read {counts.rows_read:,} rows of {len(files)} Tardis file(s), {exchange} {symbol}"]
    for table, writer in writers.items():
        lines.append(f"{table}: {writer.rows:,} rows")
    if "depth" in writers:
        where = f" (after a reconnect at {', '.join(counts.reconnects[:5])}" + \
                (", ..." if len(counts.reconnects) > 5 else "") + ")" if counts.reconnects else ""
        lines.append(f"depth snapshots: {counts.snapshots}{where}; {counts.pre_snapshot:,} updates "
                     "before the first snapshot skipped")
    if counts.unknown_side:
        lines.append(f"trades with side unknown skipped: {counts.unknown_side:,} (first at "
                     f"{counts.first_unknown_side})")
    if "marks" in writers:
        if opts.round_marks:
            lines.append(f"mark/index prices rounded to the {opts.tick.step} tick: "
                         f"{counts.marks_rounded:,} (largest {counts.max_mark_rounding:.4f} tick)")
        if counts.ticker_without_mark:
            lines.append(f"ticker rows without a mark price skipped: {counts.ticker_without_mark:,}")
        if counts.funding_pending is not None:
            lines.append(f"funding at {counts.funding_pending} us is after the data ends: not written")
    for other, n in sorted(counts.other_symbol.items()):
        lines.append(f"rows of other symbol {other} skipped: {n:,}")
    if ignored:
        lines.append(f"files ignored (not a data type this importer reads): {', '.join(ignored)}")
    return lines
