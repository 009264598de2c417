"""Daily files of Binance's public data archive (data.binance.vision, futures/um and
futures/cm) into a dataset folder.

SRC is a folder (searched recursively, in sorted path order) or one file; each file is a
`.csv` or a `.zip` holding one CSV. The big kinds (trades, aggTrades, bookTicker) are read
in pyarrow blocks and converted by polars expressions (VECTOR_KINDS, below); the others row
by row (csv module); every table is written in Parquet batches, so memory holds one block
or batch per table. The kind of a file comes from its name
`<SYMBOL>-<kind>-<date>` (trades, aggTrades, bookTicker, bookDepth, fundingRate, metrics,
liquidationSnapshot); kline files are named `<SYMBOL>-<interval>-<date>` whatever they hold,
so their kind comes from a folder of their path (markPriceKlines, indexPriceKlines,
premiumIndexKlines) or from --klines. A header row is checked against Binance's published
columns; older archive files have none and are read by position. Rows are named by their
line in the file (the header is line 1).

Tables:
- trades <- trades (trade_id = id) or aggTrades (trade_id = agg_trade_id; skipped for a
  symbol and day that also has a trades file, so no print counts twice); aggressor = sell
  when is_buyer_maker; ts = time / transact_time.
- recorded_book_ticker <- bookTicker (ts = event_time, update_id).
- depth_bands <- bookDepth. Its rows are cumulative size and notional within +-1..5% of the
  mid, not price levels: nothing says at which prices inside a band the size rests, so they
  cannot become `depth` rows without inventing prices; they are kept as bands (depth in
  lots, notional in minor units of the settle asset, percentage as published). A fifth
  column some copies carry (weighted_avg_price, not Binance's) is ignored.
- marks <- markPriceKlines, with index_price from indexPriceKlines of the same bar when
  present. A bar becomes four samples: open at open_time, the two extremes at 1/3 and 2/3 of
  the bar, close at close_time, the extremes ordered open->low->high->close for a bar that
  closes at or above its open and open->high->low->close otherwise (the path inside a bar is
  not published; this common convention keeps every extreme in the table). Index samples
  follow their own bar's order at the same four times. Prices are rounded half-even to
  the tick (binance.py MarkRounding).
- premium_index <- premiumIndexKlines: the bar's close at close_time, over 1e8 exactly.
- funding <- fundingRate (ts = calc_time, rate exact with its scale).
- metrics <- metrics (open interest in lots, its value in minor units, ratios as strings).
- recorded_liquidations <- liquidationSnapshot.
- funding <- also freqtrade's `<BASE>_<QUOTE>_<SETTLE>-<tf>-funding_rate.feather` (Binance's
  funding history as ccxt fetched it, a float64 rate: its shortest repr, rounded half-even
  to Binance's 8 decimals where float noise shows, and counted); freqtrade's other feather
  files (candles) are ignored and listed.
Tables from several files are merged by ts (stable: ties keep file order, files sorted by
path) and `seq` renumbered in that order.
"""

from __future__ import annotations

import argparse
import calendar
import csv
import io
import itertools
import re
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from datasets.folders import staged_folder
from datasets.folders import file_sha256
from datasets.importers.binance import (PRICE_SCALE_1E8, PROGRESS_EVERY, SCHEMAS, Fault, Faults, Grid,
                                        MarkRounding, TableWriter, grids, parse_decimal, rate_scaled,
                                        write_manifest)
from matching.errors import InputError

NS_PER_MS = 1_000_000
MINOR_PER_UNIT = 100_000_000  # minor units (1e-8) per unit of the settle asset

