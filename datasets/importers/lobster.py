"""`backtest import lobster`: a LOBSTER message + orderbook pair as an order-flow dataset.

LOBSTER (lobsterdata.com) reconstructs NASDAQ TotalView-ITCH into two CSV files without a
header, row i of the orderbook file being the book after row i of the message file:
- message: time (seconds after midnight, a decimal with up to 9 places), type (1 new limit,
  2 partial cancel, 3 delete, 4 visible execution, 5 hidden execution, 7 halt), order id,
  size (shares), price (USD x 10000), direction (1 buy order, -1 sell order);
- orderbook: per level 1..L `ask_price, ask_size, bid_price, bid_size`; an empty level is
  ask 9999999999 / bid -9999999999 with size 0.

What the dataset folder holds (docs/import-lobster.md has the details):
- `orders.parquet` (datasets/orders.py's schema plus `source_row`, the 1-based message row,
  and `synthetic`, null for a message and the reason for an instruction the importer
  added). Type 1 is a GTC limit of account `lobster`; 2 an amend to the reduced open qty
  (a cancel when nothing would be left); 3 a cancel; 4 the marketable order that caused the
  execution: an IOC limit of account `taker` on the opposite side, at the execution price,
  sized to the execution. Types 5 and 7 are counted, not replayed. Every `stp` is "none".
- `expected_book.parquet`: the recorded top L levels after each message row, wide: one row
  per message row with `source_row`, `ts`, then `ask_price_j, ask_qty_j, bid_price_j,
  bid_qty_j` for j = 1..L (ticks and lots; null for an empty level, never a sentinel).
- `dataset.toml`: one `equity` instrument; tick 0.01 USD (100 LOBSTER price units) and lot
  1 share by default; settlement asset USD with minor unit 0.0001 (LOBSTER's price unit,
  so tick x lot is a whole number of minor units for any tick the options allow: 100 by
  default); a `[source]` table with the message counts, synthetic counts and accuracy.

Keeping the reconstruction in step with the recording. A level-L message file only carries
events inside the top L levels, and orders resting before the file starts are absent, so
the importer drives our own matcher (matching.Matcher) as it writes the instructions and
emits synthetic instructions, each flagged with its reason (datasets/importers/
lobster_book.py does this):
- `seed`: the book before the first message (orderbook row 1 with message 1 undone),
  before message 1;
- `missing`: liquidity the recorded top L shows after a message that we lack, one order
  per level;
- `excess` / `absent`: liquidity we hold within the recorded top L beyond the recorded size
  (at a recorded price) or at a price the recording does not show, cancelled or reduced;
- `deep`: what we hold just beyond a full window, set from the next recorded row (one
  message changes one order inside the window, so a level the next row shows beyond this
  row's worst was already there); a next row with a side not full means nothing beyond;
- at the end of row i-1's alignment, corrections for message i that leave every level's
  total as it is (so the book still equals row i-1): `unseen` (an order never submitted in
  the file and not on our book takes the place of liquidity at its price that no later
  message names), `resize` (a delete removes the order's whole open qty and an execution
  needs at least its size, so its qty is set to that, the difference given to or taken
  from liquidity no later message names), `requeue` (orders ahead of an executed order at
  its price that a later message names go behind it: an amend to qty + 1 sends an order to
  the back, a second amend restores its qty) and `stale_ahead` (those no later message
  names are cancelled; a `missing` order behind the executed one holds their total, which
  the recording still shows).
`seed` and `missing` liquidity takes the ids of orders never submitted in the file that a
message within 100 rows names first at that price and side (first-pass lookahead), sized
to what the messages take from them, so most such orders need no `unseen` later.
Liquidity to reduce is taken from orders no later message names first (oldest first), then
orders never submitted and not yet named (the one named last first), then the others
(newest first). Synthetic instructions carry the ts and `source_row` of the row whose book
they end on: after row i's own instructions, never before them (but on row 1).

One-step accuracy, strict (reported per side and level): the book after every instruction
of rows < i (it equals row i-1) plus only message i's own instructions, compared with the
recorded row i; a row with a synthetic instruction before its message would count as a
miss on every level (none has). The summary also counts the rows whose alignment ends with
corrections for the next message, and the rows that needed no synthetic instruction.

Time: `ts` = the file name's date as UTC-naive midnight in epoch ns + the seconds converted
exactly (Decimal) to ns. Ids the importer makes (takers, synthetic orders) count up from
SYNTHETIC_ID_BASE, above every LOBSTER id (checked). Faults name the file (`ZIP!member` for
a zip member), the row as the CSV line number (= the 1-based message row: the files have no
header) and the column; all faults of a file are listed, up to MAX_FAULTS.

Memory: both files stream row by row; a first pass over the message file keeps, per order
id that messages name, its last naming row, and, per id never submitted in the file, the
size the messages take from it and where and when they first name it: bounded by the
number of orders, not by the rows of the book file.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from datasets.folders import staged_folder
from datasets.importers.lobster_book import REASONS, SYNTHETIC_ID_BASE, Reconstruction, undo_first
from datasets.orders import BATCH_ROWS, MAX_FAULTS, ORDERS_SCHEMA
from matching import Matcher, SymbolRules
from matching.errors import InputError
from matching.types import BUY, IOC, LIMIT, SELL, STP_NONE

HELP = "LOBSTER message + orderbook CSV files (a zip or a folder)"
DESCRIPTION = """\
Import a LOBSTER sample (NASDAQ, reconstructed from TotalView-ITCH): the message file
becomes `orders` (1 new limit, 2 partial cancel as an amend to the reduced qty, 3 delete as
a cancel, 4 visible execution as the marketable IOC order that caused it; 5 hidden
executions and 7 halts are counted, not replayed) and the orderbook file an
`expected_book` table (top L levels after every message row). Synthetic instructions,
flagged with their reason, seed the book and keep the replay in step with the recorded top
L levels (docs/import-lobster.md). SRC is a LOBSTER zip or a folder holding one
TICKER_DATE_START_END_message_L.csv and its orderbook file.
"""
EPILOG = "backtest import lobster LOBSTER_SampleFile_GOOG_2012-06-21_10.zip data/goog"

LOBSTER_PRICE_UNIT = Decimal("0.0001")  # USD per LOBSTER price unit
EMPTY_ASK, EMPTY_BID = 9_999_999_999, -9_999_999_999
MESSAGE_COLUMNS = ("time", "type", "order_id", "size", "price", "direction")
MESSAGE_TYPES = (1, 2, 3, 4, 5, 7)
NS = 10**9
DAY_NS = 86_400 * NS
NAME = re.compile(r"^(?P<ticker>[A-Za-z0-9.]+)_(?P<date>\d{4}-\d{2}-\d{2})_(?P<start>\d+)_(?P<end>\d+)"
                  r"_(?P<kind>message|orderbook)_(?P<levels>\d+)\.csv$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--symbol", help="instrument name (default: the ticker of the file name)")
    parser.add_argument("--date", help="trading date YYYY-MM-DD, UTC-naive (default: from the file name)")
    parser.add_argument("--tick-size", default="0.01", metavar="USD",
                        help="price tick in USD, a multiple of 0.0001 (default: 0.01)")
    parser.add_argument("--lot-size", default="1", metavar="SHARES",
                        help="lot in shares, a whole number (default: 1)")


# ---------------------------------------------------------------------- source files

@dataclass(frozen=True)
class Source:
    """The message/orderbook pair of SRC and what their names say."""

    container: Path  # the zip, or the folder
    message: str  # member name (zip) or file name (folder)
    orderbook: str
    ticker: str
    day: date
    levels: int

    def label(self, member: str) -> str:
        return f"{self.container}!{member}" if self.container.is_file() else str(self.container / member)

    @contextmanager
    def open(self, member: str) -> Iterator[io.TextIOBase]:
        """The member as text. Latin-1 decodes any byte, so a stray one shows up as a bad
        value at its row and column rather than as a decoding error."""
        if self.container.is_file():
            with zipfile.ZipFile(self.container) as zf, zf.open(member) as raw:
                yield io.TextIOWrapper(raw, encoding="latin-1", newline="")
        else:
            with open(self.container / member, encoding="latin-1", newline="") as fh:
                yield fh


def find_source(src: Path) -> Source:
    """The one message + orderbook pair in SRC (a zip or a folder), or InputError."""
    if src.is_file():
        try:
            with zipfile.ZipFile(src) as zf:
                names = zf.namelist()
        except zipfile.BadZipFile:
            raise InputError(str(src), ["not a zip file (SRC is a LOBSTER zip or a folder)"]) from None
    elif src.is_dir():
        names = sorted(p.name for p in src.iterdir() if p.is_file())
    else:
        raise InputError(str(src), ["not found (SRC is a LOBSTER zip or a folder)"])
    found: dict[str, list[re.Match]] = {"message": [], "orderbook": []}
    for name in sorted(names):
        m = NAME.match(name.rsplit("/", 1)[-1])
        if m:
            found[m["kind"]].append(m)
    problems = []
    for kind, hits in found.items():
        if len(hits) != 1:
            problems.append(f"expected one TICKER_DATE_START_END_{kind}_L.csv, found {len(hits)}")
    if problems:
        raise InputError(str(src), problems)
    msg, book = found["message"][0], found["orderbook"][0]
    if (msg["ticker"], msg["date"], msg["levels"]) != (book["ticker"], book["date"], book["levels"]):
        raise InputError(str(src), [f"message and orderbook files do not pair: {msg.string}, {book.string}"])
    members = {n.rsplit("/", 1)[-1]: n for n in names}
    try:
        day = date.fromisoformat(msg["date"])
    except ValueError:
        raise InputError(str(src), [f"bad date in file name: {msg['date']!r}"]) from None
    levels = int(msg["levels"])
    if levels < 1:
        raise InputError(str(src), [f"level count in the file name must be >= 1: {msg.string}"])
    return Source(src, members[msg.string], members[book.string], msg["ticker"], day, levels)


@dataclass(frozen=True)
class Grid:
    """How LOBSTER units map to our ticks and lots."""

    units_per_tick: int  # LOBSTER price units (USD x 10000) per tick
    shares_per_lot: int
    tick_size: str
    lot_size: str


def make_grid(tick_size: str, lot_size: str) -> Grid:
    problems = []
    try:
        units = Decimal(tick_size) / LOBSTER_PRICE_UNIT
    except InvalidOperation:
        units = Decimal(0)
    if not units.is_finite() or units <= 0 or units != units.to_integral_value():
        problems.append(f"--tick-size: must be a positive multiple of 0.0001 USD (value: {tick_size!r})")
    try:
        lot = Decimal(lot_size)
    except InvalidOperation:
        lot = Decimal(0)
    if not lot.is_finite() or lot <= 0 or lot != lot.to_integral_value():
        problems.append(f"--lot-size: must be a positive whole number of shares (value: {lot_size!r})")
    if problems:
        raise InputError("command line", problems)
    return Grid(int(units), int(lot), tick_size, lot_size)


# ---------------------------------------------------------------------- parsing

@dataclass(slots=True)
class Message:
    row: int  # 1-based
    ts: int  # epoch ns
    kind: int  # LOBSTER type
    order_id: int
    size: int  # shares
    price: int  # LOBSTER units
    side: int  # BUY / SELL of the order named (for 7: BUY, unused)


class Faults:
    """Problems of one file, capped at MAX_FAULTS."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.problems: list[str] = []

    def add(self, row: int, column: str, message: str, value: object) -> None:
        if len(self.problems) < MAX_FAULTS:
            self.problems.append(f"row {row}, column {column}: {message} (value: {value!r})")

    @property
    def full(self) -> bool:
        return len(self.problems) >= MAX_FAULTS

    def raise_if_any(self) -> None:
        if self.problems:
            raise InputError(self.label, self.problems)


