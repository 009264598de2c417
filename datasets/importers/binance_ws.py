"""A Binance USDⓈ-M websocket recording (`<sym>_<date>.gz`, lines `<local ns> <json>`) into a
dataset folder, one line at a time (memory holds one Parquet batch per table and the book).

Messages, combined-stream form `{"stream": ..., "data": {...}}` or bare:
- the REST depth snapshot `{"lastUpdateId", "E", "T", "bids", "asks"}` -> `depth` rows with
  snapshot = true (a run of snapshot rows replaces the symbol's whole book);
- `depthUpdate` (U first id, u final id, pu previous final id, b/a absolute sizes, "0" removes)
  -> `depth` rows with snapshot = false, by the venue's rules: diffs before the snapshot wait
  in a buffer (at most MAX_BUFFERED); after it, a diff with u < lastUpdateId is dropped as
  stale; the first diff applied should straddle the snapshot (U <= lastUpdateId <= u) and
  each later one continue the one before (pu == previous u). A break of either is a
  `depth_gaps` row (line, ts, expected id, got id) and a summary line, and the diff is applied
  anyway (the recorder did not resync; the book is what the venue sent). A diff whose u does
  not advance past the last applied one is dropped and counted. Without any snapshot the
  book starts empty at the first diff, recorded as a `no_snapshot` gap.
- `trade` -> `trades` (aggressor = sell when m, the buyer was the maker; trade_id = t);
- `bookTicker` -> `recorded_book_ticker` (update_id = u);
- `markPriceUpdate` -> `marks` (p, i rounded half-even to the tick, see binance.py); its
  funding rate `r` is the estimate for the next funding time `T`: the last `r` seen before
  the recording passes `T` is written to `funding` at ts = T (a settlement the recording
  covers); the estimate pending at the end is not written, and the summary says so;
- `forceOrder` -> `recorded_liquidations`; any other event is counted and skipped.

As it goes, the importer checks itself: for every bookTicker whose update id equals a depth
diff's final id, the rebuilt best bid and ask (price and size) must equal the ticker's; the
count that agree is a summary line (the tests replay depth.parquet independently).
"""

from __future__ import annotations

import argparse
import gzip
import json
from collections import deque
from collections.abc import Callable
from pathlib import Path

from datasets.folders import staged_folder
from datasets.folders import file_sha256
from datasets.importers.binance import (PROGRESS_EVERY, Fault, Faults, Grid, MarkRounding, TableWriter,
                                        grids, rate_scaled, write_manifest)

MAX_BUFFERED = 10_000  # depth diffs held while waiting for the snapshot
RECENT_BEST = 4_096  # best bid/ask of the last applied diffs, for the bookTicker check
NS_PER_MS = 1_000_000


def _symbol_of(src: Path, options: argparse.Namespace) -> str:
    if options.symbol:
        return options.symbol.upper()
    stem = src.name.split(".")[0]
    return stem.split("_")[0].upper()


class _Book:
    """One symbol's rebuilt book: price ticks -> size lots per side, with the best price of
    each side cached (a new better price moves it; removing it marks it for a rescan)."""

    def __init__(self) -> None:
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self._best_bid: int | None = None  # None: unknown, rescan on the next best()
        self._best_ask: int | None = None

    def set_bid(self, price: int, qty: int) -> None:
        if qty:
            self.bids[price] = qty
            if self._best_bid is not None and price > self._best_bid:
                self._best_bid = price
        elif self.bids.pop(price, None) is not None and price == self._best_bid:
            self._best_bid = None

    def set_ask(self, price: int, qty: int) -> None:
        if qty:
            self.asks[price] = qty
            if self._best_ask is not None and price < self._best_ask:
                self._best_ask = price
        elif self.asks.pop(price, None) is not None and price == self._best_ask:
            self._best_ask = None

    def best(self) -> tuple[int | None, int | None, int | None, int | None]:
        if self._best_bid is None and self.bids:
            self._best_bid = max(self.bids)
        if self._best_ask is None and self.asks:
            self._best_ask = min(self.asks)
        bid, ask = self._best_bid, self._best_ask
        return (bid, self.bids.get(bid) if bid is not None else None,
                ask, self.asks.get(ask) if ask is not None else None)