HEADERS = {
    "trades": ("id", "price", "qty", "quote_qty", "time", "is_buyer_maker"),
    "aggTrades": ("agg_trade_id", "price", "quantity", "first_trade_id", "last_trade_id",
                  "transact_time", "is_buyer_maker"),
    "bookTicker": ("update_id", "best_bid_price", "best_bid_qty", "best_ask_price", "best_ask_qty",
                   "transaction_time", "event_time"),
    "bookDepth": ("timestamp", "percentage", "depth", "notional"),
    "fundingRate": ("calc_time", "funding_interval_hours", "last_funding_rate"),
    "metrics": ("create_time", "symbol", "sum_open_interest", "sum_open_interest_value",
                "count_toptrader_long_short_ratio", "sum_toptrader_long_short_ratio",
                "count_long_short_ratio", "sum_taker_long_short_vol_ratio"),
    "liquidationSnapshot": ("time", "side", "order_type", "time_in_force", "original_quantity", "price",
                            "average_price", "order_status", "last_fill_quantity",
                            "accumulated_fill_quantity"),
    "klines": ("open_time", "open", "high", "low", "close", "volume", "close_time", "quote_volume",
               "count", "taker_buy_volume", "taker_buy_quote_volume", "ignore"),
}
KLINE_FOLDERS = {"markPriceKlines": "mark", "indexPriceKlines": "index", "premiumIndexKlines": "premium"}
NAME = re.compile(r"^(?P<symbol>[A-Z0-9_]+)-(?P<kind>[A-Za-z0-9]+)-(?P<date>\d{4}-\d{2}(-\d{2})?)$")
INTERVAL = re.compile(r"^\d+[smhdwM]$")
# freqtrade's futures data (ccxt from Binance's REST API): BASE_QUOTE_SETTLE-<tf>-funding_rate
FREQTRADE_FUNDING = re.compile(r"^(?P<base>[A-Z0-9]+)_(?P<quote>[A-Z0-9]+)_[A-Z0-9]+-\w+-funding_rate$")


class _Source:
    """One archive file: where it is, what it holds."""

    def __init__(self, path: Path, member: str | None, symbol: str, kind: str, date: str) -> None:
        self.path, self.member, self.symbol, self.kind, self.date = path, member, symbol, kind, date

    @property
    def label(self) -> str:
        return f"{self.path}:{self.member}" if self.member else str(self.path)

    @contextmanager
    def open_binary(self) -> Iterator[io.BufferedIOBase]:
        if self.member is None:
            with self.path.open("rb") as fh:
                yield fh
        else:
            with zipfile.ZipFile(self.path) as zf, zf.open(self.member) as raw:
                yield raw

    @contextmanager
    def open(self) -> Iterator[io.TextIOBase]:
        if self.member is None:
            with self.path.open("r", encoding="utf-8", newline="") as fh:
                yield fh
        else:
            with zipfile.ZipFile(self.path) as zf, zf.open(self.member) as raw:
                yield io.TextIOWrapper(raw, encoding="utf-8", newline="")


def _sources(src: Path, options: argparse.Namespace, faults: Faults) -> tuple[list[_Source], list[str]]:
    files = [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file())
    found, ignored = [], []
    for path in files:
        if path.suffix.lower() == ".feather":
            ft = FREQTRADE_FUNDING.match(path.stem)
            if ft and (not options.symbol or options.symbol.upper() == ft["base"] + ft["quote"]):
                found.append(_Source(path, None, ft["base"] + ft["quote"], "freqtradeFunding", ""))
            else:
                ignored.append(path.name)
            continue
        if path.suffix.lower() not in (".csv", ".zip"):
            ignored.append(path.name)
            continue
        member = None
        if path.suffix.lower() == ".zip":
            try:
                with zipfile.ZipFile(path) as zf:
                    members = [n for n in zf.namelist() if n.lower().endswith(".csv")]
            except zipfile.BadZipFile as exc:
                faults.add(str(path), 1, "file", f"not a readable zip: {exc}", path.name)
                continue
            if len(members) != 1:
                faults.add(str(path), 1, "file", "a zip must hold exactly one .csv", members)
                continue
            member = members[0]
        stem = Path(member or path.name).stem.strip()
        m = NAME.match(stem)
        if not m:
            faults.add(str(path), 1, "file name", "expected <SYMBOL>-<kind or interval>-<date>", stem)
            continue
        kind = m["kind"]
        if INTERVAL.match(kind):
            hint = next((KLINE_FOLDERS[p] for p in reversed(path.parts) if p in KLINE_FOLDERS), None)
            kind = hint or options.klines
            if kind is None:
                faults.add(str(path), 1, "file name", "a kline file: say what it holds with "
                           "--klines mark|index|premium (or keep it under markPriceKlines/...)", stem)
                continue
            kind = f"{kind}Klines"
        elif kind not in HEADERS:
            ignored.append(path.name)
            continue
        if options.symbol and m["symbol"] != options.symbol.upper():
            ignored.append(path.name)
            continue
        found.append(_Source(path, member, m["symbol"], kind, m["date"]))
    return found, ignored


