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

RANK_DEPTH = 5
RANK_TRADES = 6
BATCH_ROWS = 131_072
SIDE_CODES = {"bid": 0, "buy": 0, "ask": 1, "sell": 1}
COLUMNS = ("ts", "rank", "seq", "symbol", "side", "price", "qty", "snapshot", "snapshot_end")


def market_frame(depth: Path | None, trades: Path | None) -> pl.LazyFrame:
    """The merged, ordered stream as a lazy frame with COLUMNS."""
    parts = []
    side = pl.col("side").cast(pl.String).replace_strict(SIDE_CODES, return_dtype=pl.Int8)
    if depth is not None:
        parts.append(pl.scan_parquet(depth).select(
            pl.col("ts").cast(pl.Int64), pl.lit(RANK_DEPTH, pl.Int8).alias("rank"),
            pl.col("seq").cast(pl.Int64), pl.col("symbol").cast(pl.String), side.alias("side"),
            pl.col("price").cast(pl.Int64), pl.col("qty").cast(pl.Int64),
            pl.col("snapshot").cast(pl.Boolean).fill_null(False)))
    if trades is not None:
        parts.append(pl.scan_parquet(trades).select(
            pl.col("ts").cast(pl.Int64), pl.lit(RANK_TRADES, pl.Int8).alias("rank"),
            pl.col("seq").cast(pl.Int64), pl.col("symbol").cast(pl.String),
            pl.col("aggressor").cast(pl.String).replace_strict(SIDE_CODES, return_dtype=pl.Int8).alias("side"),
            pl.col("price").cast(pl.Int64), pl.col("qty").cast(pl.Int64),
            pl.lit(False).alias("snapshot")))
    frame = pl.concat(parts).sort("ts", "rank", "seq", maintain_order=True)
    same_run = ((pl.col("snapshot").shift(-1).over("symbol").fill_null(False))
                & (pl.col("ts").shift(-1).over("symbol") == pl.col("ts")).fill_null(False)
                & (pl.col("rank").shift(-1).over("symbol") == RANK_DEPTH).fill_null(False))
    return frame.with_columns((pl.col("snapshot") & ~same_run).alias("snapshot_end")).select(COLUMNS)


def iter_market_batches(depth: Path | None, trades: Path | None,
                        batch_rows: int = BATCH_ROWS) -> Iterator[tuple[list, ...]]:
    """Yield the stream as tuples of column lists (module doc), `batch_rows` at a time."""
    frame = market_frame(depth, trades).collect()
    interned: dict[str, str] = {}
    for start in range(0, frame.height, batch_rows):
        part = frame.slice(start, batch_rows)
        cols = [part[c].to_list() for c in COLUMNS]
        cols[3] = [interned.setdefault(s, s) for s in cols[3]]
        yield tuple(cols)


def market_rows(depth: Path | None, trades: Path | None) -> int:
    """Rows of the stream (depth + trades)."""
    n = 0
    for path in (depth, trades):
        if path is not None:
            n += int(pl.scan_parquet(path).select(pl.len()).collect().item())
    return n
