"""`backtest generate depth-day OUT`: a synthetic day of market data at venue message rates,
for the market-data replay's throughput figure (issue 8). docs/market-data.md says the
same for users.

OUT is a dataset folder for BTCUSDT on Binance's grid (tick 0.1, lot 0.001; dataset.toml
as `backtest import binance` writes it, datasets.importers.binance.write_manifest) with:
- `depth`: an opening snapshot of 1,000 levels per side (every tick from the touch out),
  then one diff message every 1/--rate s (Binance's depth@100ms is 10 a second). Each
  message carries --levels random level updates plus the rows its touch move needs.
- `trades`: --trades-per-s prints at the touch (a buy at the ask, a sell at the bid).
- `marks`: one a second, mark = index = the best bid then.

The book model (integers only; the touch never crosses, and no level is stale on the wrong
side of it):
- The best bid follows a random walk from 600,000 ticks (60,000.0 USDT): each message moves
  it by d = U1 - U2 ticks, U1, U2 uniform on -11..11 (a triangular step: sd 9.4 ticks a
  message, ~30 ticks a second at 10 a second, a daily sd near 0.8% of the price); the best
  ask is the bid + 1 (BTCUSDT's usual one-tick spread).
- A move up by d removes the asks at the d ticks the bid passed (qty 0), sets bids there,
  and sets a size at the new best ask; a move down mirrors it. So every ask stays above
  the bid and every bid below the ask, and both touches always hold a level.
- Each random update is on a side drawn evenly, at a distance from the touch drawn from a
  geometric table (weight 19/20 of the one nearer, 0..999 ticks: mean ~19), with qty 0
  (removal) in 15% of updates away from the touch, else a size.
- Sizes are log-uniform integers: an octave o uniform in 0..14, then 2^o + uniform(0..2^o - 1)
  lots (0.001 .. 32.767 BTC); trade sizes the same with o in 0..9.
Every draw is an integer draw (numpy's bounded integers and table look-ups; no float on
the way), so the same --seed gives the same bytes (with the same numpy version: the
streams of np.random.Generator are stable across platforms).

Memory bound: the walk is drawn whole (one int64 a message: 7 MB for a day at 10 a
second); the rows are built and written CHUNK_MESSAGES messages at a time (one Parquet row
group per chunk and table), so the peak is the walk plus one chunk's rows and their numpy
temporaries (~20 int64 arrays of the chunk's ~243,000 rows at the defaults: ~40 MB),
whatever --hours is. Measured peak RSS: 314 MB for the default day, 274 MB for one hour,
151 MB for 36 s (the interpreter and libraries: ~95 MB; the rest is pyarrow's pool and
the writers' row-group metadata). Everything is vectorised (numpy; no Python loop per
row). The folder appears only when complete (staged_folder).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from datasets.folders import staged_folder
from datasets.importers.binance import SCHEMAS, grids, write_manifest
from matching.errors import InputError

HELP = "a synthetic day of depth at venue message rates (throughput figure)"
DESCRIPTION = """\
Write the dataset folder OUT: BTCUSDT on Binance's grid, depth.parquet with an opening
snapshot of 1,000 levels per side then a diff message every 1/--rate s (depth@100ms = 10 a
second) around a random-walk best bid, each message --levels random level updates plus the
rows its touch move needs (asks the bid passed removed, bids set there); trades at the
touch (--trades-per-s); a mark every second. Deterministic (same --seed, same bytes),
vectorised, written in chunks (memory bounded whatever --hours). For `backtest check-book
OUT --bench N`. docs/market-data.md has the model."""
EPILOG = ("examples:\n  backtest generate depth-day data/depth-day\n"
          "  backtest generate depth-day data/depth-hour --hours 1 --rate 20 --levels 60 --seed 2\n"
          "  backtest check-book data/depth-day --bench 3")

SYMBOL = "BTCUSDT"
START_NS = 1_735_689_600_000_000_000  # 2025-01-01T00:00:00Z
OPENING_BID = 600_000  # ticks: 60,000.0 USDT
SNAPSHOT_LEVELS = 1_000  # per side
STEP_HALF_WIDTH = 11  # d = U1 - U2, U uniform on -11..11
FAR = 1_000  # random updates reach 0..FAR-1 ticks from the touch
REMOVE_PERCENT = 15  # random updates away from the touch that remove the level
SIZE_OCTAVES = 15  # level sizes 1 .. 2^15 - 1 lots
TRADE_OCTAVES = 10
CHUNK_MESSAGES = 10_000
NS_PER_MS = 1_000_000

# Distance weights: w(0) = 2^30, w(k+1) = w(k) * 19 // 20 (exact integers), cumulative.
_W = [1 << 30]
for _ in range(FAR - 1):
    _W.append(_W[-1] * 19 // 20)
DISTANCE_CUM = np.cumsum(np.array(_W, dtype=np.int64))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hours", default="24", metavar="H",
                        help="the span in hours, a decimal (default 24)")
    parser.add_argument("--rate", type=int, default=10, metavar="MSGS_PER_S",
                        help="depth diff messages per second (default 10: Binance depth@100ms)")
    parser.add_argument("--levels", type=int, default=8, metavar="L",
                        help="random level updates per message, beside the rows a touch move needs "
                             "(default 8)")
    parser.add_argument("--trades-per-s", type=int, default=40, metavar="N",
                        help="trades per second (default 40: ~3.5M a day; the BTCUSDT websocket "
                             "sample of 2024-08-08 has ~62 a second)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")


def _sizes(rng: np.random.Generator, n: int, octaves: int) -> np.ndarray:
    """n log-uniform integer sizes (module doc), lots >= 1."""
    octave = rng.integers(0, octaves, n)
    low = np.left_shift(np.int64(1), octave)
    return low + rng.integers(0, low)


def walk(seed: int, messages: int) -> np.ndarray:
    """The best bid (ticks) at messages 0..messages-1 (message 0: the snapshot)."""
    rng = np.random.default_rng([seed, 0])
    steps = (rng.integers(-STEP_HALF_WIDTH, STEP_HALF_WIDTH + 1, messages)
             - rng.integers(-STEP_HALF_WIDTH, STEP_HALF_WIDTH + 1, messages))
    steps[0] = 0
    return OPENING_BID + np.cumsum(steps)


def _snapshot(seed: int, ts: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([seed, 1])
    depth = np.arange(SNAPSHOT_LEVELS, dtype=np.int64)
    return {"ts": np.full(2 * SNAPSHOT_LEVELS, ts, dtype=np.int64),
            "side": np.repeat(np.array([0, 1], dtype=np.int8), SNAPSHOT_LEVELS),
            "price": np.concatenate([OPENING_BID - depth, OPENING_BID + 1 + depth]),
            "qty": _sizes(rng, 2 * SNAPSHOT_LEVELS, SIZE_OCTAVES),
            "snapshot": np.ones(2 * SNAPSHOT_LEVELS, dtype=bool)}


def diff_rows(seed: int, chunk: int, bids: np.ndarray, prev: np.ndarray, ts: np.ndarray,
              levels: int) -> dict[str, np.ndarray]:
    """The rows of the messages whose best bids are `bids` (the one before each: `prev`),
    stamped `ts`: per message the touch move's rows (removals, then the bids or asks set
    where the touch passed, then the new opposite touch), then `levels` random updates."""
    rng = np.random.default_rng([seed, 2, chunk])
    d = bids - prev
    moved = np.abs(d)
    mandated = np.where(d != 0, 2 * moved + 1, 0)
    per = mandated + levels
    n = int(per.sum())
    msg = np.repeat(np.arange(len(bids)), per)
    start = np.cumsum(per) - per
    within = np.arange(n, dtype=np.int64) - start[msg]
    k = within  # index inside the touch move's rows
    dm, am, bm, pm = d[msg], moved[msg], bids[msg], prev[msg]
    is_move = within < mandated[msg]
    up = dm > 0
    low = np.minimum(bm, pm) + 1  # first tick the touch passed
    removal = is_move & (k < am)
    setting = is_move & (k >= am) & (k < 2 * am)
    touch = is_move & (k == 2 * am)
    # random updates
    side_r = rng.integers(0, 2, n).astype(np.int8)
    dist = np.searchsorted(DISTANCE_CUM, rng.integers(0, int(DISTANCE_CUM[-1]), n), side="right")
    remove_r = (dist > 0) & (rng.integers(0, 100, n) < REMOVE_PERCENT)
    size = _sizes(rng, n, SIZE_OCTAVES)

    side = np.where(removal, np.where(up, 1, 0),
                    np.where(setting, np.where(up, 0, 1),
                             np.where(touch, np.where(up, 1, 0), side_r))).astype(np.int8)
    price = np.where(removal, low + k,
                     np.where(setting, low + k - am,
                              np.where(touch, np.where(up, bm + 1, bm),
                                       np.where(side_r == 0, bm - dist, bm + 1 + dist))))
    qty = np.where(removal | (~is_move & remove_r), 0, size)
    return {"ts": ts[msg], "side": side, "price": price, "qty": qty,
            "snapshot": np.zeros(n, dtype=bool)}


def _depth_table(rows: dict[str, np.ndarray], seq0: int) -> pa.Table:
    n = len(rows["ts"])
    return pa.table({
        "ts": pa.array(rows["ts"], pa.int64()),
        "seq": pa.array(np.arange(seq0, seq0 + n, dtype=np.int64)),
        "symbol": pa.array(np.full(n, SYMBOL, dtype=object), pa.string()),
        "side": pa.DictionaryArray.from_arrays(pa.array(rows["side"], pa.int8()),
                                               pa.array(["bid", "ask"])).cast(pa.string()),
        "price": pa.array(rows["price"], pa.int64()),
        "qty": pa.array(rows["qty"], pa.int64()),
        "snapshot": pa.array(rows["snapshot"], pa.bool_()),
    }, schema=SCHEMAS["depth"])


def _trades(seed: int, chunk: int, t0_ms: int, t1_ms: int, per_s: int, msg_ms: np.ndarray,
            bids: np.ndarray, id0: int) -> pa.Table:
    """Trades in [t0_ms, t1_ms) (ms from the start) at the touch of the message then."""
    rng = np.random.default_rng([seed, 3, chunk])
    n = (t1_ms - t0_ms) * per_s // 1000
    ms = np.sort(rng.integers(t0_ms, t1_ms, n))
    at = np.searchsorted(msg_ms, ms, side="right") - 1
    sell = rng.integers(0, 2, n).astype(bool)
    price = np.where(sell, bids[at], bids[at] + 1)
    ids = np.arange(id0, id0 + n, dtype=np.int64)
    return pa.table({
        "ts": pa.array(START_NS + ms * NS_PER_MS, pa.int64()), "seq": pa.array(ids),
        "symbol": pa.array(np.full(n, SYMBOL, dtype=object), pa.string()),
        "price": pa.array(price, pa.int64()),
        "qty": pa.array(_sizes(rng, n, TRADE_OCTAVES), pa.int64()),
        "aggressor": pa.array(np.where(sell, "sell", "buy").astype(object), pa.string()),
        "trade_id": pa.array(ids)}, schema=SCHEMAS["trades"])


def _span_ms(text: str) -> int:
    try:
        hours = Decimal(text)
    except InvalidOperation:
        hours = None
    if hours is None or not hours.is_finite() or not 0 < hours <= 24 * 7:
        raise InputError("--hours", [f"a decimal over 0 and at most 168 (value: {text!r})"])
    span = hours * 3_600_000
    if span != span.to_integral_value():
        raise InputError("--hours", [f"must be a whole number of ms (value: {text!r})"])
    return int(span)


def run(out: Path, options: argparse.Namespace, progress: Callable[[int, int | None], None]) -> list[str]:
    """Write the depth day into `out` (module doc); return the summary lines."""
    span_ms = _span_ms(str(options.hours))
    rate, levels, per_s, seed = options.rate, options.levels, options.trades_per_s, options.seed
    if not 1 <= rate <= 1000:
        raise InputError("--rate", [f"messages per second in 1..1000 (value: {rate})"])
    if not 0 <= levels <= 1000:
        raise InputError("--levels", [f"random updates per message in 0..1000 (value: {levels})"])
    if not 0 <= per_s <= 10_000:
        raise InputError("--trades-per-s", [f"in 0..10000 (value: {per_s})"])
    messages = span_ms * rate // 1000
    if messages < 2:
        raise InputError("--hours", [f"the span holds {messages} message(s) at --rate {rate}: at least 2"])
    msg_ms = np.arange(messages, dtype=np.int64) * 1000 // rate
    bids = walk(seed, messages)
    grid_of = grids([SYMBOL], argparse.Namespace())
    depth_rows = trade_rows = 0
    with staged_folder(out) as folder:
        depth_w = pq.ParquetWriter(folder / "depth.parquet", SCHEMAS["depth"], compression="zstd")
        trade_w = pq.ParquetWriter(folder / "trades.parquet", SCHEMAS["trades"], compression="zstd")
        try:
            table = _depth_table(_snapshot(seed, START_NS), 1)
            depth_w.write_table(table)
            depth_rows += table.num_rows
            for chunk, a in enumerate(range(1, messages, CHUNK_MESSAGES)):
                b = min(a + CHUNK_MESSAGES, messages)
                rows = diff_rows(seed, chunk, bids[a:b], bids[a - 1:b - 1],
                                 START_NS + msg_ms[a:b] * NS_PER_MS, levels)
                table = _depth_table(rows, depth_rows + 1)
                depth_w.write_table(table, row_group_size=table.num_rows)
                depth_rows += table.num_rows
                t0 = 0 if chunk == 0 else int(msg_ms[a])
                t1 = span_ms if b == messages else int(msg_ms[b])
                trades = _trades(seed, chunk, t0, t1, per_s, msg_ms, bids, trade_rows + 1)
                trade_w.write_table(trades, row_group_size=max(1, trades.num_rows))
                trade_rows += trades.num_rows
                progress(b, messages)
        finally:
            depth_w.close()
            trade_w.close()
        seconds = np.arange(0, span_ms // 1000, dtype=np.int64)
        mark = bids[np.searchsorted(msg_ms, seconds * 1000, side="right") - 1]
        pq.write_table(pa.table({"ts": pa.array(START_NS + seconds * 1_000_000_000),
                                 "symbol": pa.array(np.full(len(seconds), SYMBOL, dtype=object), pa.string()),
                                 "mark_price": pa.array(mark), "index_price": pa.array(mark)},
                                schema=SCHEMAS["marks"]), folder / "marks.parquet", compression="zstd")
        hours = str(options.hours)
        write_manifest(folder, name=f"depth-day-seed{seed}", start_ns=START_NS,
                       end_ns=START_NS + span_ms * NS_PER_MS,
                       provenance=(f"backtest generate depth-day --hours {hours} --rate {rate} --levels "
                                   f"{levels} --trades-per-s {per_s} --seed {seed} (synthetic)"),
                       grid_of=grid_of, options=options,
                       extra={"kind": "synthetic depth day (datasets/depth_day.py)", "seed": seed,
                              "messages": messages, "depth_rows": depth_rows, "trades": trade_rows})
    low, high = int(bids.min()), int(bids.max())
    return [
        f"depth day of {SYMBOL}: {span_ms / 3_600_000:g} h, {messages:,} messages ({rate}/s; the first the "
        f"opening snapshot of {SNAPSHOT_LEVELS:,} levels a side)",
        f"depth: {depth_rows:,} rows ({(depth_rows - 2 * SNAPSHOT_LEVELS) / max(1, messages - 1):.1f} per diff "
        f"message: {levels} random updates + the touch moves), {depth_rows * 1000 / span_ms:,.0f} rows/s of "
        "market time",
        f"best bid walk: {OPENING_BID / 10:,.1f} -> {int(bids[-1]) / 10:,.1f} (low {low / 10:,.1f}, high "
        f"{high / 10:,.1f}) USDT",
        f"trades: {trade_rows:,} ({per_s}/s); marks: {len(seconds):,} (one a second)",
        f"dataset folder: {out} (seed {seed})",
    ]
