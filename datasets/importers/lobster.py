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
emits synthetic instructions, each flagged with its reason:
- `seed`: the book before the first message (orderbook row 1 with message 1 undone) as
  anonymous orders, before message 1;
- `missing`: liquidity the recorded top L shows after a message that we lack, added as one
  anonymous order per level;
- `excess` / `absent`: liquidity we hold within the recorded top L beyond the recorded size
  (at a recorded price) or at a price the recording does not show, cancelled or reduced;
- `deep`: what we hold just beyond a full window, set from the next recorded row (one
  message changes one order inside the window, so a level the next row shows beyond this
  row's worst was already there); a next row with a side not full means nothing beyond;
- before a message that names an order, corrections that leave every level's total as it
  is: `unseen` (an order never submitted in the file and not on our book takes the place
  of liquidity at its price that no later message names, with its own id: first pass
  lookahead), `resize` (a delete removes the order's whole open qty and an execution needs
  at least its size, so its qty is set to that, the difference given to or taken from
  liquidity no later message names), `requeue` (orders ahead of an executed order at its
  price that a later message names go behind it: an amend to qty + 1 sends an order to
  the back, a second amend restores its qty) and `stale_ahead` (those no later message
  names are cancelled).
Liquidity to reduce is taken from orders no later message names first (oldest first), then
the others (newest first). Synthetic instructions carry the ts and `source_row` of the
message row they align to; the corrections before a message come before its instruction,
the alignment after it.

One-step accuracy (reported per level): for row i, the book aligned to row i-1 plus message
i's own instruction (after its level-neutral corrections, with the quantity of its
`stale_ahead` cancels counted back at its price, as the message alone would leave it)
equals the recorded row i. The summary also counts the rows that needed no synthetic
instruction at all.

Time: `ts` = the file name's date as UTC-naive midnight in epoch ns + the seconds converted
exactly (Decimal) to ns. Ids the importer makes (takers, synthetic orders) count up from
SYNTHETIC_ID_BASE, above every LOBSTER id (checked). Faults name the file (`ZIP!member` for
a zip member), the row as the CSV line number (= the 1-based message row: the files have no
header) and the column; all faults of a file are listed, up to MAX_FAULTS.

Memory: both files stream row by row; a first pass over the message file keeps, per order
id that messages name, its last naming row, and, per id never submitted in the file, the
size the messages take from it: bounded by the number of orders, not
by the rows of the book file.
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
from datasets.orders import BATCH_ROWS, MAX_FAULTS, ORDERS_SCHEMA
from matching import Matcher, SymbolRules
from matching.errors import BacktestError, InputError
from matching.types import BUY, FILL, GTC, IOC, LIMIT, SELL, STP_NONE

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
SYNTHETIC_ID_BASE = 1_000_000_000_000  # ids the importer makes count up from here
MESSAGE_COLUMNS = ("time", "type", "order_id", "size", "price", "direction")
MESSAGE_TYPES = (1, 2, 3, 4, 5, 7)
NS = 10**9
DAY_NS = 86_400 * NS
ACCOUNT_LOBSTER, ACCOUNT_TAKER, ACCOUNT_SYNTHETIC = "lobster", "taker", "synthetic"
REASONS = ("seed", "unseen", "resize", "requeue", "stale_ahead", "missing", "excess", "absent", "deep")
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
        elif msg.kind == 5 and msg.price % grid.units_per_tick:
            look.hidden_off_grid += 1
    if look.rows == 0:
        faults.add(1, "time", "the message file is empty", "")
    faults.raise_if_any()
    # An id named before it is submitted is not an unseen order.
    look.unseen = {oid: lots for oid, lots in named.items() if oid not in submitted}
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


# ---------------------------------------------------------------------- the book

