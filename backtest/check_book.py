"""`backtest check-book DATASET`: replay `depth` alone and compare the book's top with the
recording (issue 8's fidelity check; docs/market-data.md says the same for users).

The replay is the market-data replay's own book: every `depth` row goes through
`matching.market.MarketMatcher.depth`, and `end_snapshot` closes each snapshot where the
merged stream (datasets.market_stream, depth alone) flags `snapshot_end`. The replayed top
of a symbol is `books[symbol].best(BUY)` / `best(SELL)`: (price, lots) of the best level.

What it is compared with, per symbol:
(a) by update id (needs `recorded_book_ticker` and `depth_messages`, what `backtest import
    binance` writes from a websocket recording): each ticker whose update_id equals a depth
    message's update_id, right after that message's last depth row (its seq_last; a
    message without rows keeps the book of the one before). Both then describe the book
    after the same venue update, so every difference is a replay error: 100% is expected.
(b) by time (needs `recorded_book_ticker`): every ticker against the book after all depth
    rows with ts <= its ts. The two streams are stamped independently (each message carries
    its own event time, and a depth message aggregates several updates), so here the ticker
    may show updates the depth stream delivers a little later, or the reverse. Each ticker
    is classed by its update id against the last depth message applied (same, ticker
    ahead, ticker behind) when depth_messages is present, which is what explains the rate.
    Tickers earlier than the symbol's first book (its first snapshot closed, or its first
    depth row when it has no snapshot) are counted apart, not compared.
Without `recorded_book_ticker` the reference is each snapshot's own top (the best bid and
ask among its rows): "no bookTicker: top of book per snapshot only". That checks that a
snapshot replaces the book (the levels it does not name are gone).

Throughput: the check pass is timed (rows per second with the comparisons); `--bench N`
replays depth alone N times without comparisons (the batches loaded before the clock
starts, a fresh matcher per round) and reports the median and best rows per second.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl

from datasets.manifest import load_manifest
from datasets.market_stream import iter_market_batches, market_rows
from datasets.tables import DEPTH, INT, STR, TableSpec, check_table, load_table
from matching.errors import InputError
from matching.market import MarketMatcher
from matching.types import BUY, SELL

FIRST_MISMATCHES = 5  # listed per check and symbol
PROGRESS_EVERY = 131_072  # rows (one stream batch)

TICKER = TableSpec(
    "recorded_book_ticker",
    {"ts": (INT, True), "seq": (INT, True), "symbol": (STR, True), "update_id": (INT, True),
     "bid_price": (INT, True), "bid_qty": (INT, True), "ask_price": (INT, True), "ask_qty": (INT, True)},
    not_null=("ts", "seq", "symbol", "update_id", "bid_price", "bid_qty", "ask_price", "ask_qty"),
    enums={}, non_negative=("bid_qty", "ask_qty"), ordered_ts=True)
MESSAGES = TableSpec(
    "depth_messages",
    {"ts": (INT, True), "seq_first": (INT, True), "seq_last": (INT, True), "symbol": (STR, True),
     "kind": (STR, True), "first_update_id": (INT, False), "update_id": (INT, True),
     "prev_update_id": (INT, False), "line": (INT, False)},
    not_null=("ts", "symbol", "kind", "update_id"), enums={"kind": ("snapshot", "diff")})


class _Tally:
    """One check of one symbol: compared, matched (price and size, both sides),
    price_matched (prices only), the first mismatches."""

    __slots__ = ("compared", "matched", "price_matched", "mismatches")

    def __init__(self) -> None:
        self.compared = 0
        self.matched = 0
        self.price_matched = 0
        self.mismatches: list[dict] = []

    def add(self, recorded: tuple, replayed: tuple, where: dict) -> bool:
        self.compared += 1
        if recorded == replayed:
            self.matched += 1
            self.price_matched += 1
            return True
        if recorded[0] == replayed[0] and recorded[2] == replayed[2]:
            self.price_matched += 1
        if len(self.mismatches) < FIRST_MISMATCHES:
            self.mismatches.append({**where, "recorded": list(recorded), "replayed": list(replayed)})
        return False

    def as_dict(self) -> dict:
        return {"compared": self.compared, "matched": self.matched, "price_matched": self.price_matched,
                "rate": _rate(self.matched, self.compared), "first_mismatches": self.mismatches}


def _rate(a: int, b: int) -> float | None:
    return round(a / b, 6) if b else None


def _top(book) -> tuple:
    bid, bid_lots = book.best(BUY)
    ask, ask_lots = book.best(SELL)
    return (bid, bid_lots, ask, ask_lots)


def _optional(path: Path, spec: TableSpec, symbols: set[str]) -> pl.DataFrame | None:
    """The checked table at `path`, or None when the dataset has none."""
    return load_table(path, spec, known={"symbol": symbols}) if path.is_file() else None


def replay_depth(batches, matcher: MarketMatcher, clock: list[float]) -> int:
    """Depth rows through `matcher` (no comparison): the throughput loop. Returns rows;
    adds the seconds spent in the loop (not in making the batches) to clock[0]."""
    depth, end_snapshot = matcher.depth, matcher.end_snapshot
    n = 0
    for ts_, _rank, _seq, sym_, side_, price_, qty_, snap_, end_ in batches:
        t0 = time.perf_counter()
        for ts, sym, side, price, qty, snap, end in zip(ts_, sym_, side_, price_, qty_, snap_, end_):
            depth(ts, sym, side, price, qty, snap)
            if end:
                end_snapshot(ts, sym)
        clock[0] += time.perf_counter() - t0
        n += len(ts_)
    return n


def bench(dataset: Path, rounds: int) -> dict:
    """Depth-only replay rows per second over `rounds` rounds (module doc)."""
    manifest = load_manifest(dataset)
    depth_path = _depth_path(dataset, manifest)
    times, walls = [], []
    rows = 0
    for _ in range(rounds):
        matcher = MarketMatcher(manifest.matcher_rules())
        clock = [0.0]
        t0 = time.perf_counter()
        rows = replay_depth(iter_market_batches(depth_path, None), matcher, clock)
        walls.append(time.perf_counter() - t0)
        times.append(clock[0])
    med = statistics.median(times)
    load_s = statistics.median(walls) - med
    return {"dataset": str(dataset), "depth_rows": rows, "rounds": rounds, "load_seconds": round(load_s, 3),
            "replay_seconds": [round(t, 3) for t in times],
            "depth_rows_per_s": int(rows / med) if med else None,
            "depth_rows_per_s_best": int(rows / min(times)) if min(times) else None}


def _depth_path(dataset: Path, manifest) -> Path:
    path = dataset / "depth.parquet"
    if not path.is_file():
        raise InputError(str(path), ["file not found: check-book replays a dataset's depth table "
                                     "(`backtest import binance` of a recording, or `backtest "
                                     "generate depth --from-bands`)"])
    check_table(path, DEPTH, known={"symbol": set(manifest.instruments)})
    return path


def run_check_book(dataset: Path, *, progress: Callable[[int, int], None] | None = None,
                   bench_rounds: int = 0) -> dict:
    """The check (module doc) as a JSON-able report; with `bench_rounds`, only the timing."""
    if not (dataset / "dataset.toml").is_file():
        raise InputError(str(dataset), ["not a dataset folder: dataset.toml is missing"])
    if bench_rounds < 0:
        raise InputError("--bench", [f"rounds must be >= 0 (value: {bench_rounds})"])
    if bench_rounds:
        return {"bench": bench(dataset, bench_rounds)}
    manifest = load_manifest(dataset)
    symbols = set(manifest.instruments)
    depth_path = _depth_path(dataset, manifest)
    tickers = _optional(dataset / "recorded_book_ticker.parquet", TICKER, symbols)
    messages = _optional(dataset / "depth_messages.parquet", MESSAGES, symbols)
    total = market_rows(depth_path, None)
    depth_symbols = sorted(pl.scan_parquet(depth_path).select(pl.col("symbol").cast(pl.String).unique())
                           .collect()["symbol"].to_list())
    with_snapshot = set(pl.scan_parquet(depth_path).filter(pl.col("snapshot"))
                        .select(pl.col("symbol").cast(pl.String).unique()).collect()["symbol"].to_list())
    report: dict = {"dataset": str(dataset), "depth_rows": total,
                    "reference": "recorded_book_ticker" if tickers is not None else "snapshots"}
    matcher = MarketMatcher(manifest.matcher_rules())
    batches = iter_market_batches(depth_path, None)
    clock = [0.0]
    t0 = time.perf_counter()
    if tickers is None:
        per_symbol = _check_snapshots(batches, matcher, depth_symbols, progress, total, clock)
    else:
        per_symbol = _check_tickers(batches, matcher, tickers, messages, depth_symbols, with_snapshot,
                                    progress, total, clock)
    seconds = clock[0]
    report["load_seconds"] = round(time.perf_counter() - t0 - seconds, 3)
    report["check_seconds"] = round(seconds, 3)
    report["check_rows_per_s"] = int(total / seconds) if seconds else None
    report["symbols"] = per_symbol
    return report


def _check_snapshots(batches, matcher: MarketMatcher, symbols: list[str],
                     progress, total: int, clock: list[float]) -> dict:
    """Each snapshot's own top (best bid and ask among its rows with qty > 0) against the
    replayed top right after it closes."""
    tallies = {s: _Tally() for s in symbols}
    open_top: dict[str, list] = {}  # symbol -> [bid, bid lots, ask, ask lots] of the open snapshot
    depth, end_snapshot, books = matcher.depth, matcher.end_snapshot, matcher.books
    done = 0
    for ts_, _rank, seq_, sym_, side_, price_, qty_, snap_, end_ in batches:
        t0 = time.perf_counter()
        for ts, seq, sym, side, price, qty, snap, end in zip(ts_, seq_, sym_, side_, price_, qty_, snap_, end_):
            depth(ts, sym, side, price, qty, snap)
            if snap:
                top = open_top.get(sym)
                if top is None:
                    top = open_top[sym] = [None, 0, None, 0]
                if qty:
                    if side == BUY and (top[0] is None or price > top[0]):
                        top[0], top[1] = price, qty
                    elif side == SELL and (top[2] is None or price < top[2]):
                        top[2], top[3] = price, qty
            if end:
                end_snapshot(ts, sym)
                tallies[sym].add(tuple(open_top.pop(sym)), _top(books[sym]), {"ts": ts, "seq": seq})
        clock[0] += time.perf_counter() - t0
        done += len(ts_)
        if progress is not None:
            progress(done, total)
    return {s: {"by_update_id": None, "by_time": None, "snapshots": t.as_dict(),
                "note": "no bookTicker: top of book per snapshot only"} for s, t in tallies.items()}


def _check_tickers(batches, matcher: MarketMatcher, tickers: pl.DataFrame, messages: pl.DataFrame | None,
                   symbols: list[str], with_snapshot: set[str], progress, total: int,
                   clock: list[float]) -> dict:
    """Checks (a) and (b) of the module doc in one pass over the depth rows.

    Steps, before each depth row is applied:
    1. if the rows of a depth message just ended (the previous row was its seq_last and
       this row's seq differs), its update id becomes the symbol's last applied one and the
       tickers of that update id are compared (a);
    2. every ticker with ts < this row's ts is compared with the book as it stands (b): the
       book after all rows with ts <= the ticker's;
    then the row is applied, and a snapshot closed where the stream says so. After the
    last row, the pending message and the remaining tickers are compared the same way."""
    all_symbols = sorted(set(symbols) | set(tickers["symbol"].unique().to_list()))
    by_id = {s: _Tally() for s in all_symbols} if messages is not None else None
    by_time = {s: _Tally() for s in all_symbols}
    relation = {s: {r: [0, 0] for r in ("same", "ticker_ahead", "ticker_behind")} for s in all_symbols}
    before_book = dict.fromkeys(all_symbols, 0)
    ready = {s: False for s in all_symbols}
    last_u: dict[str, int | None] = dict.fromkeys(all_symbols)

    tk = tickers.sort("ts", "seq", maintain_order=True)
    tk_rows = tk.select("ts", "symbol", "update_id", "bid_price", "bid_qty", "ask_price", "ask_qty").rows()
    # message end (seq_last) -> [(symbol, update_id, [ticker values of that id])]
    ends: dict[int, list] = {}
    if messages is not None:
        msg = (messages.with_row_index("order")
               .with_columns(pl.col("seq_last").forward_fill().over("symbol", order_by="order"))
               .filter(pl.col("seq_last").is_not_null()))
        same = (msg.select("order", "symbol", "update_id", "seq_last", "ts")
                .join(tk.select("symbol", "update_id", pl.col("ts").alias("tk_ts"), "bid_price", "bid_qty",
                                "ask_price", "ask_qty").with_row_index("tk_order"),
                      on=["symbol", "update_id"], how="left")
                .sort("order", "tk_order", nulls_last=True))
        for order, sym, u, seq_last, _ts, tk_order, tk_ts, bp, bq, ap, aq in same.rows():
            entries = ends.setdefault(seq_last, [])
            if not entries or entries[-1][2] != order:
                entries.append([sym, u, order, []])
            if tk_order is not None:
                entries[-1][3].append((tk_ts, (bp, bq, ap, aq)))

    books = matcher.books
    depth, end_snapshot = matcher.depth, matcher.end_snapshot
    n_tk = len(tk_rows)
    i_tk = 0
    next_tk_ts = tk_rows[0][0] if n_tk else None
    pending = None  # seq of a message end just applied

    def finish(seq: int) -> None:
        for sym, u, _order, found in ends[seq]:
            last_u[sym] = u
            if by_id is not None:
                for tk_ts, values in found:
                    by_id[sym].add(values, _top(books[sym]), {"ts": tk_ts, "update_id": u})

    def compare_until(limit: int | None) -> int:
        """Compare tickers with ts < limit (all when None); return the next index."""
        nonlocal i_tk
        while i_tk < n_tk and (limit is None or tk_rows[i_tk][0] < limit):
            ts, sym, u, bp, bq, ap, aq = tk_rows[i_tk]
            i_tk += 1
            if not ready[sym]:
                before_book[sym] += 1
                continue
            book = books.get(sym)
            replayed = _top(book) if book is not None else (None, 0, None, 0)
            applied = last_u[sym]
            where = {"ts": ts, "update_id": u, "depth_update_id": applied}
            ok = by_time[sym].add((bp, bq, ap, aq), replayed, where)
            if applied is not None:
                rel = "same" if u == applied else "ticker_ahead" if u > applied else "ticker_behind"
                relation[sym][rel][0] += 1
                relation[sym][rel][1] += ok
        return i_tk

    done = 0
    for ts_, _rank, seq_, sym_, side_, price_, qty_, snap_, end_ in batches:
        t0 = time.perf_counter()
        for ts, seq, sym, side, price, qty, snap, end in zip(ts_, seq_, sym_, side_, price_, qty_, snap_, end_):
            if pending is not None and seq != pending:
                finish(pending)
                pending = None
            if next_tk_ts is not None and next_tk_ts < ts:
                compare_until(ts)
                next_tk_ts = tk_rows[i_tk][0] if i_tk < n_tk else None
            depth(ts, sym, side, price, qty, snap)
            if end:
                end_snapshot(ts, sym)
                ready[sym] = True
            elif sym not in with_snapshot:
                ready[sym] = True
            if seq in ends:
                pending = seq
        clock[0] += time.perf_counter() - t0
        done += len(ts_)
        if progress is not None:
            progress(done, total)
    if pending is not None:
        finish(pending)
    compare_until(None)

    lags = _lags(tickers, messages) if messages is not None else {}
    out = {}
    for sym in all_symbols:
        rel = {r: {"compared": c, "matched": m, "rate": _rate(m, c)} for r, (c, m) in relation[sym].items()}
        out[sym] = {
            "by_update_id": by_id[sym].as_dict() if by_id is not None else None,
            "by_time": {**by_time[sym].as_dict(), "before_book": before_book[sym],
                        "by_update_id_relation": rel if messages is not None else None,
                        "depth_lag_ms": lags.get(sym)},
            "snapshots": None,
            "note": None if messages is not None else
            "no depth_messages: the by-update-id check needs the importer's message table",
        }
    return out


def _lags(tickers: pl.DataFrame, messages: pl.DataFrame) -> dict[str, dict]:
    """Per symbol: for each ticker whose update id lies inside a depth diff (its
    first_update_id <= u <= update_id), how much later that diff is stamped than the
    ticker, in ms (what makes the time-aligned rate low). Vectorised: one as-of join."""
    if "first_update_id" not in messages.columns:
        return {}
    diffs = (messages.filter(pl.col("kind") == "diff")
             .select("symbol", pl.col("first_update_id").alias("U"), pl.col("update_id").alias("u"),
                     pl.col("ts").alias("depth_ts"))
             .sort("symbol", "u"))
    joined = (tickers.select("symbol", "ts", "update_id").sort("symbol", "update_id")
              .join_asof(diffs, left_on="update_id", right_on="u", by="symbol", strategy="forward",
                         check_sortedness=False)  # sorted just above, within each symbol
              .filter(pl.col("u").is_not_null() & (pl.col("U") <= pl.col("update_id")))
              .with_columns(((pl.col("depth_ts") - pl.col("ts")) / 1e6).alias("lag_ms")))
    out = {}
    for sym, part in joined.group_by("symbol"):
        lag = part["lag_ms"]
        out[sym[0]] = {"inside_a_diff": part.height, "stamped_later": int((lag > 0).sum()),
                       "stamped_earlier": int((lag < 0).sum()), "median": float(lag.median()),
                       "p90": float(lag.quantile(0.9, "nearest")), "max": float(lag.max())}
    return dict(sorted(out.items()))


# ---------------------------------------------------------------------------------------
# Printing


def _pct(m: int, c: int) -> str:
    return f"{m:,}/{c:,} ({100 * m / c:.2f}%)" if c else "0/0"


def _top_text(values: list) -> str:
    bp, bq, ap, aq = values
    return f"bid {bp} x {bq}, ask {ap} x {aq}"


def report_lines(report: dict) -> list[str]:
    """The report as text lines (prices in ticks, sizes in lots)."""
    if "bench" in report:
        b = report["bench"]
        return [f"{b['dataset']}: depth-only replay (matching.market.MarketMatcher), {b['depth_rows']:,} depth rows",
                f"{b['rounds']} round(s): {', '.join(f'{t:.3f} s' for t in b['replay_seconds'])} "
                f"in the replay loop (making the stream's batches, outside the clock: "
                f"{b['load_seconds']:.3f} s a round)",
                f"depth rows/s: {b['depth_rows_per_s']:,} median, {b['depth_rows_per_s_best']:,} best"]
    lines = [f"{report['dataset']}: {report['depth_rows']:,} depth rows replayed alone through "
             f"matching.market.MarketMatcher; reference: {report['reference']}"]
    for sym, s in report["symbols"].items():
        if s["note"]:
            lines.append(f"{sym}: {s['note']}")
        if s["snapshots"] is not None:
            t = s["snapshots"]
            lines.append(f"{sym} snapshots whose own top (price and size) the replay reproduces: "
                         f"{_pct(t['matched'], t['compared'])}")
            lines += [f"  mismatch at ts {m['ts']} seq {m['seq']}: recorded {_top_text(m['recorded'])}; "
                      f"replayed {_top_text(m['replayed'])}" for m in t["first_mismatches"]]
        if s["by_update_id"] is not None:
            t = s["by_update_id"]
            lines.append(f"{sym} (a) bookTicker where update ids coincide, price and size: "
                         f"{_pct(t['matched'], t['compared'])} (prices alone {t['price_matched']:,})")
            lines += [f"  mismatch at update id {m['update_id']} (ts {m['ts']}): recorded "
                      f"{_top_text(m['recorded'])}; replayed {_top_text(m['replayed'])}"
                      for m in t["first_mismatches"]]
        if s["by_time"] is not None:
            t = s["by_time"]
            lines.append(f"{sym} (b) every bookTicker at its own time, price and size: "
                         f"{_pct(t['matched'], t['compared'])} (prices alone {_pct(t['price_matched'], t['compared'])}"
                         f"; {t['before_book']:,} tickers before the first book, not compared)")
            rel = t["by_update_id_relation"]
            if rel is not None:
                names = {"same": "ticker update id = last depth update id applied",
                         "ticker_ahead": "ticker ahead of the depth stream",
                         "ticker_behind": "ticker behind the depth stream"}
                lines += [f"  {names[r]}: {v['matched']:,}/{v['compared']:,} match" for r, v in rel.items()]
            lag = t["depth_lag_ms"]
            if lag:
                lines.append(f"  why: {lag['stamped_later']:,} of the {lag['inside_a_diff']:,} tickers whose update "
                             f"lies inside a depth diff are earlier than that diff (it is stamped "
                             f"{lag['median']:.0f} ms later at the median, {lag['p90']:.0f} ms at p90, "
                             f"{lag['max']:.0f} ms at most; {lag['stamped_earlier']:,} later than it): at the "
                             "ticker's time the depth stream has not delivered that update yet")
            lines += [f"  mismatch at ts {m['ts']} (ticker u {m['update_id']}, depth u {m['depth_update_id']}): "
                      f"recorded {_top_text(m['recorded'])}; replayed {_top_text(m['replayed'])}"
                      for m in t["first_mismatches"]]
    lines.append(f"check pass: {report['depth_rows']:,} depth rows in {report['check_seconds']:.3f} s = "
                 f"{report['check_rows_per_s']:,} depth rows/s with the comparisons (making the "
                 f"stream's batches, outside the clock: {report['load_seconds']:.3f} s); `--bench N` "
                 "times the replay alone")
    return lines


def print_report(report: dict, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report, sort_keys=True))
        return
    for line in report_lines(report):
        print(line)
