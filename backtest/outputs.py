"""Run folders: staged writing, the Parquet tables of DESIGN.md's Outputs, content hashes.

Sequence numbers: every output row of a run (fills rows and order events alike) takes the
next number of one counter that starts at 1, in emission order. A fill's three rows (the
fill, the taker's `filled`, the maker's `filled`) are consecutive.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from backtest.split import split_records
from datasets.folders import file_sha256
from matching import Matcher
from matching.market import MarketBook
from matching.types import BUY, EVENT_NAMES, FILL, FILLED, SELL, SIDE_NAMES

INT64_MAX = 2**63 - 1

_DICT = pa.dictionary(pa.int32(), pa.string())
FILLS_SCHEMA = pa.schema([
    ("ts", pa.int64()), ("seq", pa.int64()), ("symbol", _DICT), ("price", pa.int64()),
    ("qty", pa.int64()), ("notional", pa.int64()), ("aggressor", _DICT),
    ("taker_order_id", pa.int64()), ("maker_order_id", pa.int64()), ("taker_account", _DICT),
    ("maker_account", _DICT), ("taker_fee", pa.int64()), ("maker_fee", pa.int64()),
    ("kind", _DICT),
])
ORDER_EVENTS_SCHEMA = pa.schema([
    ("ts", pa.int64()), ("seq", pa.int64()), ("account", _DICT), ("symbol", _DICT),
    ("order_id", pa.int64()), ("event", _DICT), ("reason", _DICT), ("remaining_qty", pa.int64()),
])
# Clearing's tables: one row per record (KIND, ts, *columns); the row is (ts, seq, *columns).
LEDGER_SCHEMA = pa.schema([
    ("ts", pa.int64()), ("seq", pa.int64()), ("account", _DICT), ("asset", _DICT),
    ("amount", pa.int64()), ("kind", _DICT), ("reference", pa.string()),
])
FUNDING_SCHEMA = pa.schema([
    ("ts", pa.int64()), ("seq", pa.int64()), ("symbol", _DICT), ("account", _DICT),
    ("qty", pa.int64()), ("mark_price", pa.int64()), ("rate_num", pa.int64()),
    ("rate_den", pa.int64()), ("amount", pa.int64()), ("source", _DICT),
])
MARGIN_CALLS_SCHEMA = pa.schema([
    ("ts", pa.int64()), ("seq", pa.int64()), ("account", _DICT), ("asset", _DICT),
    ("equity", pa.int64()), ("maintenance_margin", pa.int64()), ("initial_margin", pa.int64()),
    ("trigger", _DICT),
])
ADL_SCHEMA = pa.schema([
    ("ts", pa.int64()), ("seq", pa.int64()), ("liquidation_id", pa.int64()),
    ("liquidated_account", _DICT), ("symbol", _DICT), ("account", _DICT), ("qty", pa.int64()),
    ("notional", pa.int64()), ("price", pa.int64()), ("rank", pa.string()),
    ("rank_value", pa.float64()),
])
INSURANCE_FUND_SCHEMA = pa.schema([
    ("ts", pa.int64()), ("seq", pa.int64()), ("asset", _DICT), ("change", pa.int64()),
    ("balance", pa.int64()), ("cause", _DICT), ("liquidation_id", pa.int64()),
])
TRANSFER_EVENTS_SCHEMA = pa.schema([
    ("ts", pa.int64()), ("seq", pa.int64()), ("account", _DICT), ("kind", _DICT),
    ("asset", _DICT), ("amount", pa.int64()), ("status", _DICT), ("reason", _DICT),
])
INTEREST_SCHEMA = pa.schema([
    ("ts", pa.int64()), ("seq", pa.int64()), ("account", _DICT), ("asset", _DICT),
    ("debt", pa.int64()), ("rate", pa.int64()), ("amount", pa.int64()),
])
REPAYMENTS_SCHEMA = pa.schema([
    ("ts", pa.int64()), ("seq", pa.int64()), ("account", _DICT), ("asset", _DICT),
    ("amount", pa.int64()), ("interest", pa.int64()), ("principal", pa.int64()), ("via", _DICT),
    ("from_asset", _DICT), ("from_amount", pa.int64()),
])
# Record kind (first field) -> (table, schema).
SIMPLE_TABLES = {
    "ledger": ("ledger", LEDGER_SCHEMA),
    "funding": ("funding", FUNDING_SCHEMA),
    "margin_call": ("margin_calls", MARGIN_CALLS_SCHEMA),
    "transfer": ("transfer_events", TRANSFER_EVENTS_SCHEMA),
    "adl": ("adl", ADL_SCHEMA),
    "insurance": ("insurance_fund", INSURANCE_FUND_SCHEMA),
    "interest": ("interest", INTEREST_SCHEMA),
    "repayment": ("repayments", REPAYMENTS_SCHEMA),
}
FILL_ROW = "fill_row"  # a fills row without order events (takeover, adl): clearing/settlement.py
# write_records' group codes.
_FILLS, _EVENTS, _FILL_ROWS, _SIMPLE = 0, 1, 2, 3
BOOK_SCHEMA = pa.schema([
    ("symbol", pa.string()), ("side", pa.string()), ("price", pa.int64()), ("qty", pa.int64()),
    ("order_count", pa.int64()),
])

# The records as Arrow structs, field by field in record order (write_records converts a
# kind's records with one pa.array call, no transpose): an order event; the matcher's fill
# (taker/maker open qty after it last), the replay's cleared fill (+ fees, kind); a fill row.
_S, _I = pa.string(), pa.int64()
EVENT_RECORD = pa.struct([("event", _S), ("ts", _I), ("account", _S), ("symbol", _S),
                          ("order_id", _I), ("reason", _S), ("remaining_qty", _I)])
FILL_RECORD = pa.struct([("record", _S), ("ts", _I), ("symbol", _S), ("price", _I), ("qty", _I),
                         ("side", _I), ("taker_order_id", _I), ("maker_order_id", _I),
                         ("taker_account", _S), ("maker_account", _S), ("taker_left", _I),
                         ("maker_left", _I)])
CLEARED_FILL_RECORD = pa.struct([*FILL_RECORD, ("taker_fee", _I), ("maker_fee", _I), ("kind", _S)])
FILL_ROW_RECORD = pa.struct([("record", _S), ("ts", _I), ("symbol", _S), ("price", _I), ("qty", _I),
                             ("side", _I), ("taker_order_id", _I), ("maker_order_id", _I),
                             ("taker_account", _S), ("maker_account", _S), ("taker_fee", _I),
                             ("maker_fee", _I), ("kind", _S), ("notional", _I)])
_SIDE_NAMES = pa.array(SIDE_NAMES)


def _plain(schema: pa.Schema) -> pa.Schema:
    """`schema` with dictionary columns as plain strings (build, sort, then encode)."""
    return pa.schema([pa.field(f.name, f.type.value_type if pa.types.is_dictionary(f.type) else f.type)
                      for f in schema])


_PLAIN_FILLS = _plain(FILLS_SCHEMA)
_PLAIN_EVENTS = _plain(ORDER_EVENTS_SCHEMA)


def _record_struct(schema: pa.Schema) -> pa.StructType:
    """The struct of one clearing record of `schema`'s table: (KIND, ts, *columns after seq)."""
    plain = _plain(schema)
    return pa.struct([("record", pa.string()), plain.field(0), *list(plain)[2:]])


