"""`backtest import binance SRC OUT`: Binance USDⓈ-M market data into a dataset folder.

Two source forms (the code of each lives beside this module):
- a websocket recording `<sym>_<date>.gz`, one message a line `<local ns> <json>` (depthUpdate
  diffs, the REST depth snapshot, trade, bookTicker, markPriceUpdate, forceOrder), the
  hftbacktest collector's format: datasets/importers/binance_ws.py;
- a folder of daily files of Binance's public archive (data.binance.vision), each `.csv` or a
  `.zip` holding one: trades, aggTrades, bookTicker, bookDepth, mark/index/premium-index
  klines, fundingRate, metrics, liquidationSnapshot: datasets/importers/binance_csv.py.

This module holds what both share: the instrument grid (tick and lot sizes the data cannot
tell: defaults for BTCUSDT, ETHUSDT and the COIN-M BTCUSD_PERP/ETHUSD_PERP, else
--tick-size/--lot-size), the exact decimal-string to ticks/lots conversion, the batched
Parquet writers of the output tables, the fault list, and dataset.toml.

Choices, documented in docs/import-binance.md:
- `ts` is the venue's event time `E` (ms, times 1e6 to ns) of each message; `--time local`
  uses the recorder's receive time instead. Each table keeps the recording's order and `ts`
  never goes backwards within a table: a row whose time is earlier than the row before it
  takes that row's time, and the number of such rows is in the summary.
- `seq` (websocket form) counts rows over all tables in recording order, so it is unique in
  every table and reproduces the recording's interleaving; archive tables number their rows
  after the merge by `ts`.
- Prices convert to ticks and sizes to lots exactly (Decimal with the Inexact trap); a value
  off the grid is an InputError naming file, row (the line in the file, 1-based: a CSV's
  header is line 1) and column (the JSON field or CSV column), all faults of the input up to
  MAX_FAULTS. Mark and index prices are computed by Binance with 8 decimals and are not on
  the trading grid: they are rounded half-even to the tick (`--mark-rounding error` makes
  that an error instead) and the count and the largest change are in the summary.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import (ROUND_HALF_EVEN, Context, Decimal, DivisionByZero, Inexact, InvalidOperation)
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from datasets.orders import MAX_FAULTS
from matching.errors import InputError

HELP = "Binance USDⓈ-M websocket recordings or public-archive daily CSV files"
DESCRIPTION = (
    "SRC is either a websocket recording `<sym>_<date>.gz` (lines `<local ns> <json>`: "
    "depthUpdate, the REST depth snapshot, trade, bookTicker, markPriceUpdate, forceOrder) or "
    "a folder of Binance public-archive daily files (.csv or .zip: trades, aggTrades, "
    "bookTicker, bookDepth, mark/index/premium-index klines, fundingRate, metrics, "
    "liquidationSnapshot; freqtrade's funding_rate .feather). Writes depth (rebuilt from "
    "the snapshot with `pu` continuity checked; every gap reported), trades, marks, funding, "
    "recorded_book_ticker, recorded_liquidations and the side tables documented in "
    "docs/import-binance.md. ts is the venue's event time E. Tick and lot sizes default "
    "for BTCUSDT (0.1, 0.001), "
    "ETHUSDT (0.01, 0.001), XRPUSDT (0.0001, 0.1), BTCUSD_PERP (0.1, 1) and ETHUSD_PERP (0.01, 1).")
EPILOG = ("backtest import binance ../shared/data/binance-usdm-ws-hftbacktest/btcusdt_20240808.gz "
          "/tmp/btc")

PRICE_SCALE_1E8 = 100_000_000
BATCH_ROWS = 65_536
PROGRESS_EVERY = 10_000


@dataclass(frozen=True)
class InstrumentDefaults:
    kind: str
    base: str
    settle: str
    tick_size: str
    lot_size: str


# Binance's exchangeInfo filters (PRICE_FILTER tickSize, LOT_SIZE stepSize) as of 2024-2025.
DEFAULTS = {
    "BTCUSDT": InstrumentDefaults("linear_perpetual", "BTC", "USDT", "0.1", "0.001"),
    "ETHUSDT": InstrumentDefaults("linear_perpetual", "ETH", "USDT", "0.01", "0.001"),
    "XRPUSDT": InstrumentDefaults("linear_perpetual", "XRP", "USDT", "0.0001", "0.1"),
    "BTCUSD_PERP": InstrumentDefaults("inverse_perpetual", "BTC", "BTC", "0.1", "1"),
    "ETHUSD_PERP": InstrumentDefaults("inverse_perpetual", "ETH", "ETH", "0.01", "1"),
}
MINOR_UNIT = "0.00000001"
STABLE = ("USDT", "USDC", "BUSD", "FDUSD")

# Exact: a division whose quotient needs more than 60 digits, or is not exact, traps.
_EXACT = Context(prec=60, traps=[InvalidOperation, Inexact, DivisionByZero])
_ROUNDING = Context(prec=60, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero])


class Fault(ValueError):
    """One bad value: the message and the offending text (the caller adds row and column)."""

    def __init__(self, message: str, value: object) -> None:
        super().__init__(message)
        self.message = message
        self.value = value


def parse_decimal(text: object) -> Decimal:
    """`text` (a JSON or CSV string) as a finite Decimal, or Fault."""
    if not isinstance(text, str):
        raise Fault("expected a decimal string", text)
    try:
        d = Decimal(text)
    except InvalidOperation:
        raise Fault("not a decimal number", text) from None
    if not d.is_finite():
        raise Fault("not a finite number", text)
    return d


def _step_digits(step: Decimal) -> tuple[int, int]:
    """(D, step x 10^D): the step's decimals and the step as an integer at that scale."""
    exponent = step.as_tuple().exponent
    assert isinstance(exponent, int)
    d = max(0, -exponent)
    return d, int(step * 10 ** d)