def _int(text: str) -> int | None:
    """A plain decimal integer (an optional sign, digits, spaces around), else None."""
    try:
        value = int(text)
    except ValueError:
        return None
    return None if "_" in text else value


def parse_message(row: int, cells: list[str], midnight_ns: int, grid: Grid, faults: Faults) -> Message | None:
    """One message row, or None with its faults added."""
    if len(cells) != 6:
        faults.add(row, MESSAGE_COLUMNS[min(len(cells), 5)],
                   f"expected 6 columns ({', '.join(MESSAGE_COLUMNS)}), found {len(cells)}", ",".join(cells))
        return None
    ok = True
    ts = None
    try:
        seconds = Decimal(cells[0].strip())
        ns = seconds * NS
        if not seconds.is_finite() or seconds < 0 or seconds >= 86_400 or ns != ns.to_integral_value():
            raise InvalidOperation
        ts = midnight_ns + int(ns)
    except InvalidOperation:
        faults.add(row, "time", "not seconds after midnight with at most 9 decimals", cells[0])
        ok = False
    values = [_int(c) for c in cells[1:]]
    for name, text, value in zip(MESSAGE_COLUMNS[1:], cells[1:], values):
        if value is None:
            faults.add(row, name, "not an integer", text)
            ok = False
    if not ok:
        return None
    kind, order_id, size, price, direction = values
    if kind not in MESSAGE_TYPES:
        faults.add(row, "type", f"unknown message type; one of {', '.join(map(str, MESSAGE_TYPES))}", cells[1])
        return None
    if direction not in (1, -1):
        faults.add(row, "direction", "must be 1 (buy order) or -1 (sell order)", cells[5])
        ok = False
    if kind == 7:
        return Message(row, ts, kind, order_id, size, price, BUY) if ok else None
    if not 0 <= order_id < SYNTHETIC_ID_BASE:
        faults.add(row, "order_id", f"must be in 0..{SYNTHETIC_ID_BASE - 1}", cells[2])
        ok = False
    if size <= 0:
        faults.add(row, "size", "must be > 0 shares", cells[3])
        ok = False
    elif kind != 5 and size % grid.shares_per_lot:
        faults.add(row, "size", f"not a whole number of lots of {grid.lot_size} shares", cells[3])
        ok = False
    if price <= 0:
        faults.add(row, "price", "must be > 0 (USD x 10000)", cells[4])
        ok = False
    elif kind != 5 and price % grid.units_per_tick:
        # Hidden executions (5) are counted, never replayed: a sub-tick price is allowed there.
        faults.add(row, "price", f"off the tick grid: not a multiple of {grid.tick_size} USD "
                                 f"({grid.units_per_tick} units of USD x 10000)", cells[4])
        ok = False
    if not ok:
        return None
    return Message(row, ts, kind, order_id, size, price, BUY if direction == 1 else SELL)