def _rows(source: _Source, header: tuple[str, ...], faults: Faults) -> Iterator[tuple[int, dict[str, str]]]:
    """(line, row by column name) of one file; the header, when present, must be Binance's
    (extra trailing columns are allowed and ignored); a file without one is read by position."""
    with source.open() as fh:
        reader = csv.reader(fh)
        first = next(reader, None)
        if first is None:
            return
        names = header
        line = 1
        if first and first[0].strip()[:1].isalpha():
            got = tuple(c.strip() for c in first)
            if got[:len(header)] != header:
                faults.add(source.label, 1, "header", f"expected columns {','.join(header)}", ",".join(got))
                return
            names = got
            rows: Iterator[list[str]] = reader
        else:
            line = 0
            rows = itertools.chain([first], reader)
        for row in rows:
            line += 1
            if not row:
                continue
            if len(row) < len(header):
                faults.add(source.label, line, "row", f"{len(row)} fields where {len(header)} are expected",
                           ",".join(row))
                if faults.full:
                    return
                continue
            yield line, dict(zip(names, row))


def _int_field(row: dict[str, str], column: str) -> int:
    text = row[column].strip()
    try:
        return int(text)
    except ValueError:
        raise Fault("not an integer", text) from None


def _bool_field(row: dict[str, str], column: str) -> bool:
    text = row[column].strip().lower()
    if text not in ("true", "false"):
        raise Fault("expected true or false", row[column])
    return text == "true"


_TS_CACHE: dict[str, int] = {}


def _utc_ns(text: str) -> int:
    """`YYYY-MM-DD HH:MM:SS` UTC as ns."""
    hit = _TS_CACHE.get(text)
    if hit is None:
        try:
            hit = calendar.timegm(time.strptime(text.strip(), "%Y-%m-%d %H:%M:%S")) * 1_000_000_000
        except ValueError:
            raise Fault("expected a UTC time YYYY-MM-DD HH:MM:SS", text) from None
        if len(_TS_CACHE) < 100_000:
            _TS_CACHE[text] = hit
    return hit


def _minor_units(text: str) -> int:
    d = parse_decimal(text)
    scaled = d * MINOR_PER_UNIT
    if scaled != scaled.to_integral_value() or d < 0:
        raise Fault("not a non-negative whole number of minor units (1e-8)", text)
    return int(scaled)


# The big kinds (a day of trades or bookTicker is millions of rows) are read by pyarrow's
# streaming CSV reader as strings and converted with polars expressions a batch at a time;
# the conversion is the same exact arithmetic as Grid's (digits, never floats): a plain
# decimal `I.F` becomes I * 10^D + F[:D] with D the step's decimals, the digits of F past D
# must be zeros, and the result must be a multiple of the step. A row any check rejects is
# converted again by the row-by-row code, which names the column and the reason.
VECTOR_KINDS = {
    "trades": ("trades", (("trade_id", "id", "int"), ("price", "price", "price"), ("qty", "qty", "qty"),
                          ("ms", "time", "int"), ("maker", "is_buyer_maker", "bool"))),
    "aggTrades": ("trades", (("trade_id", "agg_trade_id", "int"), ("price", "price", "price"),
                             ("qty", "quantity", "qty"), ("ms", "transact_time", "int"),
                             ("maker", "is_buyer_maker", "bool"))),
    "bookTicker": ("recorded_book_ticker", (
        ("update_id", "update_id", "int"), ("bid_price", "best_bid_price", "price"),
        ("bid_qty", "best_bid_qty", "qty0"), ("ask_price", "best_ask_price", "price"),
        ("ask_qty", "best_ask_qty", "qty0"), ("ms", "event_time", "int"))),
}
CSV_BLOCK = 1 << 22  # bytes per pyarrow read block