def top_levels(matcher: Matcher, symbol: str, side: int, n: int) -> list[tuple[int, int]]:
    """Our best `n` levels of one side as (price_ticks, qty_lots), best first. O(P log P)
    in C (a few hundred live levels: faster than a Python heap walk)."""
    book = matcher.books[symbol]
    if side == BUY:
        levels = book.bids
        return [(p, levels[p].qty) for p in sorted(levels, reverse=True)[:n]]
    levels = book.asks
    return [(p, levels[p].qty) for p in sorted(levels)[:n]]


def undo_first(asks: list[tuple[int, int]], bids: list[tuple[int, int]], msg: Message, grid: Grid,
               levels: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """The top levels before message 1: orderbook row 1 with message 1's size change undone."""
    if msg.kind not in (1, 2, 3, 4):
        return asks, bids
    price, qty = msg.price // grid.units_per_tick, msg.size // grid.shares_per_lot
    book = dict(bids if msg.side == BUY else asks)
    book[price] = book.get(price, 0) + (-qty if msg.kind == 1 else qty)
    if book[price] <= 0:
        del book[price]
    ordered = sorted(book.items(), reverse=msg.side == BUY)[:levels]
    return (asks, ordered) if msg.side == BUY else (ordered, bids)


class Reconstruction:
    """Our matcher's book, the instructions that drive it, and the alignment to the
    recording (module docstring)."""

    def __init__(self, out: OrdersOut, symbol: str, levels: int, look: Lookahead) -> None:
        self.out = out
        self.matcher = out.matcher
        self.book = self.matcher.books[symbol]
        self.symbol = symbol
        self.levels = levels
        self.look = look
        self.next_id = SYNTHETIC_ID_BASE
        self.placed: set[int] = set()  # unseen ids placed once (a `new` id is used once)
        self.consumed: dict[int, int] = {}  # unseen id -> lots messages have named so far
        self.skipped = 0  # 2/3 messages naming an order not on our book
        self.executions_own = 0  # visible executions of orders submitted in the file
        self.executions_hit = 0  # ... whose IOC filled against that same order only
        self.one_step = [0] * levels  # rows where level j (both sides) matched after message alone
        self.one_step_best = [0, 0]  # rows where best ask / best bid matched
        self.one_step_all = 0
        self.rows = 0

    def make_id(self) -> int:
        self.next_id += 1
        return self.next_id

    # ------------------------------------------------------------ messages

    def apply_message(self, msg: Message, grid: Grid) -> dict[int, int]:
        """Translate and apply one message (with its stale_ahead cancels); return the qty
        those cancels removed, by price (on the side of the executed order)."""
        out, orders = self.out, self.matcher.orders
        price, qty = msg.price // grid.units_per_tick, msg.size // grid.shares_per_lot
        ts, row = msg.ts, msg.row
        stale: dict[int, int] = {}
        if msg.kind == 1:
            if msg.order_id in orders:
                self.skipped += 1
                return stale
            out.new(ts, ACCOUNT_LOBSTER, msg.order_id, msg.side, GTC, price, qty, row, None)
        elif msg.kind in (2, 3):
            self.prepare(msg, price, qty)
            order = orders.get(msg.order_id)
            if order is None:
                self.skipped += 1
            elif msg.kind == 3 or order.qty <= qty:
                out.cancel(ts, order.account, msg.order_id, row, None)
            else:
                out.amend(ts, order.account, msg.order_id, order.qty - qty, row, None)
        elif msg.kind == 4:
            self.prepare(msg, price, qty)
            order = orders.get(msg.order_id)
            if order is not None and order.level is not None and order.price == price and order.side == msg.side:
                ahead = []
                for oid, other in order.level.orders.items():
                    if oid == msg.order_id:
                        break
                    ahead.append((oid, other.account, other.qty))
                last_ref = self.look.last_ref
                for oid, account, q in ahead:
                    if last_ref.get(oid, 0) > row:
                        # A later message names it: it is real, only our queue order is
                        # wrong. Send it behind X (more qty goes to the back), then back
                        # to its qty (less qty keeps the place).
                        out.amend(ts, account, oid, q + 1, row, "requeue")
                        out.amend(ts, account, oid, q, row, "requeue")
                    else:
                        stale[price] = stale.get(price, 0) + q
                        out.cancel(ts, account, oid, row, "stale_ahead")
            own = msg.order_id in self.look.last_ref and msg.order_id not in self.look.unseen
            self.matcher.out.clear()
            out.new(ts, ACCOUNT_TAKER, self.make_id(), SELL if msg.side == BUY else BUY, IOC, price, qty, row, None)
            if own:
                self.executions_own += 1
                fills = [r for r in self.matcher.out if r[0] == FILL]
                if fills and all(f[7] == msg.order_id for f in fills) and sum(f[4] for f in fills) == qty:
                    self.executions_hit += 1
        self.matcher.out.clear()
        return stale

    def prepare(self, msg: Message, price: int, qty: int) -> None:
        """Before a message names an order, fix what our book holds for it without
        changing any level's total (so the one-step view is untouched):
        - `unseen`: an order never submitted in the file and not on our book takes the
          place of liquidity at its price that no later message names;
        - `resize`: the order's open qty is set to what the message says it has (a delete
          removes all of it, an execution needs at least its size), the difference taken
          from or given to other liquidity at that price."""
        oid, row, ts = msg.order_id, msg.row, msg.ts
        levels = self.book.bids if msg.side == BUY else self.book.asks
        level = levels.get(price)
        unseen_lots = self.look.unseen.get(oid)  # what the messages take from it, if unseen
        left = 0
        if unseen_lots is not None:
            left = unseen_lots - self.consumed.get(oid, 0)
            self.consumed[oid] = self.consumed.get(oid, 0) + qty
        order = self.matcher.orders.get(oid)
        if level is None:
            return
        if order is None:
            if unseen_lots is None or oid in self.placed:
                return
            want = qty if msg.kind == 3 else max(left, qty)
            taken = self.reduce(ts, row, level, want, "unseen", dead_only=True)
            if taken:
                self.placed.add(oid)
                self.out.new(ts, ACCOUNT_SYNTHETIC, oid, msg.side, GTC, price, taken, row, "unseen")
            return
        if order.price != price or order.side != msg.side:
            return
        if order.qty < qty and msg.kind in (3, 4):
            taken = self.reduce(ts, row, level, qty - order.qty, "resize", keep=oid, dead_only=True)
            if taken:
                self.out.amend(ts, order.account, oid, order.qty + taken, row, "resize")
        elif order.qty > qty and msg.kind == 3:
            extra = order.qty - qty
            self.out.amend(ts, order.account, oid, qty, row, "resize")
            self.out.new(ts, ACCOUNT_SYNTHETIC, self.make_id(), msg.side, GTC, price, extra, row, "resize")

    # ------------------------------------------------------------ alignment

    def score(self, asks: list[tuple[int, int]], bids: list[tuple[int, int]], stale: dict[int, int],
              stale_side: int) -> bool:
        """Count the one-step matches of this row (before any alignment); True when all
        levels matched."""
        n = self.levels
        ours = [top_levels(self.matcher, self.symbol, SELL, n + len(stale)),
                top_levels(self.matcher, self.symbol, BUY, n + len(stale))]
        if stale:
            s = 0 if stale_side == SELL else 1
            merged = dict(ours[s])
            for p, q in stale.items():
                merged[p] = merged.get(p, 0) + q
            ours[s] = sorted(merged.items(), reverse=stale_side == BUY)
        ours = [ours[0][:n], ours[1][:n]]
        self.rows += 1
        recorded = (asks, bids)
        all_ok = True
        for j in range(n):
            ok = True
            for s in (0, 1):
                a = ours[s][j] if j < len(ours[s]) else None
                b = recorded[s][j] if j < len(recorded[s]) else None
                if a != b:
                    ok = False
                    if j == 0:
                        continue
                elif j == 0:
                    self.one_step_best[s] += 1
            if ok:
                self.one_step[j] += 1
            else:
                all_ok = False
        if all_ok:
            self.one_step_all += 1
        return all_ok

    def align(self, ts: int, row: int, asks: list[tuple[int, int]], bids: list[tuple[int, int]],
              *, reason_add: str = "missing",
              upcoming: tuple[list[tuple[int, int]], list[tuple[int, int]]] | None = None) -> None:
        """Emit the synthetic instructions that make our top L equal the recorded row."""
        adds = []
        for side, recorded, levels in ((SELL, asks, self.book.asks), (BUY, bids, self.book.bids)):
            want = dict(recorded)
            in_window = sorted(levels, reverse=side == BUY)
            if len(recorded) == self.levels:  # a full window: what lies beyond is unknown here
                worst, sign = recorded[-1][0], (1 if side == SELL else -1)
                end = 0
                while end < len(in_window) and (in_window[end] - worst) * sign <= 0:
                    end += 1
                del in_window[end:]
            for p in in_window:
                have = levels[p].qty
                target = want.get(p, 0)
                if have > target:
                    self.reduce(ts, row, levels[p], have - target, "excess" if target else "absent")
            for p, q in recorded:
                level = levels.get(p)
                have = level.qty if level is not None else 0
                if have < q:
                    adds.append((side, p, q - have))
        for side, p, q in adds:
            self.add(ts, row, side, p, q, reason_add)
        if upcoming is not None:
            self.align_deep(ts, row, asks, bids, upcoming)

    def align_deep(self, ts: int, row: int, asks: list[tuple[int, int]], bids: list[tuple[int, int]],
                   upcoming: tuple[list[tuple[int, int]], list[tuple[int, int]]]) -> None:
        """Set what we hold just beyond a full window from the next recorded row: a level
        that row shows beyond this row's worst level is book that was already there (one
        message changes one order, inside the window), so hold it now, where it cannot
        show; if the next row's side is not full, the book held nothing beyond."""
        for side, recorded, following, levels in ((SELL, asks, upcoming[0], self.book.asks),
                                                  (BUY, bids, upcoming[1], self.book.bids)):
            if len(recorded) < self.levels:
                continue
            worst = recorded[-1][0]
            sign = 1 if side == SELL else -1
            beyond = [(p, q) for p, q in following if (p - worst) * sign > 0]
            if len(following) == self.levels and not beyond:
                continue
            want = dict(beyond)
            limit = beyond[-1][0] if beyond else None
            ours = sorted((p for p in levels if (p - worst) * sign > 0
                           and (limit is None or (p - limit) * sign <= 0)), key=lambda p: p * sign)
            for p in ours:
                have, target = levels[p].qty, want.get(p, 0)
                if have > target:
                    self.reduce(ts, row, levels[p], have - target, "deep")
            for p, q in beyond:
                level = levels.get(p)
                have = level.qty if level is not None else 0
                if have < q:
                    self.add(ts, row, side, p, q - have, "deep")

    def reduce(self, ts: int, row: int, level, qty: int, reason: str, *, keep: int | None = None,
               dead_only: bool = False) -> int:
        """Take up to `qty` lots off one of our levels: orders no later message names first
        (oldest first), then (unless `dead_only`) the others (newest first); never order
        `keep`. Returns the lots taken."""
        last_ref = self.look.last_ref
        orders = [o for o in level.orders.values() if o.order_id != keep]
        victims = [o for o in orders if last_ref.get(o.order_id, 0) <= row]
        if not dead_only:
            victims += [o for o in reversed(orders) if last_ref.get(o.order_id, 0) > row]
        wanted = qty
        for order in victims:
            if qty <= 0:
                break
            if order.qty <= qty:
                qty -= order.qty
                self.out.cancel(ts, order.account, order.order_id, row, reason)
            else:
                self.out.amend(ts, order.account, order.order_id, order.qty - qty, row, reason)
                qty = 0
        return wanted - qty

    def add(self, ts: int, row: int, side: int, price: int, qty: int, reason: str) -> None:
        """Add `qty` lots at `price` as one anonymous synthetic order (an unseen order that
        a later message names takes its place then: `prepare`)."""
        self.out.new(ts, ACCOUNT_SYNTHETIC, self.make_id(), side, GTC, price, qty, row, reason)

    def check(self, row: int, asks: list[tuple[int, int]], bids: list[tuple[int, int]]) -> None:
        """Raise unless our top L equals the recorded row (a bug in `align` otherwise)."""
        n = self.levels
        ours = (top_levels(self.matcher, self.symbol, SELL, n), top_levels(self.matcher, self.symbol, BUY, n))
        if ours != (asks, bids):
            raise BacktestError(f"lobster alignment failed (a bug): row={row}, ours={ours}, "
                                f"recorded={(asks, bids)}")


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
executions_hit_own_order = "{hit}"
one_step_all_levels_uncorrected = "{uncorrected}"
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
        uncorrected = 0  # rows whose one-step view matched with no correction before the message
        while current is not None:
            msg, asks, bids = current
            upcoming = next(steps, None)
            row = msg.row
            if row == 1:
                before = undo_first(asks, bids, msg, grid, levels)
                recon.align(msg.ts, row, *before, reason_add="seed", upcoming=(asks, bids))
            synthetic_before = orders.synthetic
            stale = recon.apply_message(msg, grid)
            if recon.score(asks, bids, stale, msg.side) and orders.synthetic == synthetic_before:
                uncorrected += 1
            recon.align(msg.ts, row, asks, bids, upcoming=None if upcoming is None else upcoming[1:])
            recon.check(row, asks, bids)
            if orders.synthetic == synthetic_before:
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
            best_ask=_pct(recon.one_step_best[0], rows), best_bid=_pct(recon.one_step_best[1], rows),
            all_levels=_pct(recon.one_step_all, rows),
            hit=_pct(recon.executions_hit, recon.executions_own), unaided=_pct(unaided, rows),
            uncorrected=_pct(uncorrected, rows),
        ), encoding="utf-8")
    per_level = ", ".join(f"L{j + 1} {_pct(n, rows)}" for j, n in enumerate(recon.one_step))
    return [
        f"{symbol} {day.isoformat()}, {levels} level(s): {total:,} message rows "
        f"({', '.join(f'type {k}: {look.counts.get(k, 0):,}' for k in MESSAGE_TYPES)})",
        f"orders: {orders.rows:,} instructions; synthetic by reason: "
        + ", ".join(f"{r} {n:,}" for r, n in orders.by_reason.items()),
        f"not replayed: {look.counts.get(5, 0):,} hidden executions "
        f"({look.hidden_off_grid:,} at a sub-tick price), {look.counts.get(7, 0):,} halt messages; "
        f"{recon.skipped:,} partial cancels/deletes named an order not on the book",
        f"one-step accuracy: best ask {_pct(recon.one_step_best[0], rows)}, best bid "
        f"{_pct(recon.one_step_best[1], rows)}, all levels {_pct(recon.one_step_all, rows)}; by level: {per_level}",
        f"one-step, all levels, on rows with no correction before the message: {uncorrected:,} of {rows:,} "
        f"({_pct(uncorrected, rows)})",
        f"rows needing no synthetic instruction: {unaided:,} of {rows:,} ({_pct(unaided, rows)})",
        f"visible executions of orders submitted in the file that hit that order: "
        f"{recon.executions_hit:,} of {recon.executions_own:,} ({_pct(recon.executions_hit, recon.executions_own)})",
    ]