def book_columns(levels: int) -> list[str]:
    return [f"{name}_{j}" for j in range(1, levels + 1)
            for name in ("ask_price", "ask_size", "bid_price", "bid_size")]


def parse_book(row: int, cells: list[str], levels: int, grid: Grid, names: list[str],
               faults: Faults) -> tuple[list[tuple[int, int]], list[tuple[int, int]]] | None:
    """One orderbook row as (asks, bids), each best first, in ticks and lots, empty levels
    dropped; or None with its faults added."""
    if len(cells) != 4 * levels:
        faults.add(row, names[min(len(cells), len(names) - 1)],
                   f"expected {4 * levels} columns (4 per level, {levels} levels), found {len(cells)}",
                   ",".join(cells[:8]))
        return None
    values = [_int(c) for c in cells]
    ok = True
    for name, text, value in zip(names, cells, values):
        if value is None:
            faults.add(row, name, "not an integer", text)
            ok = False
    if not ok:
        return None
    sides: list[list[tuple[int, int]]] = [[], []]
    for s, (offset, empty, better) in enumerate(((0, EMPTY_ASK, -1), (2, EMPTY_BID, 1))):
        out = sides[s]
        ended = False
        for j in range(levels):
            i = 4 * j + offset
            px, sz = values[i], values[i + 1]
            if px == empty:
                if sz != 0:
                    faults.add(row, names[i + 1], "an empty level must have size 0", cells[i + 1])
                    ok = False
                ended = True
                continue
            if ended:
                faults.add(row, names[i], "a level after an empty level", cells[i])
                ok = False
                continue
            if px <= 0:
                faults.add(row, names[i], "must be > 0 (USD x 10000) or the empty-level value", cells[i])
                ok = False
                continue
            if px % grid.units_per_tick:
                faults.add(row, names[i], f"off the tick grid: not a multiple of {grid.tick_size} USD "
                                          f"({grid.units_per_tick} units of USD x 10000)", cells[i])
                ok = False
                continue
            if sz <= 0 or sz % grid.shares_per_lot:
                faults.add(row, names[i + 1], f"must be > 0 and a whole number of lots of {grid.lot_size} shares",
                           cells[i + 1])
                ok = False
                continue
            price, qty = px // grid.units_per_tick, sz // grid.shares_per_lot
            if out and (price - out[-1][0]) * better >= 0:
                faults.add(row, names[i], "levels must be strictly ordered, best first", cells[i])
                ok = False
                continue
            out.append((price, qty))
    if not ok:
        return None
    return sides[0], sides[1]


