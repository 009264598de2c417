"""The recorded market data of a market-data replay as one stream: `depth` and `trades`
merged by (ts, stream rank, seq) (CLEARING.md section 7: depth rank 5, trades rank 6), in
batches of columns the replay (backtest/replay.py) and `backtest check-book` consume.

Each batch is a tuple of lists:
    ts, rank, seq, symbol, side, price, qty, snapshot, snapshot_end
- depth rows (rank 5): side 0 = bid, 1 = ask (`buy`/`sell` as synonyms), qty the absolute
  level size; `snapshot_end` marks the last row of a snapshot: a run of snapshot rows of
  one symbol at one ts, in the symbol's own order (other symbols' rows may interleave);
- trade rows (rank 6): side is the aggressor (0 buy, 1 sell); snapshot flags false.
Assumes the tables passed their checks (datasets/tables.py DEPTH and TRADES).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

RANK_DEPTH = 5
RANK_TRADES = 6
BATCH_ROWS = 131_072
SIDE_CODES = {"bid": 0, "buy": 0, "ask": 1, "sell": 1}
COLUMNS = ("ts", "rank", "seq", "symbol", "side", "price", "qty", "snapshot", "snapshot_end")


def _source(path: Path, rank: int, batch_rows: int) -> Iterator[pl.DataFrame]:
    """One table's rows as frames of the stream's columns (snapshot_end not yet set), in
    file order, which validation guarantees is (ts, seq) order."""
    reader = pq.ParquetFile(path)
    trades = rank == RANK_TRADES
    names = ["ts", "seq", "symbol", "aggressor" if trades else "side", "price", "qty"]
    if not trades:
        names.append("snapshot")
    for batch in reader.iter_batches(batch_size=batch_rows, columns=names):
        if not batch.num_rows:
            continue
        frame = pl.from_arrow(batch)
        assert isinstance(frame, pl.DataFrame)
        side = pl.col(names[3]).cast(pl.String).replace_strict(SIDE_CODES, return_dtype=pl.Int8)
        snapshot = pl.lit(False) if trades else pl.col("snapshot").cast(pl.Boolean).fill_null(False)
        yield frame.select(pl.col("ts").cast(pl.Int64), pl.lit(rank, pl.Int8).alias("rank"),
                           pl.col("seq").cast(pl.Int64), pl.col("symbol").cast(pl.String),
                           side.alias("side"), pl.col("price").cast(pl.Int64),
                           pl.col("qty").cast(pl.Int64), snapshot.alias("snapshot"))


def _ordered(part: pl.DataFrame) -> pl.DataFrame:
    """Rows holding every row of each of their (symbol, ts) groups, sorted by (ts, rank,
    seq), with snapshot_end set: a snapshot row whose symbol's next row is not a snapshot
    depth row of the same ts."""
    part = part.sort("ts", "rank", "seq", maintain_order=True)
    nxt = [pl.col(c).shift(-1).over("symbol") for c in ("snapshot", "ts", "rank")]
    same_run = (nxt[0].fill_null(False) & (nxt[1] == pl.col("ts")).fill_null(False)
                & (nxt[2] == RANK_DEPTH).fill_null(False))
    return part.with_columns((pl.col("snapshot") & ~same_run).alias("snapshot_end")).select(COLUMNS)


def iter_market_frames(depth: Path | None, trades: Path | None,
                       batch_rows: int = BATCH_ROWS) -> Iterator[pl.DataFrame]:
    """The merged stream as frames of COLUMNS, holding about `batch_rows` rows from each
    table at a time. A frame ends before the latest ts either table may still add rows to,
    so a (symbol, ts) group, and with it a snapshot, is never split between frames."""
    sources = [(_source(path, rank, batch_rows), []) for path, rank in
               ((depth, RANK_DEPTH), (trades, RANK_TRADES)) if path is not None]
    pending = [pl.DataFrame() for _ in sources]
    open_ = [True] * len(sources)
    while True:
        for i, (reader, _) in enumerate(sources):
            if open_[i] and pending[i].height < batch_rows:
                chunk = next(reader, None)
                if chunk is None:
                    open_[i] = False
                else:
                    pending[i] = chunk if pending[i].is_empty() else pl.concat([pending[i], chunk])
        # Rows at or after `cutoff` may still be joined by later rows of an open table.
        ends = [pending[i]["ts"][-1] for i in range(len(sources)) if open_[i] and not pending[i].is_empty()]
        cutoff = min(ends) if ends else None
        parts, keep = [], []
        for frame in pending:
            if frame.is_empty():
                keep.append(frame)
                continue
            if cutoff is None:
                parts.append(frame)
                keep.append(frame.clear())
            else:
                parts.append(frame.filter(pl.col("ts") < cutoff))
                keep.append(frame.filter(pl.col("ts") >= cutoff))
        pending = keep
        rows = sum(part.height for part in parts)
        if rows:
            yield _ordered(pl.concat([part for part in parts if part.height]))
        elif not any(open_):
            return
        elif all(frame.height >= batch_rows for i, frame in enumerate(pending) if open_[i]):
            # One ts holds more than a batch: read on until it closes.
            for i in range(len(sources)):
                if open_[i]:
                    chunk = next(sources[i][0], None)
                    if chunk is None:
                        open_[i] = False
                    else:
                        pending[i] = pl.concat([pending[i], chunk])


def iter_market_batches(depth: Path | None, trades: Path | None,
                        batch_rows: int = BATCH_ROWS) -> Iterator[tuple[list, ...]]:
    """Yield the stream as tuples of column lists (module doc); memory holds about
    2 x `batch_rows` rows, not the day."""
    interned: dict[str, str] = {}
    for frame in iter_market_frames(depth, trades, batch_rows):
        cols = [frame[c].to_list() for c in COLUMNS]
        cols[3] = [interned.setdefault(s, s) for s in cols[3]]
        yield tuple(cols)


def market_rows(depth: Path | None, trades: Path | None) -> int:
    """Rows of the stream (depth + trades)."""
    n = 0
    for path in (depth, trades):
        if path is not None:
            n += int(pl.scan_parquet(path).select(pl.len()).collect().item())
    return n