def _plain_units(text: str, digits: int, step_units: int) -> int | None:
    """Fast path of the exact conversion for a plain decimal `I.F` (what Binance sends):
    I x 10^D + F[:D] when the digits of F past D are zeros and the result is a multiple of
    the step, as a whole number of steps; None for anything else (the Decimal path then
    decides and names the fault).

    >>> _plain_units("61800.30", 1, 1), _plain_units("0.0005", 3, 1), _plain_units("-1", 1, 1)
    (618003, None, None)
    """
    whole, _, frac = text.partition(".")
    if not (whole.isdigit() and whole.isascii() and len(whole) <= 18 - digits
            and (not frac or (frac.isdigit() and frac.isascii()))):
        return None
    if frac[digits:].strip("0"):
        return None
    units = int(whole) * 10 ** digits + (int(frac[:digits].ljust(digits, "0")) if digits else 0)
    q, r = divmod(units, step_units)
    return None if r else q


@dataclass(frozen=True)
class Grid:
    """One instrument's tick and lot sizes and the conversions onto them."""

    symbol: str
    tick: Decimal
    lot: Decimal

    def __post_init__(self) -> None:
        object.__setattr__(self, "_tick_digits", _step_digits(self.tick))
        object.__setattr__(self, "_lot_digits", _step_digits(self.lot))

    def price_ticks(self, text: object) -> int:
        """A price > 0 in whole ticks; Fault when off the grid (never rounded).

        >>> Grid("X", Decimal("0.1"), Decimal("0.001")).price_ticks("61800.30")
        618003
        """
        if isinstance(text, str):
            fast = _plain_units(text, *self._tick_digits)  # type: ignore[attr-defined]
            if fast:
                return fast
        d = parse_decimal(text)
        if d <= 0:
            raise Fault("price must be > 0", text)
        return self._units(d, self.tick, "price", text)

    def qty_lots(self, text: object, *, zero_ok: bool) -> int:
        """A size in whole lots (>= 0 where `zero_ok`, else > 0); Fault when off the grid."""
        if isinstance(text, str):
            fast = _plain_units(text, *self._lot_digits)  # type: ignore[attr-defined]
            if fast or (fast == 0 and zero_ok):
                return fast
        d = parse_decimal(text)
        if d < 0 or (d == 0 and not zero_ok):
            raise Fault("size must be >= 0" if zero_ok else "size must be > 0", text)
        return self._units(d, self.lot, "size", text)

    def _units(self, d: Decimal, step: Decimal, what: str, text: object) -> int:
        try:
            q = _EXACT.divide(d, step)
        except Inexact:
            q = None
        if q is None or q != q.to_integral_value():
            raise Fault(f"{what} is not a whole number of {'ticks' if what == 'price' else 'lots'} "
                        f"({self.symbol} {'tick_size' if what == 'price' else 'lot_size'} {step})", text)
        return int(q)