def _grid_units(col: str, step: Decimal) -> tuple[pl.Expr, pl.Expr]:
    """(units of `step`, ok) of the string column `col`: exact, no float on the way."""
    d = max(0, -int(step.as_tuple().exponent))
    step_units = int(step * 10 ** d)
    text = pl.col(col).str.strip_chars()
    plain = text.str.contains(r"^\d{1,%d}(\.\d*)?$" % max(1, 17 - d))
    whole = text.str.extract(r"^(\d+)", 1).cast(pl.Int64, strict=False)
    frac = text.str.extract(r"\.(\d*)$", 1).fill_null("")
    head = frac.str.slice(0, d).str.pad_end(d, "0") if d else pl.lit("0")
    tail_zero = frac.str.slice(d).str.contains(r"^0*$")
    units = whole * 10 ** d + head.cast(pl.Int64, strict=False)
    ok = plain & tail_zero & (units % step_units == 0)
    return (units // step_units), ok.fill_null(False)


def _vector_exprs(kind: str, col: str, grid: Grid) -> tuple[pl.Expr, pl.Expr]:
    if kind == "int":
        value = pl.col(col).str.strip_chars().cast(pl.Int64, strict=False)
        return value, value.is_not_null()
    if kind == "bool":
        low = pl.col(col).str.strip_chars().str.to_lowercase()
        return low == "true", low.is_in(["true", "false"]).fill_null(False)
    value, ok = _grid_units(col, grid.tick if kind == "price" else grid.lot)
    return value, ok & ((value > 0) if kind in ("price", "qty") else (value >= 0)).fill_null(False)


def _slow_check(kind: str, grid: Grid, text: str) -> str:
    """The row-by-row conversion of one value, for the message of a rejected row."""
    try:
        if kind == "int":
            int(text.strip())
        elif kind == "bool":
            _bool_field({"x": text}, "x")
        elif kind == "price":
            grid.price_ticks(text)
        else:
            grid.qty_lots(text, zero_ok=kind == "qty0")
    except (Fault, ValueError) as exc:
        return exc.message if isinstance(exc, Fault) else "not an integer"
    return "not a plain decimal (digits with an optional fraction)"


class _Archive:
    """The tables of one archive import, written per source file and merged at the end."""

    def __init__(self, folder: Path, options: argparse.Namespace, faults: Faults,
                 progress: Callable[[int, int | None], None]) -> None:
        self.folder = folder
        self.options = options
        self.faults = faults
        self.progress = progress
        self.parts: dict[str, list[Path]] = {}
        self.counts: dict[str, int] = {}
        self.rows_read = 0
        self.marks_round = MarkRounding(options.mark_rounding)
        self.klines: dict[tuple[str, str], dict[int, tuple]] = {}  # (symbol, kind) -> open_time -> bar
        self.notes: list[str] = []
        self.first_ts: int | None = None
        self.last_ts: int | None = None

    def writer(self, table: str) -> TableWriter:
        parts = self.parts.setdefault(table, [])
        w = TableWriter(self.folder, table)
        w.path = self.folder / f".{table}.part{len(parts)}.parquet"
        parts.append(w.path)
        return w

    def seen_ts(self, ts: int) -> None:
        self.first_ts = ts if self.first_ts is None else min(self.first_ts, ts)
        self.last_ts = ts if self.last_ts is None else max(self.last_ts, ts)

    def each(self, source: _Source, header: tuple[str, ...],
             handle: Callable[[dict[str, str]], None], columns: tuple[str, ...] = ()) -> None:
        """Call `handle(row)` per row; a Fault names the column `handle` was converting
        (`handle` sets self.column before each conversion)."""
        for line, row in _rows(source, header, self.faults):
            self.line = line
            self.column = columns[0] if columns else header[0]
            try:
                handle(row)
            except Fault as f:
                self.faults.add(source.label, line, self.column, f.message, f.value)
                if self.faults.full:
                    return
            self.rows_read += 1
            if self.rows_read % PROGRESS_EVERY == 0:
                self.progress(self.rows_read, None)

    def get(self, row: dict[str, str], column: str, conv: Callable[[str], object]) -> object:
        self.column = column
        return conv(row[column])

    # -- per kind ----------------------------------------------------------------------
    def trades(self, source: _Source, grid: Grid, *, agg: bool) -> None:
        w = self.writer("trades")
        seq = [0]
        cols = HEADERS["aggTrades" if agg else "trades"]
        id_col, qty_col, time_col = (("agg_trade_id", "quantity", "transact_time") if agg
                                     else ("id", "qty", "time"))
        lots = lambda v: grid.qty_lots(v, zero_ok=False)  # noqa: E731

        def handle(row: dict[str, str]) -> None:
            trade_id = self.get(row, id_col, lambda _: _int_field(row, id_col))
            price = self.get(row, "price", grid.price_ticks)
            qty = self.get(row, qty_col, lots)
            ms = self.get(row, time_col, lambda _: _int_field(row, time_col))
            maker = self.get(row, "is_buyer_maker", lambda _: _bool_field(row, "is_buyer_maker"))
            seq[0] += 1
            ts = ms * NS_PER_MS
            self.seen_ts(ts)
            w.add((ts, seq[0], source.symbol, price, qty, "sell" if maker else "buy", trade_id))

        self.each(source, cols, handle)
        w.close()
        self._held(w, source)

    def vector_file(self, source: _Source, grid: Grid) -> None:
        """trades / aggTrades / bookTicker, a pyarrow block at a time (bounded memory)."""
        table, fields = VECTOR_KINDS[source.kind]
        header = HEADERS[source.kind]
        with source.open() as fh:
            first = fh.readline()
        has_header = first[:1].isalpha()
        names = header
        if has_header:
            got = tuple(c.strip() for c in first.strip().split(","))
            if got[:len(header)] != header:
                self.faults.add(source.label, 1, "header", f"expected columns {','.join(header)}",
                                ",".join(got))
                return
            names = got
        skipped: list[int] = []

        def bad_row(row) -> str:
            skipped.append(row.number)
            if row.text.strip():
                self.faults.add(source.label, row.number, "row",
                                f"{row.actual_columns} fields where {row.expected_columns} are expected",
                                row.text)
            return "skip"

        w = self.writer(table)
        first_line = 2 if has_header else 1
        done = 0  # good rows so far
        last_ts: int | None = None
        exprs = [(name, col, kind, *_vector_exprs(kind, col, grid)) for name, col, kind in fields]
        with source.open_binary() as raw:
            reader = pacsv.open_csv(
                raw,
                read_options=pacsv.ReadOptions(column_names=list(names), skip_rows=1 if has_header else 0,
                                               use_threads=False, block_size=CSV_BLOCK),
                parse_options=pacsv.ParseOptions(invalid_row_handler=bad_row, ignore_empty_lines=False),
                convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names}))
            for batch in reader:
                frame = pl.from_arrow(pa.Table.from_batches([batch]))
                assert isinstance(frame, pl.DataFrame)
                conv = frame.select([v.alias(n) for n, _, _, v, _ in exprs]
                                    + [ok.alias(f"ok_{n}") for n, _, _, _, ok in exprs])
                good = pl.all_horizontal([pl.col(f"ok_{n}") for n, _, _, _, _ in exprs])
                bad_at = conv.with_row_index("i").filter(~good)["i"].to_list()
                for i in bad_at:
                    if self.faults.full:
                        break
                    line = _line_of(done + i, first_line, skipped)
                    for name, col, kind, _, _ in exprs:
                        if not conv[f"ok_{name}"][i]:
                            text = frame[col][i]
                            message = _slow_check(kind, grid, text or "")
                            self.faults.add(source.label, line, col, message, text)
                            break
                if self.faults.full:
                    break
                n = frame.height
                ts = (conv["ms"] * NS_PER_MS).fill_null(0)
                mono = ts.cum_max()
                if last_ts is not None:
                    mono = mono.clip(lower_bound=last_ts)
                held = int((ts < mono).sum())
                if n:
                    last_ts = int(mono[-1])
                seq = pl.int_range(w.count + 1, w.count + 1 + n, dtype=pl.Int64, eager=True)
                sym = pl.Series([source.symbol] * n, dtype=pl.String)
                if table == "trades":
                    aggressor = conv.select(pl.when(pl.col("maker")).then(pl.lit("sell"))
                                            .otherwise(pl.lit("buy")).alias("a"))["a"]
                    out = pl.DataFrame({"ts": mono, "seq": seq, "symbol": sym, "price": conv["price"],
                                        "qty": conv["qty"], "aggressor": aggressor,
                                        "trade_id": conv["trade_id"]})
                else:
                    out = pl.DataFrame({"ts": mono, "seq": seq, "symbol": sym, "update_id": conv["update_id"],
                                        "bid_price": conv["bid_price"], "bid_qty": conv["bid_qty"],
                                        "ask_price": conv["ask_price"], "ask_qty": conv["ask_qty"]})
                if n:
                    self.seen_ts(int(mono[0]))
                    self.seen_ts(last_ts)
                w.add_table(out.to_arrow(), held_back=held)
                done += n
                self.rows_read += n
                self.progress(self.rows_read, None)
        w.close()
        self._held(w, source)

    def book_ticker(self, source: _Source, grid: Grid) -> None:
        w = self.writer("recorded_book_ticker")
        seq = [0]
        lots = lambda v: grid.qty_lots(v, zero_ok=True)  # noqa: E731

        def handle(row: dict[str, str]) -> None:
            u = self.get(row, "update_id", lambda _: _int_field(row, "update_id"))
            values = [self.get(row, c, conv) for c, conv in (
                ("best_bid_price", grid.price_ticks), ("best_bid_qty", lots),
                ("best_ask_price", grid.price_ticks), ("best_ask_qty", lots))]
            ms = self.get(row, "event_time", lambda _: _int_field(row, "event_time"))
            seq[0] += 1
            self.seen_ts(ms * NS_PER_MS)
            w.add((ms * NS_PER_MS, seq[0], source.symbol, u, *values))

        self.each(source, HEADERS["bookTicker"], handle)
        w.close()
        self._held(w, source)

    def book_depth(self, source: _Source, grid: Grid) -> None:
        w = self.writer("depth_bands")
        seq = [0]

        def handle(row: dict[str, str]) -> None:
            ts = self.get(row, "timestamp", _utc_ns)
            pct = self.get(row, "percentage", lambda _: _int_field(row, "percentage"))
            depth = self.get(row, "depth", lambda v: grid.qty_lots(v, zero_ok=True))
            notional = self.get(row, "notional", _minor_units)
            seq[0] += 1
            self.seen_ts(ts)
            w.add((ts, seq[0], source.symbol, pct, depth, notional))

        self.each(source, HEADERS["bookDepth"], handle)
        w.close()
        self._held(w, source)

    def funding_rate(self, source: _Source, grid: Grid) -> None:
        w = self.writer("funding")

        def handle(row: dict[str, str]) -> None:
            ms = self.get(row, "calc_time", lambda _: _int_field(row, "calc_time"))
            rate, scale = self.get(row, "last_funding_rate", rate_scaled)
            self.seen_ts(ms * NS_PER_MS)
            w.add((ms * NS_PER_MS, source.symbol, rate, scale))

        self.each(source, HEADERS["fundingRate"], handle)
        w.close()
        self._held(w, source)

    def metrics(self, source: _Source, grid: Grid) -> None:
        w = self.writer("metrics")

        def handle(row: dict[str, str]) -> None:
            ts = self.get(row, "create_time", _utc_ns)
            oi = self.get(row, "sum_open_interest", lambda v: grid.qty_lots(v, zero_ok=True))
            value = self.get(row, "sum_open_interest_value", _minor_units)
            ratios = []
            for c in HEADERS["metrics"][4:]:
                text = row[c].strip()
                if text:
                    self.get(row, c, parse_decimal)
                ratios.append(text or None)
            self.seen_ts(ts)
            w.add((ts, source.symbol, oi, value, *ratios))

        self.each(source, HEADERS["metrics"], handle)
        w.close()
        self._held(w, source)

    def liquidations(self, source: _Source, grid: Grid) -> None:
        w = self.writer("recorded_liquidations")
        seq = [0]
        lots0 = lambda v: grid.qty_lots(v, zero_ok=True)  # noqa: E731

        def handle(row: dict[str, str]) -> None:
            ms = self.get(row, "time", lambda _: _int_field(row, "time"))
            side = row["side"].strip().lower()
            self.column = "side"
            if side not in ("buy", "sell"):
                raise Fault("side must be BUY or SELL", row["side"])
            price = self.get(row, "price", grid.price_ticks)
            qty = self.get(row, "original_quantity", lambda v: grid.qty_lots(v, zero_ok=False))
            last = self.get(row, "last_fill_quantity", lots0)
            filled = self.get(row, "accumulated_fill_quantity", lots0)
            seq[0] += 1
            self.seen_ts(ms * NS_PER_MS)
            w.add((ms * NS_PER_MS, seq[0], source.symbol, side, price, qty, row["average_price"].strip(),
                   row["order_status"].strip(), row["order_type"].strip(), row["time_in_force"].strip(),
                   last, filled, None))

        self.each(source, HEADERS["liquidationSnapshot"], handle)
        w.close()
        self._held(w, source)

    def freqtrade_funding(self, source: _Source) -> None:
        """freqtrade's funding feather (`date`, `open` = the rate as float64, as ccxt parsed
        Binance's 8-decimal string): the float's shortest repr is usually that string again;
        where freqtrade's arithmetic left float noise (-0.0021933400000000002) it is rounded
        half-even to 1e-8, Binance's published precision, and counted. ts = `date`
        (Binance's fundingTime, ms jitter kept)."""
        try:
            frame = pl.read_ipc(source.path, memory_map=False)
        except (OSError, pl.exceptions.ComputeError) as exc:
            self.faults.add(source.label, 1, "file", f"not a readable feather file: {exc}", source.path.name)
            return
        for col in ("date", "open"):
            if col not in frame.columns:
                self.faults.add(source.label, 1, col, "missing column (freqtrade funding has date, open)",
                                None)
                return
        w = self.writer("funding")
        dates = frame["date"].dt.epoch("ns").to_list()
        rounded = 0
        for row, (ts, rate) in enumerate(zip(dates, frame["open"].to_list()), start=1):
            if ts is None or rate is None or rate != rate:
                self.faults.add(source.label, row, "date" if ts is None else "open", "null or NaN", rate)
                continue
            exact = Decimal(repr(float(rate)))
            value = exact.quantize(Decimal("1e-8"), rounding=ROUND_HALF_EVEN)
            rounded += value != exact
            self.seen_ts(ts)
            w.add((ts, source.symbol, int(value * PRICE_SCALE_1E8), PRICE_SCALE_1E8))
            self.rows_read += 1
        w.close()
        self._held(w, source)
        self.notes.append(f"{source.label}: {w.count:,} funding rates from float64; {rounded:,} whose "
                          f"shortest repr has more than 8 decimals rounded half-even to 1e-8 "
                          f"(Binance publishes 8)")

    def kline_file(self, source: _Source) -> None:
        bars = self.klines.setdefault((source.symbol, source.kind), {})

        def handle(row: dict[str, str]) -> None:
            open_ms = self.get(row, "open_time", lambda _: _int_field(row, "open_time"))
            close_ms = self.get(row, "close_time", lambda _: _int_field(row, "close_time"))
            ohlc = tuple(self.get(row, c, lambda v: (parse_decimal(v), v.strip()))
                         for c in ("open", "high", "low", "close"))
            bars[open_ms] = (close_ms, ohlc, source.label, self.line)

        self.each(source, HEADERS["klines"], handle)

    def _held(self, w: TableWriter, source: _Source) -> None:
        if w.held_back:
            self.notes.append(f"{source.label}: ts held back on {w.held_back:,} rows to keep file order")

    # -- klines into marks and premium_index -------------------------------------------
    def kline_tables(self, grid_of: dict[str, Grid]) -> None:
        for (symbol, kind), bars in sorted(self.klines.items()):
            if kind == "premiumKlines":
                w = self.writer("premium_index")
                for open_ms in sorted(bars):
                    close_ms, ohlc, label, line = bars[open_ms]
                    d, text = ohlc[3]
                    scaled = d * PRICE_SCALE_1E8
                    if scaled != scaled.to_integral_value():
                        self.faults.add(label, line, "close", "premium has more than 8 decimals", text)
                        continue
                    self.seen_ts(close_ms * NS_PER_MS)
                    w.add((close_ms * NS_PER_MS, symbol, int(scaled), ))
                w.close()
        for (symbol, kind), bars in sorted(self.klines.items()):
            if kind != "markKlines":
                continue
            grid = grid_of[symbol]
            index = self.klines.get((symbol, "indexKlines"), {})
            w = self.writer("marks")
            low: tuple | None = None
            for open_ms in sorted(bars):
                close_ms, ohlc, label, line = bars[open_ms]
                times = _path_times(open_ms, close_ms)
                marks = [self._tick(grid, v, label, line, c) for v, c in _path(ohlc)]
                other = index.get(open_ms)
                idx = ([self._tick(grid, v, other[2], other[3], c) for v, c in _path(other[1])]
                       if other else [None] * 4)
                for t, m, i in zip(times, marks, idx):
                    self.seen_ts(t * NS_PER_MS)
                    w.add((t * NS_PER_MS, symbol, m, i))
                if low is None or ohlc[2][0] < low[0]:
                    low = (ohlc[2][0], ohlc[2][1], open_ms, min(m for m in marks if m is not None))
            w.close()
            if low is not None:
                self.notes.append(
                    f"{symbol} marks from mark-price klines: {len(bars):,} bars -> {4 * len(bars):,} rows, "
                    f"{sum(1 for t in bars if t in index):,} with an index price; lowest bar low "
                    f"{low[1]} (mark {(low[3] * grid.tick):f}) in the bar opening "
                    f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(low[2] // 1000))} UTC")
        for (symbol, kind), bars in sorted(self.klines.items()):
            if kind == "indexKlines" and (symbol, "markKlines") not in self.klines:
                self.notes.append(f"{symbol}: index-price klines without mark-price klines are not "
                                  f"written (marks needs a mark price): {len(bars):,} bars skipped")

    def _tick(self, grid: Grid, value: tuple, label: str, line: int, column: str) -> int | None:
        try:
            return self.marks_round.ticks(grid, value[1])
        except Fault as f:
            self.faults.add(label, line, column, f.message, f.value)
            return None

    # -- merge ---------------------------------------------------------------------------
    def merge(self) -> None:
        """Each table from its part files. One part is already in file order with ts held
        monotone and seq 1..n: it is renamed. Several are concatenated in file order and
        sorted stably by ts (polars; ties keep file order), seq renumbered 1.. in that order."""
        for table, parts in sorted(self.parts.items()):
            target = self.folder / f"{table}.parquet"
            if len(parts) == 1:
                parts[0].rename(target)
            else:
                lf = pl.concat([pl.scan_parquet(p) for p in parts], how="vertical")
                lf = lf.sort("ts", maintain_order=True)
                if "seq" in SCHEMAS[table].names:
                    lf = (lf.with_row_index("row", offset=1)
                          .with_columns(pl.col("row").cast(pl.Int64).alias("seq")).drop("row"))
                lf.sink_parquet(target, compression="zstd", row_group_size=65_536)
                for p in parts:
                    p.unlink()
            self.counts[table] = pq.ParquetFile(target).metadata.num_rows


def _line_of(index: int, first_line: int, skipped: list[int]) -> int:
    """The file line of the `index`-th (0-based) row pyarrow kept, given the lines it
    skipped (bad or blank rows)."""
    line = first_line + index
    for s in sorted(skipped):
        if s <= line:
            line += 1
    return line


def _path(ohlc: tuple) -> list[tuple[tuple, str]]:
    """The bar's four samples with their column names, in the assumed order."""
    o, h, lo, c = ohlc
    if c[0] >= o[0]:
        return [(o, "open"), (lo, "low"), (h, "high"), (c, "close")]
    return [(o, "open"), (h, "high"), (lo, "low"), (c, "close")]


def _path_times(open_ms: int, close_ms: int) -> list[int]:
    span = close_ms + 1 - open_ms
    return [open_ms, open_ms + span // 3, open_ms + 2 * span // 3, close_ms]


def import_archive(src: Path, out: Path, options: argparse.Namespace,
                   progress: Callable[[int, int | None], None]) -> list[str]:
    """Import the archive files of `src` into the dataset folder `out`; return summary lines."""
    if not src.exists():
        raise InputError(str(src), ["file not found: SRC is a recording <sym>_<date>.gz or a folder"])
    faults = Faults()
    sources, ignored = _sources(src, options, faults)
    faults.raise_if_any()
    if not sources:
        raise InputError(str(src), ["no Binance archive files found (<SYMBOL>-<kind>-<date>.csv or .zip)"])
    grid_of = grids([s.symbol for s in sources], options)
    with_trades = {(s.symbol, s.date) for s in sources if s.kind == "trades"}
    lines: list[str] = []
    with staged_folder(out) as folder:
        arch = _Archive(folder, options, faults, progress)
        by_kind: dict[str, int] = {}
        for source in sources:
            grid = grid_of[source.symbol]
            kind = source.kind
            by_kind[kind] = by_kind.get(kind, 0) + 1
            if kind in VECTOR_KINDS and not getattr(options, "row_by_row", False):
                if kind == "aggTrades" and (source.symbol, source.date) in with_trades:
                    arch.notes.append(f"{source.label}: skipped, the trades file of that day is used")
                else:
                    arch.vector_file(source, grid)
            elif kind == "trades":
                arch.trades(source, grid, agg=False)
            elif kind == "aggTrades":
                if (source.symbol, source.date) in with_trades:
                    arch.notes.append(f"{source.label}: skipped, the trades file of that day is used")
                else:
                    arch.trades(source, grid, agg=True)
            elif kind == "bookTicker":
                arch.book_ticker(source, grid)
            elif kind == "bookDepth":
                arch.book_depth(source, grid)
            elif kind == "fundingRate":
                arch.funding_rate(source, grid)
            elif kind == "metrics":
                arch.metrics(source, grid)
            elif kind == "liquidationSnapshot":
                arch.liquidations(source, grid)
            elif kind == "freqtradeFunding":
                arch.freqtrade_funding(source)
            else:
                arch.kline_file(source)
            if faults.full:
                break
        faults.raise_if_any()
        arch.kline_tables(grid_of)
        faults.raise_if_any()
        arch.merge()
        progress(arch.rows_read, arch.rows_read)
        lines.append(f"binance archive {src.name}: {len(sources)} files ("
                     + ", ".join(f"{k} {v}" for k, v in sorted(by_kind.items()))
                     + f"), {arch.rows_read:,} rows")
        lines.append("tables: " + ", ".join(f"{t} {n:,} rows" for t, n in sorted(arch.counts.items())))
        if "marks" in arch.counts:
            lines.append(arch.marks_round.summary())
        lines += arch.notes
        if ignored:
            lines.append(f"ignored files: {', '.join(ignored)}")
        digest = ", ".join(f"{s.path.name} sha256 {file_sha256(s.path)[:16]}" for s in sources)
        write_manifest(
            folder, name=f"binance-archive-{src.name}",
            start_ns=arch.first_ts, end_ns=None if arch.last_ts is None else arch.last_ts + 1,
            provenance=f"backtest import binance {src.name} ({digest})", grid_of=grid_of,
            options=options,
            extra={"kind": "binance public archive", "ts": "venue times (event/transaction/calc/open-close)",
                   "files": len(sources)})
    return lines