def read_rows(source: Source, member: str) -> Iterator[tuple[int, list[str]]]:
    with source.open(member) as fh:
        for row, cells in enumerate(csv.reader(fh), start=1):
            yield row, cells


# ---------------------------------------------------------------------- first pass

@dataclass
class Lookahead:
    """What the first pass over the message file learns (bounded by the number of orders)."""

    rows: int = 0
    counts: dict[int, int] = field(default_factory=dict)  # LOBSTER type -> messages
    last_ref: dict[int, int] = field(default_factory=dict)  # order id -> last row naming it (2/3/4)
    # Ids named by 2/3/4 but never submitted (1): id -> the lots those messages take.
    unseen: dict[int, int] = field(default_factory=dict)
    first_named: dict[int, int] = field(default_factory=dict)  # unseen id -> the first row naming it
    # (side, price in ticks) -> the unseen ids first named there, in the order of that row.
    unseen_at: dict[tuple[int, int], list[int]] = field(default_factory=dict)
    hidden_off_grid: int = 0  # hidden executions at a sub-tick price
    first_ts: int = 0
    last_ts: int = 0


def scan_messages(source: Source, grid: Grid, midnight_ns: int,
                  progress: Callable[[int, int | None], None] | None = None) -> Lookahead:
    """Check every message row (all faults, capped) and gather the lookahead facts;
    `progress(rows, None)` now and then."""
    faults = Faults(source.label(source.message))
    look = Lookahead()
    submitted: set[int] = set()
    named: dict[int, int] = {}
    first: dict[int, tuple[int, int, int]] = {}  # id -> (row, side, price) of the first naming
    prev_ts = None
    for row, cells in read_rows(source, source.message):
        look.rows = row
        if progress is not None and row % 16_384 == 0:
            progress(row, None)
        msg = parse_message(row, cells, midnight_ns, grid, faults)
        if msg is None:
            continue
        if prev_ts is not None and msg.ts < prev_ts:
            faults.add(row, "time", "goes backwards", cells[0])
        prev_ts = msg.ts
        if row == 1:
            look.first_ts = msg.ts
        look.last_ts = msg.ts
        look.counts[msg.kind] = look.counts.get(msg.kind, 0) + 1
        if msg.kind == 1:
            if msg.order_id in submitted:
                faults.add(row, "order_id", "submitted twice", cells[2])
            submitted.add(msg.order_id)
        elif msg.kind in (2, 3, 4):
            look.last_ref[msg.order_id] = row
            if msg.order_id not in submitted:
                named[msg.order_id] = named.get(msg.order_id, 0) + msg.size // grid.shares_per_lot
                if msg.order_id not in first:
                    first[msg.order_id] = (row, msg.side, msg.price // grid.units_per_tick)
        elif msg.kind == 5 and msg.price % grid.units_per_tick:
            look.hidden_off_grid += 1
    if look.rows == 0:
        faults.add(1, "time", "the message file is empty", "")
    faults.raise_if_any()
    # An id named before it is submitted is not an unseen order.
    look.unseen = {oid: lots for oid, lots in named.items() if oid not in submitted}
    for oid in look.unseen:  # dicts keep insertion order: by first naming row
        row, side, price = first[oid]
        look.first_named[oid] = row
        look.unseen_at.setdefault((side, price), []).append(oid)
    return look


# ---------------------------------------------------------------------- the writer

class OrdersOut:
    """Instructions: applied to our matcher at once, and buffered into orders.parquet."""

    SCHEMA = ORDERS_SCHEMA.append(pa.field("source_row", pa.int64())).append(
        pa.field("synthetic", pa.dictionary(pa.int8(), pa.string())))

    def __init__(self, path: Path, symbol: str, matcher: Matcher) -> None:
        self.writer = pq.ParquetWriter(path, self.SCHEMA, compression="zstd")
        self.symbol = symbol
        self.matcher = matcher
        self.seq = 0
        self.rows = 0
        self.by_reason = {r: 0 for r in REASONS}
        self.synthetic = 0
        self._reset()

    def _reset(self) -> None:
        self.cols: dict[str, list] = {n: [] for n in self.SCHEMA.names}

    def _row(self, ts, account, action, order_id, side, tif, price, qty, row, reason) -> None:
        self.seq += 1
        c = self.cols
        c["ts"].append(ts)
        c["seq"].append(self.seq)
        c["account"].append(account)
        c["symbol"].append(self.symbol)
        c["action"].append(action)
        c["order_id"].append(order_id)
        is_new = action == "new"
        c["side"].append(("buy" if side == BUY else "sell") if is_new else None)
        c["type"].append("limit" if is_new else None)
        c["tif"].append(("ioc" if tif == IOC else "gtc") if is_new else None)
        c["price"].append(price)
        c["qty"].append(qty)
        c["reduce_only"].append(False)
        c["stp"].append("none" if is_new else None)
        c["source_row"].append(row)
        c["synthetic"].append(reason)
        if reason is not None:
            self.by_reason[reason] += 1
            self.synthetic += 1
        if len(c["ts"]) >= BATCH_ROWS:
            self.flush()

    def new(self, ts: int, account: str, order_id: int, side: int, tif: int, price: int, qty: int,
            row: int, reason: str | None) -> None:
        self._row(ts, account, "new", order_id, side, tif, price, qty, row, reason)
        self.matcher.new_order(ts, account, self.symbol, order_id, side, LIMIT, tif, price, qty, STP_NONE)

    def cancel(self, ts: int, account: str, order_id: int, row: int, reason: str | None) -> None:
        self._row(ts, account, "cancel", order_id, None, None, None, None, row, reason)
        self.matcher.cancel(ts, account, self.symbol, order_id)

    def amend(self, ts: int, account: str, order_id: int, qty: int, row: int, reason: str | None) -> None:
        self._row(ts, account, "amend", order_id, None, None, None, qty, row, reason)
        self.matcher.amend(ts, account, self.symbol, order_id, None, qty)

    def flush(self) -> None:
        if self.cols["ts"]:
            self.rows += len(self.cols["ts"])
            self.writer.write_table(pa.table(self.cols, schema=self.SCHEMA), row_group_size=BATCH_ROWS)
            self._reset()

    def close(self) -> None:
        self.flush()
        self.writer.close()


class BookOut:
    """The recorded book, one wide row per message row, buffered into expected_book.parquet."""

    def __init__(self, path: Path, levels: int) -> None:
        names = ["source_row", "ts"] + [f"{n}_{j}" for j in range(1, levels + 1)
                                        for n in ("ask_price", "ask_qty", "bid_price", "bid_qty")]
        self.schema = pa.schema([(n, pa.int64()) for n in names])
        self.levels = levels
        self.writer = pq.ParquetWriter(path, self.schema, compression="zstd")
        self.rows: list[list[int | None]] = []

    def add(self, row: int, ts: int, asks: list[tuple[int, int]], bids: list[tuple[int, int]]) -> None:
        values: list[int | None] = [row, ts]
        for j in range(self.levels):
            values.extend(asks[j] if j < len(asks) else (None, None))
            values.extend(bids[j] if j < len(bids) else (None, None))
        self.rows.append(values)
        if len(self.rows) >= BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            columns = list(zip(*self.rows))
            self.writer.write_table(pa.table([pa.array(c, pa.int64()) for c in columns], schema=self.schema),
                                    row_group_size=BATCH_ROWS)
            self.rows = []

    def close(self) -> None:
        self.flush()
        self.writer.close()


# ---------------------------------------------------------------------- run

MANIFEST = """\
[dataset]
name = {name}
start_ns = {start_ns}
end_ns = {end_ns}
provenance = {provenance}

[assets.USD]
minor_unit = "0.0001"
stable = true

[instruments.{symbol}]
kind = "equity"
base = {symbol}
settle = "USD"
tick_size = {tick_size}
lot_size = {lot_size}
min_qty = 1

[rules]
stp = "none"

[source]
format = "lobster"
files = [{message}, {orderbook}]
levels = {levels}
messages = {{ {messages} }}
synthetic = {{ {synthetic} }}
one_step_best_ask = "{best_ask}"
one_step_best_bid = "{best_bid}"
one_step_all_levels = "{all_levels}"
one_step_ask_levels = [{ask_levels}]
one_step_bid_levels = [{bid_levels}]
one_step_levels = [{both_levels}]
rows_corrected_before_message = {corrected}
rows_prepared_for_next_message = {prepared}
executions_hit_own_order = "{hit}"
rows_without_synthetic = "{unaided}"
"""


def _pct(n: int, d: int) -> str:
    return f"{100 * n / d:.3f}%" if d else "n/a"


def _steps(source: Source, grid: Grid, midnight_ns: int, levels: int, total: int,
           book_faults: Faults) -> Iterator[tuple[Message, list[tuple[int, int]], list[tuple[int, int]]]]:
    """(message, recorded asks, recorded bids) per row; stops at the first orderbook fault
    (after collecting the faults of the file, capped) so no alignment runs on a bad row."""
    names = book_columns(levels)
    msg_faults = Faults(source.label(source.message))
    book_rows = read_rows(source, source.orderbook)
    good = True
    for row, cells in read_rows(source, source.message):
        msg = parse_message(row, cells, midnight_ns, grid, msg_faults)
        assert msg is not None, "the first pass checked every message row"
        got = next(book_rows, None)
        if got is None:
            book_faults.add(row, names[0], f"the orderbook file ends at row {row - 1}; the message "
                                           f"file has {total} rows", "")
            return
        parsed = parse_book(row, got[1], levels, grid, names, book_faults)
        if parsed is None:
            good = False
        if book_faults.full:
            return
        if good:
            yield msg, parsed[0], parsed[1]
    extra = next(book_rows, None)
    if extra is not None:
        book_faults.add(extra[0], names[0], f"the orderbook file has more rows than the message file ({total})",
                        ",".join(extra[1][:4]))


def run(src: Path, out: Path, options: argparse.Namespace,
        progress: Callable[[int, int | None], None]) -> list[str]:
    """Import SRC into dataset folder OUT; return the summary lines (module docstring)."""
    source = find_source(src)
    grid = make_grid(getattr(options, "tick_size", "0.01"), getattr(options, "lot_size", "1"))
    symbol = getattr(options, "symbol", None) or source.ticker
    day_text = getattr(options, "date", None)
    try:
        day = date.fromisoformat(day_text) if day_text else source.day
    except ValueError:
        raise InputError("command line", [f"--date: not a date YYYY-MM-DD (value: {day_text!r})"]) from None
    midnight_ns = (day - date(1970, 1, 1)).days * DAY_NS
    levels = source.levels

    look = scan_messages(source, grid, midnight_ns, progress)  # the first of two passes
    total = look.rows
    book_faults = Faults(source.label(source.orderbook))
    with staged_folder(out) as stage:
        matcher = Matcher({symbol: SymbolRules()})
        orders = OrdersOut(stage / "orders.parquet", symbol, matcher)
        book_out = BookOut(stage / "expected_book.parquet", levels)
        recon = Reconstruction(orders, symbol, levels, look)
        steps = _steps(source, grid, midnight_ns, levels, total, book_faults)
        current = next(steps, None)
        unaided = 0  # rows that needed no synthetic instruction at all
        prepared = 0  # rows after which the next message needed a level-neutral correction
        first = True
        while current is not None:
            msg, asks, bids = current
            upcoming = next(steps, None)
            row = msg.row
            synthetic_before = row_start = orders.synthetic
            if first:  # the book before the file: row 0's alignment and message 1's corrections
                before = undo_first(asks, bids, msg, grid, levels)
                recon.align(msg.ts, row, *before, reason_add="seed", upcoming=(asks, bids))
                recon.correct(msg, grid, msg.ts, row)
                synthetic_before = orders.synthetic
            recon.apply(msg, grid)
            recon.score(asks, bids, corrected=not first and orders.synthetic != synthetic_before)
            first = False
            recon.align(msg.ts, row, asks, bids, upcoming=None if upcoming is None else upcoming[1:])
            if upcoming is not None:
                before_correct = orders.synthetic
                recon.correct(upcoming[0], grid, msg.ts, row)  # level-neutral: still row i
                prepared += orders.synthetic != before_correct
            recon.check(row, asks, bids)
            if orders.synthetic == row_start:
                unaided += 1
            book_out.add(row, msg.ts, asks, bids)
            if row % 4096 == 0:
                progress(total + row, 2 * total)
            current = upcoming
        book_faults.raise_if_any()
        orders.close()
        book_out.close()
        progress(2 * total, 2 * total)

        counts = ", ".join(f"type_{k} = {look.counts.get(k, 0)}" for k in MESSAGE_TYPES)
        synthetic = ", ".join(f"{r} = {n}" for r, n in orders.by_reason.items())
        rows = recon.rows
        q = json.dumps  # a TOML basic string (and a quoted key) for any text
        (stage / "dataset.toml").write_text(MANIFEST.format(
            name=q(f"lobster-{symbol}-{day.isoformat()}-L{levels}"),
            start_ns=look.first_ts, end_ns=look.last_ts + 1,
            provenance=q(f"backtest import lobster {src.name} (LOBSTER sample, NASDAQ TotalView-ITCH); "
                         f"{source.message}, {source.orderbook}"),
            symbol=q(symbol), tick_size=q(grid.tick_size), lot_size=q(grid.lot_size),
            message=q(source.message.rsplit("/", 1)[-1]), orderbook=q(source.orderbook.rsplit("/", 1)[-1]),
            levels=levels, messages=counts, synthetic=synthetic,
            best_ask=_pct(recon.one_step_side[0][0], rows), best_bid=_pct(recon.one_step_side[1][0], rows),
            all_levels=_pct(recon.one_step_all, rows),
            ask_levels=", ".join(q(_pct(n, rows)) for n in recon.one_step_side[0]),
            bid_levels=", ".join(q(_pct(n, rows)) for n in recon.one_step_side[1]),
            both_levels=", ".join(q(_pct(n, rows)) for n in recon.one_step_level),
            corrected=recon.corrected_rows, prepared=prepared,
            hit=_pct(recon.executions_hit, recon.executions_own), unaided=_pct(unaided, rows),
        ), encoding="utf-8")

    def by_level(counts: list[int]) -> str:
        return " ".join(f"L{j + 1} {_pct(n, rows)}" for j, n in enumerate(counts))

    return [
        f"{symbol} {day.isoformat()}, {levels} level(s): {total:,} message rows "
        f"({', '.join(f'type {k}: {look.counts.get(k, 0):,}' for k in MESSAGE_TYPES)})",
        f"orders: {orders.rows:,} instructions; synthetic by reason: "
        + ", ".join(f"{r} {n:,}" for r, n in orders.by_reason.items()),
        f"not replayed: {look.counts.get(5, 0):,} hidden executions "
        f"({look.hidden_off_grid:,} at a sub-tick price), {look.counts.get(7, 0):,} halt messages; "
        f"{recon.skipped:,} partial cancels/deletes named an order not on the book",
        f"one-step accuracy (the book that matched row i-1 plus message i alone): best ask "
        f"{_pct(recon.one_step_side[0][0], rows)}, best bid {_pct(recon.one_step_side[1][0], rows)}, "
        f"all levels {_pct(recon.one_step_all, rows)} ({recon.one_step_all:,} of {rows:,}; "
        f"{recon.corrected_rows:,} rows needed a correction before the message, counted as misses)",
        f"one-step by level, asks: {by_level(recon.one_step_side[0])}",
        f"one-step by level, bids: {by_level(recon.one_step_side[1])}",
        f"one-step by level, both sides: {by_level(recon.one_step_level)}",
        f"rows whose alignment ends with corrections for the next message (unseen, resize, requeue, "
        f"stale_ahead): {prepared:,}; rows needing no synthetic instruction: {unaided:,} of {rows:,} "
        f"({_pct(unaided, rows)})",
        f"visible executions of orders submitted in the file that hit that order: "
        f"{recon.executions_hit:,} of {recon.executions_own:,} ({_pct(recon.executions_hit, recon.executions_own)})",
    ]