class MarkRounding:
    """Mark and index prices onto the tick grid: half-even rounding counted (or an error)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.rounded = 0
        self.largest = Decimal(0)  # largest |rounded - exact|, in price units

    def ticks(self, grid: Grid, text: object) -> int:
        d = parse_decimal(text)
        if d <= 0:
            raise Fault("price must be > 0", text)
        q = _ROUNDING.divide(d, grid.tick)
        whole = q.to_integral_value(rounding=ROUND_HALF_EVEN)
        if whole != q:
            if self.mode == "error":
                raise Fault(f"price is not a whole number of ticks ({grid.symbol} tick_size {grid.tick}; "
                            f"--mark-rounding half-even rounds it)", text)
            self.rounded += 1
            self.largest = max(self.largest, abs(whole * grid.tick - d))
        if whole <= 0:
            raise Fault("price rounds to 0 ticks", text)
        return int(whole)

    def summary(self) -> str:
        if self.mode == "error" or not self.rounded:
            return "mark/index prices: all on the tick grid"
        return (f"mark/index prices rounded half-even to the tick: {self.rounded:,} values, "
                f"largest change {self.largest.normalize():f}")


def rate_scaled(text: object) -> tuple[int, int]:
    """A rate as (integer, scale): scale 1e8 when the text has at most 8 decimals, else the
    power of ten the text needs, so no rate is ever rounded.

    >>> rate_scaled("-0.00219334")
    (-219334, 100000000)
    """
    d = parse_decimal(text)
    exponent = d.as_tuple().exponent
    assert isinstance(exponent, int)
    scale = PRICE_SCALE_1E8 if -exponent <= 8 else 10 ** -exponent
    value = int(d * scale)
    if scale > 10 ** 18 or not -(2 ** 63) <= value < 2 ** 63:
        raise Fault("rate needs more digits than a 64-bit integer holds", text)
    return value, scale


class Faults:
    """The faults of one import, each `row R, column C: message (value: V)`, grouped by file;
    `full` once MAX_FAULTS are held (the importer then stops reading)."""

    def __init__(self) -> None:
        self.by_file: dict[str, list[str]] = {}
        self.count = 0

    def add(self, path: str, row: int, column: str, message: str, value: object) -> None:
        if isinstance(value, str) and len(value) > 80:
            value = value[:77] + "..."
        self.by_file.setdefault(path, []).append(f"row {row}, column {column}: {message} (value: {value!r})")
        self.count += 1

    @property
    def full(self) -> bool:
        return self.count >= MAX_FAULTS

    def raise_if_any(self) -> None:
        if not self.by_file:
            return
        if len(self.by_file) == 1:
            path, problems = next(iter(self.by_file.items()))
            raise InputError(path, problems)
        problems = [f"{p}: {msg}" for p, msgs in self.by_file.items() for msg in msgs]
        raise InputError(", ".join(self.by_file), problems)


# Output tables. depth/trades/marks/funding/premium_index follow DESIGN.md's contracts (and
# datasets/tables.py) column for column; the recorded_* and side tables are the importer's.
S, I, B = pa.string(), pa.int64(), pa.bool_()
SCHEMAS = {
    "depth": pa.schema([("ts", I), ("seq", I), ("symbol", S), ("side", S), ("price", I), ("qty", I),
                        ("snapshot", B)]),
    "trades": pa.schema([("ts", I), ("seq", I), ("symbol", S), ("price", I), ("qty", I),
                         ("aggressor", S), ("trade_id", I)]),
    "marks": pa.schema([("ts", I), ("symbol", S), ("mark_price", I), ("index_price", I)]),
    "funding": pa.schema([("ts", I), ("symbol", S), ("rate", I), ("scale", I)]),
    "premium_index": pa.schema([("ts", I), ("symbol", S), ("premium", I)]),
    "recorded_book_ticker": pa.schema([("ts", I), ("seq", I), ("symbol", S), ("update_id", I),
                                       ("bid_price", I), ("bid_qty", I), ("ask_price", I),
                                       ("ask_qty", I)]),
    # price: the liquidation order's limit price (ticks); avg_price kept as Binance's decimal
    # string (an average of fills is not on the grid); sizes in lots.
    "recorded_liquidations": pa.schema([("ts", I), ("seq", I), ("symbol", S), ("side", S),
                                        ("price", I), ("qty", I), ("avg_price", S), ("status", S),
                                        ("order_type", S), ("tif", S), ("last_fill_qty", I),
                                        ("filled_qty", I), ("trade_ts", I)]),
    # One row per depth message applied (and per snapshot): the venue's update ids of the
    # depth rows seq_first..seq_last, so a replay can be checked against bookTicker by id.
    "depth_messages": pa.schema([("ts", I), ("seq_first", I), ("seq_last", I), ("symbol", S),
                                 ("kind", S), ("first_update_id", I), ("update_id", I),
                                 ("prev_update_id", I), ("line", I)]),
    # Every discontinuity of the depth stream, never silent: where (line, ts, ids) and what.
    "depth_gaps": pa.schema([("ts", I), ("symbol", S), ("line", I), ("kind", S),
                             ("expected", I), ("got", I), ("update_id", I)]),
    # bookDepth: cumulative size and notional within +-percentage of the mid (not levels).
    "depth_bands": pa.schema([("ts", I), ("seq", I), ("symbol", S), ("percentage", I), ("depth", I),
                              ("notional", I)]),
    # metrics: open interest in lots, its value in minor units; ratios as Binance's strings.
    "metrics": pa.schema([("ts", I), ("symbol", S), ("open_interest", I), ("open_interest_value", I),
                          ("count_toptrader_long_short_ratio", S),
                          ("sum_toptrader_long_short_ratio", S), ("count_long_short_ratio", S),
                          ("sum_taker_long_short_vol_ratio", S)]),
}


class TableWriter:
    """Rows appended one at a time (a tuple in schema order), written in row groups of
    BATCH_ROWS with zstd, so memory holds one batch; `ts` is held monotone (a row earlier
    than the one before takes its time, counted in `held_back`)."""

    def __init__(self, folder: Path, name: str) -> None:
        self.name = name
        self.schema = SCHEMAS[name]
        self.path = folder / f"{name}.parquet"
        self.rows: list[tuple] = []
        self.count = 0
        self.held_back = 0
        self.last_ts: int | None = None
        self._writer: pq.ParquetWriter | None = None
        self._monotone = self.schema.names[0] == "ts"

    def add(self, row: tuple) -> None:
        if self._monotone:
            ts = row[0]
            if self.last_ts is not None and ts < self.last_ts:
                self.held_back += 1
                row = (self.last_ts,) + row[1:]
            else:
                self.last_ts = ts
        self.rows.append(row)
        if len(self.rows) >= BATCH_ROWS:
            self.flush()

    def add_table(self, table: pa.Table, *, held_back: int = 0) -> None:
        """Append a whole batch (already in schema order, `ts` already monotone: the caller
        counts the rows it held back); `last_ts` must be the batch's last ts."""
        self.flush()
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, self.schema, compression="zstd")
        self._writer.write_table(table.cast(self.schema), row_group_size=BATCH_ROWS)
        self.count += table.num_rows
        self.held_back += held_back
        if table.num_rows and self._monotone:
            self.last_ts = table.column("ts")[-1].as_py()

    def flush(self) -> None:
        if not self.rows:
            return
        columns = list(zip(*self.rows))
        table = pa.table([pa.array(c, type=f.type) for c, f in zip(columns, self.schema)], schema=self.schema)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, self.schema, compression="zstd")
        self._writer.write_table(table, row_group_size=BATCH_ROWS)
        self.count += len(self.rows)
        self.rows = []

    def close(self) -> None:
        self.flush()
        if self._writer is None:
            pq.write_table(self.schema.empty_table(), self.path, compression="zstd")
        else:
            self._writer.close()