class _Recording:
    """The state of one import: writers, the depth sequence state, counters."""

    def __init__(self, folder: Path, path: str, symbol: str, grid: Grid, options: argparse.Namespace,
                 faults: Faults) -> None:
        self.path = path
        self.symbol = symbol
        self.grid = grid
        self.faults = faults
        self.local_time = options.time == "local"
        self.marks_round = MarkRounding(options.mark_rounding)
        self.w = {name: TableWriter(folder, name) for name in (
            "depth", "trades", "marks", "funding", "recorded_book_ticker", "recorded_liquidations",
            "depth_messages", "depth_gaps")}
        self.seq = 0
        self.book = _Book()
        self.snapshot_id: int | None = None
        self.snapshots = 0
        self.last_u: int | None = None
        self.started = False  # the book has a starting point (a snapshot, or none at all)
        self.need_first = False  # the next applied diff is the first after a snapshot
        self.buffer: deque[tuple] = deque()
        self.drop_before_snapshot = getattr(options, "before_snapshot", "buffer") == "drop"
        self.before_snapshot = 0  # diffs dropped for coming before the snapshot line
        self.applied = 0
        self.stale = 0
        self.not_advancing = 0
        self.gaps: list[str] = []
        self.recent_best: dict[int, tuple] = {}
        self.recent_order: deque[int] = deque()
        self.pending_tickers: dict[int, tuple] = {}
        self.ticker_checked = 0
        self.ticker_agree = 0
        self.ticker_mismatch: list[str] = []
        self.trades = 0
        self.trade_qty = 0
        self.trade_ids: tuple[int, int] | None = None
        self.trade_id_gaps = 0
        self.last_trade_id: int | None = None
        self.trade_types: dict[str, int] = {}
        self.funding_next: tuple[int, str, int] | None = None  # (T ms, r text, line)
        self.skipped: dict[str, int] = {}
        self.first_ts: int | None = None
        self.last_ts: int | None = None

    # -- helpers -----------------------------------------------------------------------
    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def ts_of(self, msg: dict, local_ns: int, line: int, prefix: str) -> int:
        if self.local_time:
            ts = local_ns
        else:
            e = msg.get("E")
            if isinstance(e, bool) or not isinstance(e, int):
                raise _Bad(f"{prefix}E", "event time must be an integer of ms", e)
            ts = e * NS_PER_MS
        if self.first_ts is None:
            self.first_ts = ts
        self.last_ts = ts if self.last_ts is None else max(self.last_ts, ts)
        return ts

    def levels(self, raw: object, column: str, *, zero_ok: bool) -> list[tuple[int, int]]:
        if not isinstance(raw, list):
            raise _Bad(column, "expected a list of [price, size] pairs", raw)
        out, bad = [], None
        for i, pair in enumerate(raw):
            if not (isinstance(pair, list) and len(pair) == 2):
                raise _Bad(f"{column}[{i}]", "expected a [price, size] pair", pair)
            try:
                price = self.grid.price_ticks(pair[0])
            except Fault as f:
                bad = bad or _Bad(f"{column}[{i}][0] (price)", f.message, f.value)
                continue
            try:
                qty = self.grid.qty_lots(pair[1], zero_ok=zero_ok)
            except Fault as f:
                bad = bad or _Bad(f"{column}[{i}][1] (size)", f.message, f.value)
                continue
            out.append((price, qty))
        if bad:
            raise bad
        return out

    # -- depth -------------------------------------------------------------------------
    def on_snapshot(self, msg: dict, ts: int, line: int) -> None:
        last_id = _int(msg, "lastUpdateId", "")
        bids = self.levels(msg.get("bids"), "bids", zero_ok=False)
        asks = self.levels(msg.get("asks"), "asks", zero_ok=False)
        self.book = _Book()
        first = self.seq + 1
        for side_name, put, levels in (("bid", self.book.set_bid, bids), ("ask", self.book.set_ask, asks)):
            for price, qty in levels:
                put(price, qty)
                self.w["depth"].add((ts, self.next_seq(), self.symbol, side_name, price, qty, True))
        self.w["depth_messages"].add((ts, first if self.seq >= first else None,
                                      self.seq if self.seq >= first else None, self.symbol, "snapshot",
                                      None, last_id, None, line))
        self.snapshots += 1
        self.snapshot_id = last_id
        self.last_u = None
        self.started = True
        self.need_first = True
        pending, self.buffer = self.buffer, deque()
        for diff in pending:
            self.apply_diff(*diff)

    def on_diff(self, msg: dict, ts: int, line: int, prefix: str) -> None:
        ids = (_int(msg, "U", prefix), _int(msg, "u", prefix), _int(msg, "pu", prefix))
        bids = self.levels(msg.get("b"), f"{prefix}b", zero_ok=True)
        asks = self.levels(msg.get("a"), f"{prefix}a", zero_ok=True)
        diff = (ts, line, ids, bids, asks)
        if not self.started:
            if self.drop_before_snapshot:
                self.before_snapshot += 1
                return
            self.buffer.append(diff)
            if len(self.buffer) > MAX_BUFFERED:
                self.start_without_snapshot()
            return
        self.apply_diff(*diff)

    def start_without_snapshot(self) -> None:
        """No snapshot came: the book starts empty at the first diff (a reported gap)."""
        if not self.buffer:
            return
        ts, line, (first_u, _, _), _, _ = self.buffer[0]
        self.gap(ts, line, "no_snapshot", None, first_u, first_u,
                 "no REST snapshot before it: the book starts empty")
        self.started = True
        pending, self.buffer = self.buffer, deque()
        for diff in pending:
            self.apply_diff(*diff)

    def gap(self, ts: int, line: int, kind: str, expected: int | None, got: int | None, u: int,
            text: str) -> None:
        self.w["depth_gaps"].add((ts, self.symbol, line, kind, expected, got, u))
        self.gaps.append(f"line {line}: {kind}, {text}")

    def apply_diff(self, ts: int, line: int, ids: tuple[int, int, int],
                   bids: list[tuple[int, int]], asks: list[tuple[int, int]]) -> None:
        first_u, u, pu = ids
        if self.need_first and self.snapshot_id is not None and u < self.snapshot_id:
            self.stale += 1
            return
        if self.last_u is not None and u <= self.last_u:
            self.not_advancing += 1
            return
        if self.need_first and self.snapshot_id is not None:
            if not first_u <= self.snapshot_id <= u:
                self.gap(ts, line, "snapshot_straddle", self.snapshot_id, first_u, u,
                         f"first diff U={first_u} > snapshot lastUpdateId={self.snapshot_id}: "
                         f"{first_u - self.snapshot_id - 1} update ids not seen")
        elif self.last_u is not None and pu != self.last_u:
            self.gap(ts, line, "pu_break", self.last_u, pu, u,
                     f"pu={pu} where the previous diff ended at u={self.last_u}")
        self.need_first = False
        book = self.book
        depth = self.w["depth"]
        first_seq = self.seq + 1
        for side_name, put, levels in (("bid", book.set_bid, bids), ("ask", book.set_ask, asks)):
            for price, qty in levels:
                put(price, qty)
                depth.add((ts, self.next_seq(), self.symbol, side_name, price, qty, False))
        has_rows = self.seq >= first_seq
        self.w["depth_messages"].add((ts, first_seq if has_rows else None, self.seq if has_rows else None,
                                      self.symbol, "diff", first_u, u, pu, line))
        self.applied += 1
        self.last_u = u
        best = book.best()
        self.recent_best[u] = best
        self.recent_order.append(u)
        if len(self.recent_order) > RECENT_BEST:
            self.recent_best.pop(self.recent_order.popleft(), None)
        ticker = self.pending_tickers.pop(u, None)
        if ticker is not None:
            self.compare(u, best, ticker)
        if self.pending_tickers:
            self.pending_tickers = {k: v for k, v in self.pending_tickers.items() if k > u}

    def compare(self, u: int, best: tuple, ticker: tuple) -> None:
        self.ticker_checked += 1
        if best == ticker[:4]:
            self.ticker_agree += 1
        elif len(self.ticker_mismatch) < 5:
            self.ticker_mismatch.append(f"u={u} (line {ticker[4]}): book {best}, bookTicker {ticker[:4]}")

    # -- other streams -----------------------------------------------------------------
    def on_book_ticker(self, msg: dict, ts: int, line: int, prefix: str) -> None:
        u = _int(msg, "u", prefix)
        g = self.grid
        values = _convert(prefix, (("b", g.price_ticks), ("B", _lots0(g)), ("a", g.price_ticks),
                                   ("A", _lots0(g))), msg)
        self.w["recorded_book_ticker"].add((ts, self.next_seq(), self.symbol, u, *values))
        if u in self.recent_best:
            self.compare(u, self.recent_best[u], (*values, line))
        elif self.last_u is None or u > self.last_u:
            self.pending_tickers[u] = (*values, line)

    def on_trade(self, msg: dict, ts: int, line: int, prefix: str) -> None:
        trade_id = _int(msg, "t", prefix)
        price, qty = _convert(prefix, (("p", self.grid.price_ticks), ("q", _lots(self.grid))), msg)
        maker = msg.get("m")
        if not isinstance(maker, bool):
            raise _Bad(f"{prefix}m", "buyer-is-maker flag must be true or false", maker)
        aggressor = "sell" if maker else "buy"
        self.w["trades"].add((ts, self.next_seq(), self.symbol, price, qty, aggressor, trade_id))
        self.trades += 1
        self.trade_qty += qty
        kind = str(msg.get("X", "MARKET"))
        self.trade_types[kind] = self.trade_types.get(kind, 0) + 1
        lo, hi = self.trade_ids or (trade_id, trade_id)
        self.trade_ids = (min(lo, trade_id), max(hi, trade_id))
        if self.last_trade_id is not None and trade_id > self.last_trade_id + 1:
            self.trade_id_gaps += trade_id - self.last_trade_id - 1
        self.last_trade_id = trade_id if self.last_trade_id is None else max(self.last_trade_id, trade_id)

    def on_mark(self, msg: dict, ts: int, line: int, prefix: str) -> None:
        rounding = self.marks_round
        mark = _convert(prefix, (("p", lambda v: rounding.ticks(self.grid, v)),), msg)[0]
        index = (_convert(prefix, (("i", lambda v: rounding.ticks(self.grid, v)),), msg)[0]
                 if "i" in msg else None)
        self.w["marks"].add((ts, self.symbol, mark, index))
        if "r" in msg and msg.get("r") not in ("", None):
            next_ms = _int(msg, "T", prefix)
            try:
                rate_scaled(msg["r"])
            except Fault as f:
                raise _Bad(f"{prefix}r", f.message, f.value) from None
            if self.funding_next is not None and next_ms != self.funding_next[0]:
                self.settle_funding()
            self.funding_next = (next_ms, msg["r"], line)

    def settle_funding(self) -> None:
        assert self.funding_next is not None
        when_ms, rate_text, _ = self.funding_next
        rate, scale = rate_scaled(rate_text)
        self.w["funding"].add((when_ms * NS_PER_MS, self.symbol, rate, scale))
        self.funding_next = None

    def on_force_order(self, msg: dict, ts: int, line: int, prefix: str) -> None:
        o = msg.get("o")
        if not isinstance(o, dict):
            raise _Bad(f"{prefix}o", "forceOrder without its order object", o)
        p = f"{prefix}o."
        side = o.get("S")
        if side not in ("BUY", "SELL"):
            raise _Bad(f"{p}S", "side must be BUY or SELL", side)
        g = self.grid
        price, qty, last, filled = _convert(p, (("p", g.price_ticks), ("q", _lots(g)), ("l", _lots0(g)),
                                                ("z", _lots0(g))), o)
        trade_ms = o.get("T")
        self.w["recorded_liquidations"].add((
            ts, self.next_seq(), self.symbol, side.lower(), price, qty, str(o.get("ap", "")),
            str(o.get("X", "")), str(o.get("o", "")), str(o.get("f", "")), last, filled,
            trade_ms * NS_PER_MS if isinstance(trade_ms, int) and not isinstance(trade_ms, bool) else None))

    def finish(self) -> None:
        if not self.started and not self.drop_before_snapshot:
            self.start_without_snapshot()
        for writer in self.w.values():
            writer.close()


