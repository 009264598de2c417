"""Run folders: staged writing, the Parquet tables of DESIGN.md's Outputs, content hashes.

Sequence numbers: every output row of a run (fills rows and order events alike) takes the
next number of one counter that starts at 1, in emission order. A fill's three rows (the
fill, the taker's `filled`, the maker's `filled`) are consecutive.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from matching import Matcher
from matching.records import expand
from matching.types import BUY, FILL, SELL, SIDE_NAMES

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
BOOK_SCHEMA = pa.schema([
    ("symbol", pa.string()), ("side", pa.string()), ("price", pa.int64()), ("qty", pa.int64()),
    ("order_count", pa.int64()),
])


@contextmanager
def staged_run_folder(out: Path) -> Iterator[Path]:
    """Yield a hidden staging folder beside `out`; on success it replaces `out`, on any
    failure (Ctrl-C included) it is removed, so no folder that looks complete is left."""
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = out.parent / f".{out.name}.partial-{os.getpid()}"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir()
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    stage.rename(out)


def _writer(path: Path, schema: pa.Schema) -> pq.ParquetWriter:
    return pq.ParquetWriter(path, schema, compression="zstd")


class MatchOutputWriter:
    """Streams the matcher's records into `fills.parquet` and `order_events.parquet`."""

    def __init__(self, folder: Path, notional_factor: dict[str, int]) -> None:
        self.folder = folder
        self.notional_factor = notional_factor  # symbol -> K, minor units per tick x lot
        self.seq = 0  # last output sequence number used
        self.fill_rows = 0
        self.event_rows = 0
        self._fills = _writer(folder / "fills.parquet", FILLS_SCHEMA)
        self._events = _writer(folder / "order_events.parquet", ORDER_EVENTS_SCHEMA)

    def write_records(self, records: list[tuple]) -> None:
        """Append one drained batch of matcher records (then the caller clears it)."""
        f_cols: list[list] = [[] for _ in FILLS_SCHEMA]
        e_cols: list[list] = [[] for _ in ORDER_EVENTS_SCHEMA]
        seq = self.seq
        factor = self.notional_factor
        for row in expand(records):
            seq += 1
            if row[0] == FILL:
                _, ts, symbol, price, qty, side, taker_id, maker_id, taker, maker = row
                notional = price * qty * factor[symbol]
                if notional > INT64_MAX:
                    raise OverflowError(f"fill notional beyond int64: seq={seq}, notional={notional}")
                for col, v in zip(f_cols, (ts, seq, symbol, price, qty, notional, SIDE_NAMES[side],
                                           taker_id, maker_id, taker, maker, 0, 0, "trade")):
                    col.append(v)
            else:
                event, ts, account, symbol, order_id, reason, remaining = row
                for col, v in zip(e_cols, (ts, seq, account, symbol, order_id, event, reason, remaining)):
                    col.append(v)
        self.seq = seq
        if f_cols[0]:
            self._fills.write_table(pa.table(f_cols, schema=FILLS_SCHEMA))
            self.fill_rows += len(f_cols[0])
        if e_cols[0]:
            self._events.write_table(pa.table(e_cols, schema=ORDER_EVENTS_SCHEMA))
            self.event_rows += len(e_cols[0])

    def close(self) -> None:
        self._fills.close()
        self._events.close()


def write_book_final(matcher: Matcher, path: Path) -> int:
    """One row per price level: symbols in name order, bids best first, then asks best
    first. Returns the row count."""
    cols: list[list] = [[] for _ in BOOK_SCHEMA]
    for symbol in sorted(matcher.books):
        book = matcher.books[symbol]
        for side in (BUY, SELL):
            for level in book.levels_in_priority(side):
                for col, v in zip(cols, (symbol, SIDE_NAMES[side], level.price, level.qty,
                                         len(level.orders))):
                    col.append(v)
    pq.write_table(pa.table(cols, schema=BOOK_SCHEMA), path, compression="zstd")
    return len(cols[0])


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_summary(folder: Path, summary: dict) -> None:
    """Add the content hash and row count of every Parquet table, then write summary.json
    (sorted keys, so the file is byte-identical for identical runs)."""
    tables = {}
    for path in sorted(folder.glob("*.parquet")):
        tables[path.stem] = {"rows": pq.ParquetFile(path).metadata.num_rows,
                             "sha256": file_sha256(path)}
    summary = dict(summary, tables=tables)
    (folder / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