def _simple_table(records: pa.StructArray, seq: np.ndarray, schema: pa.Schema) -> pa.Table:
    """A clearing table's rows (plain `schema`) from its records and their sequence numbers."""
    field = records.field
    return pa.Table.from_arrays([field(1), pa.array(seq), *map(field, range(2, records.type.num_fields))],
                                schema=schema)


def _fills_table(fills: pa.StructArray, seq: np.ndarray, notional: pa.Array) -> pa.Table:
    """Fills rows from fill records (FILL_RECORD or CLEARED_FILL_RECORD); a matcher-only
    fill pays no fee and is a `trade`."""
    f = fills.field
    n = len(fills)
    if fills.type.num_fields == CLEARED_FILL_RECORD.num_fields:
        taker_fee, maker_fee, kind = f(12), f(13), f(14)
    else:
        taker_fee = maker_fee = pa.repeat(pa.scalar(0, pa.int64()), n)
        kind = pa.repeat(pa.scalar("trade", pa.string()), n)
    return pa.Table.from_arrays(
        [f(1), pa.array(seq), f(2), f(3), f(4), notional, _SIDE_NAMES.take(f(5)), f(6), f(7), f(8),
         f(9), taker_fee, maker_fee, kind], schema=_PLAIN_FILLS)


def _fill_rows_table(rows: pa.StructArray, seq: np.ndarray) -> pa.Table:
    """Fills rows that carry their own notional and no order events (takeover, adl)."""
    f = rows.field
    return pa.Table.from_arrays(
        [f(1), pa.array(seq), f(2), f(3), f(4), f(13), _SIDE_NAMES.take(f(5)), f(6), f(7), f(8),
         f(9), f(10), f(11), f(12)], schema=_PLAIN_FILLS)


def _build_fills(parts: list[Callable[[], pa.Table]]) -> pa.Table:
    tables = [part() for part in parts]
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables)


