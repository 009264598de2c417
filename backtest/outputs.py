"""Run folders: staged writing, the Parquet tables of DESIGN.md's Outputs, content hashes.

Sequence numbers: every output row of a run (fills rows and order events alike) takes the
next number of one counter that starts at 1, in emission order. A fill's three rows (the
fill, the taker's `filled`, the maker's `filled`) are consecutive.
"""

from __future__ import annotations

import json
import queue
import threading
from itertools import accumulate, compress
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

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
BOOK_SCHEMA = pa.schema([
    ("symbol", pa.string()), ("side", pa.string()), ("price", pa.int64()), ("qty", pa.int64()),
    ("order_count", pa.int64()),
])


def _plain(schema: pa.Schema) -> pa.Schema:
    """`schema` with dictionary columns as plain strings (build, sort, then encode)."""
    return pa.schema([pa.field(f.name, f.type.value_type if pa.types.is_dictionary(f.type) else f.type)
                      for f in schema])


def _writer(path: Path, schema: pa.Schema) -> pq.ParquetWriter:
    return pq.ParquetWriter(path, schema, compression="zstd")


class _TableSink:
    """One background thread that sorts, casts and writes the tables the writer builds, in
    the order they were handed over (one FIFO queue, one thread: each file receives the same
    row groups in the same order as a synchronous writer, so the bytes are identical).

    Why: building an Arrow table from Python lists needs the GIL, but sorting, casting to
    the dictionary schema and ParquetWriter.write_table are Arrow C++ that release it, so
    they run on the other core while the replay goes on (about a quarter of the writer's
    time on the 1M clearing stream). The queue is bounded so memory stays flat; an error in
    the thread is raised in the caller at the next `put` or at `close`.
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
            writer, table, schema, sort = job
            try:
                if sort:
                    table = table.take(pc.sort_indices(table["seq"]))
                writer.write_table(table.cast(schema))
            except BaseException as exc:  # re-raised in the caller's thread
                self._error = exc

    def put(self, writer: pq.ParquetWriter, table: pa.Table, schema: pa.Schema, *, sort: bool = False) -> None:
        """Queue `table` (plain columns) for `writer`: sorted by seq when `sort`, cast to
        `schema`, written."""
        self._raise()
        self._jobs.put((writer, table, schema, sort))

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

    def write_records(self, records: list[tuple]) -> None:
        """Append one drained batch of records (then the caller clears it).

        Columnar: a record's first sequence number is the running sum of record widths (a
        fill is three rows, anything else one); columns are transposed in C (zip(*...)),
        the fills' two `filled` events are added as columns, and the events are put in
        sequence order with one Arrow sort. Same rows as `matching.records.expand`. A fill
        record cleared by the replay carries three more fields: taker fee, maker fee, kind.
        """
        if not records:
            return
        kinds = [r[0] for r in records]
        is_fill = [k == FILL for k in kinds]
        present = set(kinds)
        starts = list(accumulate((3 if f else 1 for f in is_fill), initial=self.seq + 1))
        self.seq = starts.pop() - 1
        fill_recs = list(compress(records, is_fill))
        fill_seq = list(compress(starts, is_fill))
        for kind in sorted(present & self._simple.keys()):
            self._write_simple(kind, records, kinds, starts)
        if present <= {FILL, *EVENT_NAMES}:
            is_event = [not f for f in is_fill]
        else:
            names = set(EVENT_NAMES)
            is_event = [k in names for k in kinds]
            unknown = present - names - {FILL, FILL_ROW} - self._simple.keys()
            if unknown:
                raise ValueError(f"records of unknown kind: {sorted(unknown)}")
        ev_cols = [list(c) for c in zip(*compress(records, is_event))] or [[] for _ in range(7)]
        ev_seq = list(compress(starts, is_event))
        event, ts, account, symbol, order_id, reason, remaining = ev_cols
        if fill_recs:
            cleared = len(fill_recs[0]) == 15
            columns = [list(c) for c in zip(*fill_recs)]
            (_, f_ts, f_sym, price, qty, side, taker_id, maker_id, taker, maker, t_left,
             m_left) = columns[:12]
            factor = self.notional_factor
            notional = [p * q * factor[s] for p, q, s in zip(price, qty, f_sym)]
            if max(notional) > INT64_MAX:
                raise OverflowError(f"fill notional beyond int64: max={max(notional)}")
            n = len(fill_recs)
            if cleared:
                taker_fee, maker_fee, fill_kind = columns[12:]
            else:
                taker_fee = maker_fee = [0] * n
                fill_kind = ["trade"] * n
            fills = pa.table(
                [f_ts, fill_seq, f_sym, price, qty, notional, [SIDE_NAMES[x] for x in side],
                 taker_id, maker_id, taker, maker, taker_fee, maker_fee, fill_kind],
                schema=_plain(FILLS_SCHEMA))
            sort_fills = FILL_ROW in present
            if sort_fills:
                fills = pa.concat_tables([fills, self._fill_rows(records, kinds, starts)])
            self._sink.put(self._fills, fills, FILLS_SCHEMA, sort=sort_fills)
            self.fill_rows += fills.num_rows
            filled = [FILLED] * 2 * n
            event += filled
            ts += f_ts + f_ts
            account += taker + maker
            symbol += f_sym + f_sym
            order_id += taker_id + maker_id
            reason += [None] * 2 * n
            remaining += t_left + m_left
            ev_seq += [s + 1 for s in fill_seq] + [s + 2 for s in fill_seq]
        elif FILL_ROW in present:
            fills = self._fill_rows(records, kinds, starts)
            self._sink.put(self._fills, fills, FILLS_SCHEMA)
            self.fill_rows += fills.num_rows
        events = pa.table([ts, ev_seq, account, symbol, order_id, event, reason, remaining],
                          schema=_plain(ORDER_EVENTS_SCHEMA))
        self._sink.put(self._events, events, ORDER_EVENTS_SCHEMA, sort=bool(fill_recs))
        self.event_rows += events.num_rows

    def _fill_rows(self, records: list[tuple], kinds: list[str], starts: list[int]) -> pa.Table:
        """Fills rows that carry their own notional and no order events (takeover, adl)."""
        sel = [k == FILL_ROW for k in kinds]
        (_, ts, symbol, price, qty, side, taker_id, maker_id, taker, maker, taker_fee,
         maker_fee, kind, notional) = (list(c) for c in zip(*compress(records, sel)))
        return pa.table([ts, list(compress(starts, sel)), symbol, price, qty, notional,
                         [SIDE_NAMES[x] for x in side], taker_id, maker_id, taker, maker,
                         taker_fee, maker_fee, kind], schema=_plain(FILLS_SCHEMA))

    def _write_simple(self, kind: str, records: list[tuple], kinds: list[str], starts: list[int]) -> None:
        table_name, schema = SIMPLE_TABLES[kind]
        sel = [k == kind for k in kinds]
        cols = list(zip(*compress(records, sel)))  # tuples: Arrow reads them as it reads lists
        seqs = list(compress(starts, sel))
        table = pa.table([cols[1], seqs, *cols[2:]], schema=_plain(schema))
        self._sink.put(self._simple[kind], table, schema)
        self.rows[table_name] += table.num_rows

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


def write_summary(folder: Path, summary: dict) -> None:
    """Add the content hash and row count of every Parquet table, then write summary.json
    (sorted keys, so the file is byte-identical for identical runs)."""
    tables = {}
    for path in sorted(folder.glob("*.parquet")):
        tables[path.stem] = {"rows": pq.ParquetFile(path).metadata.num_rows,
                             "sha256": file_sha256(path)}
    summary = dict(summary, tables=tables)
    (folder / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