class _Bad(Exception):
    """A fault at a column of the current line."""

    def __init__(self, column: str, message: str, value: object) -> None:
        super().__init__(message)
        self.column, self.message, self.value = column, message, value


def _int(msg: dict, key: str, prefix: str) -> int:
    value = msg.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Bad(f"{prefix}{key}", "missing or not an integer" if value is None else "not an integer",
                   value)
    return value


def _lots(grid: Grid) -> Callable[[object], int]:
    return lambda v: grid.qty_lots(v, zero_ok=False)


def _lots0(grid: Grid) -> Callable[[object], int]:
    return lambda v: grid.qty_lots(v, zero_ok=True)


def _convert(prefix: str, fields: tuple, msg: dict) -> list[int]:
    out = []
    for key, conv in fields:
        if key not in msg:
            raise _Bad(f"{prefix}{key}", "missing", None)
        try:
            out.append(conv(msg[key]))
        except Fault as f:
            raise _Bad(f"{prefix}{key}", f.message, f.value) from None
    return out


def _open_text(src: Path):
    with src.open("rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    return gzip.open(src, "rt", encoding="utf-8") if gz else src.open("r", encoding="utf-8")


HANDLERS = {"depthUpdate": "on_diff", "trade": "on_trade", "bookTicker": "on_book_ticker",
            "markPriceUpdate": "on_mark", "forceOrder": "on_force_order"}


def import_recording(src: Path, out: Path, options: argparse.Namespace,
                     progress: Callable[[int, int | None], None]) -> list[str]:
    """Read the recording `src` line by line into the dataset folder `out`; return the
    summary lines."""
    symbol = _symbol_of(src, options)
    grid = grids([symbol], options)[symbol]
    faults = Faults()
    path = str(src)
    lines = 0
    with staged_folder(out) as folder:
        rec = _Recording(folder, path, symbol, grid, options, faults)
        try:
            with _open_text(src) as fh:
                for lines, text in enumerate(fh, start=1):
                    if lines % PROGRESS_EVERY == 0:
                        progress(lines, None)
                    _one_line(rec, text, lines)
                    if faults.full:
                        break
        except (OSError, EOFError, UnicodeDecodeError) as exc:
            faults.add(path, lines + 1, "file", f"unreadable: {exc}", None)
        faults.raise_if_any()
        pending = rec.funding_next
        rec.finish()
        progress(lines, lines)
        summary = _summary(rec, src, lines, pending)
        write_manifest(
            folder, name=f"binance-{symbol.lower()}-{src.name.split('.')[0]}",
            start_ns=rec.first_ts, end_ns=None if rec.last_ts is None else rec.last_ts + 1,
            provenance=f"backtest import binance {src.name} (sha256 {file_sha256(src)})",
            grid_of={symbol: grid}, options=options,
            extra={"kind": "binance websocket recording", "source": src.name,
                   "ts": "local receive time" if rec.local_time else "venue event time E",
                   "depth_gaps": len(rec.gaps), "diffs_applied": rec.applied,
                   "diffs_stale": rec.stale})
    return summary


def _one_line(rec: _Recording, text: str, line: int) -> None:
    faults, path = rec.faults, rec.path
    if not text.strip():
        return
    head, sep, body = text.partition(" ")
    try:
        local_ns = int(head)
    except ValueError:
        faults.add(path, line, "local_ns", "expected `<local ns> <json>`", head)
        return
    try:
        obj = json.loads(body)
    except json.JSONDecodeError as exc:
        faults.add(path, line, "json", f"not valid JSON: {exc.msg} at char {exc.pos + len(head) + 1}",
                   body.strip())
        return
    if not isinstance(obj, dict):
        faults.add(path, line, "json", "expected a JSON object", body.strip())
        return
    wrapped = "data" in obj and isinstance(obj.get("data"), dict)
    msg = obj["data"] if wrapped else obj
    prefix = "data." if wrapped else ""
    try:
        if "lastUpdateId" in msg and "e" not in msg:
            rec.on_snapshot(msg, rec.ts_of(msg, local_ns, line, prefix), line)
            return
        event = msg.get("e")
        handler = HANDLERS.get(event) if isinstance(event, str) else None
        if handler is None:
            rec.skipped[str(event)] = rec.skipped.get(str(event), 0) + 1
            return
        sym = msg.get("s") if event != "forceOrder" else (msg.get("o") or {}).get("s")
        if sym != rec.symbol:
            rec.skipped[f"{event} of {sym}"] = rec.skipped.get(f"{event} of {sym}", 0) + 1
            return
        getattr(rec, handler)(msg, rec.ts_of(msg, local_ns, line, prefix), line, prefix)
    except _Bad as bad:
        faults.add(path, line, bad.column, bad.message, bad.value)


def _fmt(ticks: int | None, step) -> str:
    return "none" if ticks is None else f"{(ticks * step):f}"


def _summary(rec: _Recording, src: Path, lines: int, pending) -> list[str]:
    g = rec.grid
    w = rec.w
    out = [f"{rec.symbol} recording {src.name}: {lines:,} lines; ts = "
           f"{'local receive time' if rec.local_time else 'venue event time E'}"]
    snap = (f"snapshot lastUpdateId={rec.snapshot_id}" if rec.snapshots == 1 else
            f"{rec.snapshots} snapshots" if rec.snapshots else "no snapshot")
    out.append(f"depth: {snap}, {rec.applied:,} diffs applied, {rec.stale:,} dropped as older than "
               f"the snapshot, "
               + (f"{rec.before_snapshot:,} dropped for preceding the snapshot line, "
                  if rec.drop_before_snapshot else "")
               + f"{rec.not_advancing:,} dropped as not advancing u, "
               f"{w['depth'].count:,} rows")
    out.append(f"depth gaps: {len(rec.gaps)}" + ("" if not rec.gaps else " (" + "; ".join(rec.gaps[:5])
                                                   + ("; ..." if len(rec.gaps) > 5 else "") + ")"))
    if rec.applied:
        bid, bq, ask, aq = rec.book.best()
        out.append(f"final book after u={rec.last_u}: best bid {_fmt(bid, g.tick)} x {_fmt(bq, g.lot)}, "
                   f"best ask {_fmt(ask, g.tick)} x {_fmt(aq, g.lot)}")
    differences = "; ".join(rec.ticker_mismatch)
    out.append(f"bookTicker vs rebuilt depth where update ids coincide: {rec.ticker_agree:,}/"
               f"{rec.ticker_checked:,} agree"
               + (f" (first differences: {differences})" if differences else ""))
    if rec.trades:
        lo, hi = rec.trade_ids or (0, 0)
        kinds = ", ".join(f"{k} {v:,}" for k, v in sorted(rec.trade_types.items()))
        out.append(f"trades: {rec.trades:,}, ids {lo}..{hi} ({rec.trade_id_gaps:,} missing), "
                   f"total qty {(rec.trade_qty * g.lot):f}, by type: {kinds}")
    else:
        out.append("trades: 0")
    out.append(f"book tickers: {w['recorded_book_ticker'].count:,}; marks: {w['marks'].count:,}; "
               f"funding settlements: {w['funding'].count:,}; liquidations: "
               f"{w['recorded_liquidations'].count:,}")
    if pending is not None:
        out.append(f"funding estimate for {pending[0]} ms (rate {pending[1]}) not written: "
                   f"the recording ends before that funding time")
    if w["marks"].count:
        out.append(rec.marks_round.summary())
    held = {n: t.held_back for n, t in w.items() if t.held_back}
    if held:
        out.append("ts held back to keep each table in recording order: "
                   + ", ".join(f"{n} {c:,} rows" for n, c in held.items()))
    if rec.skipped:
        out.append("skipped messages: " + ", ".join(f"{k} {v:,}" for k, v in sorted(rec.skipped.items())))
    return out