def _events_table(events: pa.StructArray, seq: np.ndarray, fills: pa.StructArray | None,
                  fill_seq: np.ndarray | None) -> pa.Table:
    """Order events rows: the event records, then each fill's taker `filled` (the fill's
    seq + 1) and maker `filled` (+ 2); the sink sorts them by seq."""
    e = events.field
    table = pa.Table.from_arrays([e(1), pa.array(seq), e(2), e(3), e(4), e(0), e(5), e(6)],
                                 schema=_PLAIN_EVENTS)
    if fills is None:
        return table
    f = fills.field
    n = len(fills)
    filled = pa.repeat(pa.scalar(FILLED, pa.string()), n)
    no_reason = pa.nulls(n, pa.string())
    taker = pa.Table.from_arrays([f(1), pa.array(fill_seq + 1), f(8), f(2), f(6), filled, no_reason, f(10)],
                                 schema=_PLAIN_EVENTS)
    maker = pa.Table.from_arrays([f(1), pa.array(fill_seq + 2), f(9), f(2), f(7), filled, no_reason, f(11)],
                                 schema=_PLAIN_EVENTS)
    return pa.concat_tables([table, taker, maker])


def _writer(path: Path, schema: pa.Schema) -> pq.ParquetWriter:
    return pq.ParquetWriter(path, schema, compression="zstd")


class _TableSink:
    """One background thread that builds, sorts, casts and writes the tables the writer
    hands over, in the order they were handed over (one FIFO queue, one thread: each file
    receives the same row groups in the same order as a synchronous writer, so the bytes
    are identical).

    Why: converting Python records to Arrow needs the GIL, but assembling tables from the
    converted arrays (derived columns, the fills' `filled` events, concatenation), sorting,
    casting to the dictionary schema and ParquetWriter.write_table are Arrow C++ that
    release it, so they run on the other core while the replay goes on. The queue is
    bounded so memory stays flat; an error in the thread is raised in the caller at the
    next `put` or at `close`.
    """

    def __init__(self) -> None:
        self._jobs: queue.Queue = queue.Queue(maxsize=8)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="parquet-sink", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            if self._error is not None:
                continue  # drain after a failure; the caller raises it
            writer, build, schema, sort = job
            try:
                table = build()
                if sort:
                    table = table.take(pc.sort_indices(table["seq"]))
                writer.write_table(table.cast(schema))
            except BaseException as exc:  # re-raised in the caller's thread
                self._error = exc

    def put(self, writer: pq.ParquetWriter, build: Callable[[], pa.Table], schema: pa.Schema, *,
            sort: bool = False) -> None:
        """Queue `build` (Arrow work only: it runs on the sink thread) for `writer`: its
        table (plain columns), sorted by seq when `sort`, cast to `schema`, written."""
        self._raise()
        self._jobs.put((writer, build, schema, sort))

    def close(self) -> None:
        """Wait until every queued table is written; raise the thread's error, if any."""
        if self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join()
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error


