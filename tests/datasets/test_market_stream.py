"""datasets/market_stream.py: depth and trades merged by (ts, rank, seq) in bounded batches,
the last row of every snapshot flagged, whatever the batch size."""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from datasets.market_stream import COLUMNS, RANK_DEPTH, RANK_TRADES, iter_market_batches


def _write(tmp_path, depth_rows, trade_rows):
    depth = tmp_path / "depth.parquet"
    trades = tmp_path / "trades.parquet"
    pl.DataFrame(depth_rows, schema={"ts": pl.Int64, "seq": pl.Int64, "symbol": pl.String, "side": pl.String,
                                     "price": pl.Int64, "qty": pl.Int64, "snapshot": pl.Boolean},
                 orient="row").write_parquet(depth)
    pl.DataFrame(trade_rows, schema={"ts": pl.Int64, "seq": pl.Int64, "symbol": pl.String, "price": pl.Int64,
                                     "qty": pl.Int64, "aggressor": pl.String},
                 orient="row").write_parquet(trades)
    return depth, trades


def _rows(depth, trades, batch_rows):
    out = []
    for cols in iter_market_batches(depth, trades, batch_rows):
        out += list(zip(*cols))
    return out


def test_a_snapshot_split_across_batches_ends_once(tmp_path):
    depth, trades = _write(tmp_path, [
        (1, 1, "X", "bid", 99, 5, True), (1, 2, "X", "bid", 98, 5, True), (1, 3, "Y", "ask", 7, 1, True),
        (1, 4, "X", "ask", 101, 5, True), (1, 5, "X", "ask", 102, 5, True), (2, 6, "X", "bid", 99, 0, False),
        (3, 7, "X", "bid", 97, 1, True)],
        [(1, 1, "X", 100, 1, "buy"), (2, 2, "X", 101, 2, "sell")])
    for batch_rows in (1, 2, 3, 100):
        rows = _rows(depth, trades, batch_rows)
        assert [(r[0], r[1], r[2]) for r in rows] == [
            (1, RANK_DEPTH, 1), (1, RANK_DEPTH, 2), (1, RANK_DEPTH, 3), (1, RANK_DEPTH, 4), (1, RANK_DEPTH, 5),
            (1, RANK_TRADES, 1), (2, RANK_DEPTH, 6), (2, RANK_TRADES, 2), (3, RANK_DEPTH, 7)], batch_rows
        # X's snapshot at ts 1 ends at its seq 5 (Y's row in between is another symbol's
        # snapshot, which ends at once); the one-row snapshot at ts 3 ends at itself.
        assert [r[2] for r in rows if r[8]] == [3, 5, 7], batch_rows
        assert [r[4] for r in rows if r[1] == RANK_TRADES] == [0, 1]  # aggressor buy, sell


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.sampled_from(["X", "Y"]), st.booleans(), st.booleans()),
                max_size=40),
       st.integers(1, 7))
def test_any_batch_size_gives_the_whole_sort(tmp_path_factory, rows, batch_rows):
    """The bounded merge equals one sort of everything, snapshot ends computed on it."""
    tmp = tmp_path_factory.mktemp("stream")
    rows = sorted(rows, key=lambda r: r[0])
    depth_rows = [(ts, i, sym, "bid", 100, 1, snap) for i, (ts, sym, snap, is_trade) in enumerate(rows) if not is_trade]
    trade_rows = [(ts, i, sym, 100, 1, "buy") for i, (ts, sym, snap, is_trade) in enumerate(rows) if is_trade]
    depth, trades = _write(tmp, depth_rows, trade_rows)
    got = _rows(depth, trades, batch_rows)
    every = [(ts, RANK_DEPTH, seq, sym, snap) for ts, seq, sym, _, _, _, snap in depth_rows]
    every += [(ts, RANK_TRADES, seq, sym, False) for ts, seq, sym, _, _, _ in trade_rows]
    every.sort(key=lambda r: r[:3])
    ends = []
    for i, r in enumerate(every):
        later = [x for x in every[i + 1:] if x[3] == r[3]]
        nxt = later[0] if later else None
        ends.append(r[4] and not (nxt is not None and nxt[4] and nxt[0] == r[0] and nxt[1] == RANK_DEPTH))
    assert [(r[0], r[1], r[2], r[3], r[7], r[8]) for r in got] == \
        [(r[0], r[1], r[2], r[3], r[4], e) for r, e in zip(every, ends)]
    assert len(COLUMNS) == 9