def grids(symbols: Sequence[str], options: argparse.Namespace) -> dict[str, Grid]:
    """The grid of each symbol: --tick-size/--lot-size where given, else DEFAULTS; a symbol
    with neither is an InputError saying which option to add."""
    out, problems = {}, []
    for symbol in sorted(set(symbols)):
        d = DEFAULTS.get(symbol)
        tick = getattr(options, "tick_size", None) or (d.tick_size if d else None)
        lot = getattr(options, "lot_size", None) or (d.lot_size if d else None)
        if tick is None or lot is None:
            problems.append(f"symbol {symbol}: tick and lot sizes unknown; give --tick-size and --lot-size")
            continue
        try:
            t, lt = Decimal(tick), Decimal(lot)
        except InvalidOperation:
            problems.append(f"--tick-size/--lot-size: not decimal numbers ({tick!r}, {lot!r})")
            continue
        if not (t.is_finite() and lt.is_finite() and t > 0 and lt > 0):
            problems.append(f"--tick-size/--lot-size: must be > 0 ({tick!r}, {lot!r})")
            continue
        out[symbol] = Grid(symbol, t, lt)
    if problems:
        raise InputError("command line", problems)
    return out


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_manifest(folder: Path, *, name: str, start_ns: int | None, end_ns: int | None,
                   provenance: str, grid_of: dict[str, Grid], options: argparse.Namespace,
                   extra: dict[str, object]) -> None:
    """dataset.toml: [dataset], the assets the instruments name, [instruments.*] and an
    [import] table of the importer's choices and counts (ignored by the loader)."""
    lines = ["[dataset]", f"name = {_quote(name)}"]
    if start_ns is not None and end_ns is not None:
        lines += [f"start_ns = {start_ns}", f"end_ns = {end_ns}"]
    lines += [f"provenance = {_quote(provenance)}", ""]
    specs = {}
    for symbol, grid in sorted(grid_of.items()):
        d = DEFAULTS.get(symbol)
        kind = d.kind if d else "linear_perpetual"
        base = d.base if d else (symbol[:-4] if symbol.endswith(("USDT", "USDC")) else symbol)
        settle = d.settle if d else (symbol[-4:] if symbol.endswith(("USDT", "USDC")) else "USDT")
        specs[symbol] = (kind, base, settle, grid)
    assets = sorted({a for _, base, settle, _ in specs.values() for a in (base, settle)})
    for asset in assets:
        lines += [f"[assets.{asset}]", f"minor_unit = {_quote(MINOR_UNIT)}",
                  f"stable = {'true' if asset in STABLE else 'false'}", ""]
    for symbol, (kind, base, settle, grid) in specs.items():
        lines += [f"[instruments.{symbol}]", f"kind = {_quote(kind)}", f"base = {_quote(base)}",
                  f"settle = {_quote(settle)}", f"tick_size = {_quote(str(grid.tick))}",
                  f"lot_size = {_quote(str(grid.lot))}", "min_qty = 1", ""]
    lines.append("[import]")
    for key, value in extra.items():
        lines.append(f"{key} = {value if isinstance(value, int) else _quote(str(value))}")
    (folder / "dataset.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--symbol", default=None,
                        help="keep only this symbol (default: every symbol in SRC)")
    parser.add_argument("--tick-size", default=None, metavar="DECIMAL",
                        help="price tick (exact decimal, e.g. 0.01) for every symbol of SRC; "
                             "required for a symbol without a default")
    parser.add_argument("--lot-size", default=None, metavar="DECIMAL",
                        help="quantity step (e.g. 0.001) for every symbol of SRC; required for a "
                             "symbol without a default")
    parser.add_argument("--time", choices=("venue", "local"), default="venue",
                        help="ts from the venue's event time E (default) or the recorder's "
                             "receive time (websocket recordings only)")
    parser.add_argument("--before-snapshot", choices=("buffer", "drop"), default="buffer",
                        help="depth diffs recorded before the REST snapshot: held and applied "
                             "from the one that straddles it, as Binance documents (default), "
                             "or dropped (then the first diff after it may leave a gap)")
    parser.add_argument("--mark-rounding", choices=("half-even", "error"), default="half-even",
                        help="mark/index prices off the tick grid: round half-even and count "
                             "(default) or reject")
    parser.add_argument("--klines", choices=("mark", "index", "premium"), default=None,
                        help="what the kline files `<SYM>-<interval>-<date>` of SRC hold, when "
                             "their folder name (markPriceKlines, indexPriceKlines, "
                             "premiumIndexKlines) does not say")


def run(src: Path, out: Path, options: argparse.Namespace,
        progress: Callable[[int, int | None], None]) -> list[str]:
    """Import SRC (a recording file or an archive folder) into the dataset folder OUT."""
    if src.is_dir() or src.suffix.lower() in (".csv", ".zip", ".feather"):
        from datasets.importers.binance_csv import import_archive
        return import_archive(src, out, options, progress)
    if not src.is_file():
        raise InputError(str(src), ["file not found: SRC is a recording <sym>_<date>.gz or a folder"])
    from datasets.importers.binance_ws import import_recording
    return import_recording(src, out, options, progress)