class MatchOutputWriter:
    """Streams records into `fills.parquet` and `order_events.parquet`, and with
    `clearing=True` the clearing tables of SIMPLE_TABLES too (every file is written, empty
    when nothing happened, so a run folder always has the same tables). The Arrow sorting,
    casting and Parquet writing run on a background thread (_TableSink); `close` waits for
    it."""

    def __init__(self, folder: Path, notional_factor: dict[str, int], *, clearing: bool = False) -> None:
        self.folder = folder
        self.notional_factor = notional_factor  # symbol -> K, minor units per tick x lot
        self.seq = 0  # last output sequence number used
        self.fill_rows = 0
        self.event_rows = 0
        self.rows: dict[str, int] = {}  # clearing table -> rows written
        self._fills = _writer(folder / "fills.parquet", FILLS_SCHEMA)
        self._events = _writer(folder / "order_events.parquet", ORDER_EVENTS_SCHEMA)
        self._simple: dict[str, pq.ParquetWriter] = {}
        self._sink = _TableSink()
        if clearing:
            for kind, (table, schema) in SIMPLE_TABLES.items():
                self._simple[kind] = _writer(folder / f"{table}.parquet", schema)
                self.rows[table] = 0
        # Record kind -> group code: fills, order events, fill rows, then the clearing tables
        # in name order (the order their tables are handed to the sink).
        self._group = [FILL, EVENT_NAMES, FILL_ROW, *sorted(self._simple)]
        self._codes = {FILL: _FILLS, FILL_ROW: _FILL_ROWS, **dict.fromkeys(EVENT_NAMES, _EVENTS),
                       **{kind: code for code, kind in enumerate(self._group) if code >= _SIMPLE}}
        self._record_types = {kind: _record_struct(SIMPLE_TABLES[kind][1]) for kind in self._simple}

    def write_records(self, records: list[tuple]) -> None:
        """Append one drained batch of records (then the caller clears it).

        Columnar, with no per-record Python bytecode: one compiled pass (backtest/split.py)
        puts each record in its kind's list with its first sequence number (a fill is three
        rows, anything else one), and each kind's records are converted to Arrow with one
        pa.array call to a struct (Arrow's converter walks the tuples in C; no zip(*)
        transpose, no Python column lists). Everything after
        that (the fills' derived columns and `filled` events, the sort by seq, the cast,
        the write) is Arrow work for the sink thread. Same rows as
        `matching.records.expand`. A fill record cleared by the replay carries three more
        fields: taker fee, maker fee, kind.
        """
        if not records:
            return
        lists, group_of, starts, self.seq = split_records(records, self._codes, len(self._group),
                                                          _FILLS, self.seq)

        def group(code: int) -> tuple[list, np.ndarray]:
            return lists[code], starts[group_of == code]

        for code in range(_SIMPLE, len(self._group)):
            if lists[code]:
                kind = self._group[code]
                table_name, schema = SIMPLE_TABLES[kind]
                recs, seq = group(code)
                arr = pa.array(recs, type=self._record_types[kind])
                self._sink.put(self._simple[kind], partial(_simple_table, arr, seq, _plain(schema)), schema)
                self.rows[table_name] += len(arr)
        fills = fill_seq = None
        parts = []
        if lists[_FILLS]:
            recs, fill_seq = group(_FILLS)
            fills = pa.array(recs, type=CLEARED_FILL_RECORD if len(recs[0]) == 15 else FILL_RECORD)
            parts.append(partial(_fills_table, fills, fill_seq, self._notional(fills)))
        if lists[_FILL_ROWS]:
            recs, seq = group(_FILL_ROWS)
            parts.append(partial(_fill_rows_table, pa.array(recs, type=FILL_ROW_RECORD), seq))
        if parts:
            self._sink.put(self._fills, partial(_build_fills, parts), FILLS_SCHEMA,
                           sort=len(parts) > 1)
            self.fill_rows += len(lists[_FILLS]) + len(lists[_FILL_ROWS])
        recs, seq = group(_EVENTS)
        events = pa.array(recs, type=EVENT_RECORD)
        self._sink.put(self._events, partial(_events_table, events, seq, fills, fill_seq),
                       ORDER_EVENTS_SCHEMA, sort=fills is not None)
        self.event_rows += len(events) + 2 * len(lists[_FILLS])

    def _notional(self, fills: pa.StructArray) -> pa.Array:
        """price x qty x K per fill, in int64 (Arrow's checked multiply); when that fails
        (overflow, an unknown symbol) the exact Python product says why."""
        symbol, price, qty = fills.field(2), fills.field(3), fills.field(4)
        factor = self.notional_factor
        per_fill = pa.array(list(factor.values()), pa.int64()).take(
            pc.index_in(symbol, value_set=pa.array(list(factor), pa.string())))
        try:
            notional = pc.multiply_checked(pc.multiply_checked(price, qty), per_fill)
        except pa.ArrowInvalid:
            notional = None
        if notional is None or notional.null_count:
            exact = [p * q * factor[s] for p, q, s in zip(price.to_pylist(), qty.to_pylist(),
                                                          symbol.to_pylist())]
            if max(exact) > INT64_MAX:
                raise OverflowError(f"fill notional beyond int64: max={max(exact)}")
            notional = pa.array(exact, pa.int64())
        return notional

    def close(self) -> None:
        self._sink.close()
        self._fills.close()
        self._events.close()
        for writer in self._simple.values():
            writer.close()


def write_book_final(matcher: Matcher, path: Path) -> int:
    """One row per price level: symbols in name order, bids best first, then asks best
    first. Returns the row count. A market-data book (matching/market.py) gives its rows
    itself: visible recorded lots plus ours, the recorded lots counting as one order."""
    cols: list[list] = [[] for _ in BOOK_SCHEMA]
    for symbol in sorted(matcher.books):
        book = matcher.books[symbol]
        for side in (BUY, SELL):
            if isinstance(book, MarketBook):
                rows = book.levels_in_priority(side)
            else:
                rows = [(lv.price, lv.qty, len(lv.orders)) for lv in book.levels_in_priority(side)]
            for price, qty, count in rows:
                for col, v in zip(cols, (symbol, SIDE_NAMES[side], price, qty, count)):
                    col.append(v)
    pq.write_table(pa.table(cols, schema=BOOK_SCHEMA), path, compression="zstd")
    return len(cols[0])


def write_summary(folder: Path, summary: dict) -> dict:
    """Add the content hash and row count of every Parquet table, then write summary.json
    (sorted keys, so the file is byte-identical for identical runs); return what it wrote."""
    tables = {}
    for path in sorted(folder.glob("*.parquet")):
        tables[path.stem] = {"rows": pq.ParquetFile(path).metadata.num_rows,
                             "sha256": file_sha256(path)}
    summary = dict(summary, tables=tables)
    (folder / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary
