"""Peers side by side: our matcher and the Python-callable order books that install from
the package index, fed the same realistic stream in one run, each book checked against
ours before its figure is trusted.

Run: `.venv/bin/python -m bench.peers [--n 1000000] [--rounds 3] [--without NAME]` or
`python bench/peers.py ...` (optional extra `peers`; PINS lists the versions measured).
Engines missing from the environment are skipped. Exit 1 when an engine's final book
differs from ours (its figure is then not to be trusted), else 0. docs/bench.md has the
figures and what they mean.

The stream is `datasets.order_streams.realistic_stream(n, seed)` made plain for peers that
have no self-trade prevention or post-only: every `stp` is none and post-only becomes GTC
(PEER_STREAM). Every engine gets the instruction stream except where a peer cannot match:
- ours: `Matcher.apply_columns` in batches of BATCH, every event emitted, drained per batch;
  also measured on the stream as generated (self-trade prevention, post-only) for reference.
- baseline: `BaselineBook` below, the obvious correct price-time matcher (SortedDict of
  price -> deque per side, an order_id dict) for limit/market/IOC/cancel/amend.
- lightmatchingengine: matches; it has no IOC, no amend and its own order ids, so the
  adapter cancels an IOC/market remainder after the add, amends a qty down in place and
  anything else by cancel + add, and maps our ids to its ids. Known to mishandle filled
  orders (they stay in its `order_id_map`; cancelling one whose level is gone raises
  AssertionError): the adapter counts those, does not hide them.
- nautilus-trader's order book (Rust core, L3_MBO) has no matching call from Python: it
  gets the L3 add/update/delete feed our matcher's output implies (derived before timing,
  `BookOrder`s pre-built): less work than matching. Its rate is quoted per instruction of
  the stream it stands for, and per delta.
- order-book (C, price levels only): gets the L2 feed (a level's new total per instruction
  that changed it), likewise derived before timing.
Each round runs every engine once (order rotating per round), garbage collector paused.
Rates come from the median over rounds of the thread's CPU time (every engine runs in
this thread; time the scheduler gives other processes is not counted); the median wall
time is printed beside it. Timings are noisy on a shared machine; the books are not.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections import deque
from collections.abc import Callable, Sequence

from sortedcontainers import SortedDict

from matching import Matcher, SymbolRules
from matching.types import BUY, CANCEL, GTC, IOC, LIMIT, MARKET, NEW, POST_ONLY, STP_NONE

SYMBOL = "BTCUSDT"
BATCH = 65_536
PINS = {"nautilus-trader": "1.221.0", "order-book": "0.6.1", "lightmatchingengine": "2019.1.4"}
PEER_STREAM = "stp none, post-only as GTC"
ADD, UPDATE, DELETE = 0, 1, 2  # L3 feed operations

Levels = dict[str, dict[int, int]]  # {"bid": {price_ticks: qty_lots}, "ask": {...}}


# ---------------------------------------------------------------- the inputs


def streams(n: int, seed: int) -> tuple[list[list], list[list]]:
    """(the realistic stream as generated, the same made plain for peers) as matcher
    columns (`Matcher.apply_columns` order)."""
    from datasets.order_streams import realistic_stream
    cols = realistic_stream(n, seed=seed)
    original = [list(c) for c in cols.matcher_args()]
    plain = list(original)
    plain[7] = [GTC if t == POST_ONLY else t for t in original[7]]
    plain[10] = [STP_NONE] * len(original[0])
    return original, plain


def batches(columns: list[list]) -> list[list[list]]:
    return [[c[i:i + BATCH] for c in columns] for i in range(0, len(columns[0]), BATCH)]


def derived_feeds(columns: list[list]) -> tuple[list[tuple], list[tuple]]:
    """The L3 feed (op, side, price, qty, order_id, ts) and the L2 feed (side, price,
    level qty; 0 deletes the level) that replaying `columns` through our matcher implies,
    one instruction at a time. Within an instruction makers change before the
    instruction's own order, so the book is never crossed in between."""
    ts_, action, account, symbol, order_id, side, otype, tif, price, qty, stp = columns
    m = Matcher({SYMBOL: SymbolRules()})
    out, orders = m.out, m.orders
    state: dict[int, tuple[int, int, int]] = {}  # order_id -> (side, price, qty) as fed
    level_qty: dict[tuple[int, int], int] = {}
    l3: list[tuple] = []
    l2: list[tuple] = []
    for i in range(len(ts_)):
        ts, oid, a = ts_[i], order_id[i], action[i]
        if a == NEW:
            m.new_order(ts, account[i], symbol[i], oid, side[i], otype[i], tif[i], price[i],
                        qty[i], stp[i])
        elif a == CANCEL:
            m.cancel(ts, account[i], symbol[i], oid)
        else:
            m.amend(ts, account[i], symbol[i], oid, price[i], qty[i])
        touched = [rec[7] if rec[0] == "fill" else rec[4] for rec in out]
        touched.append(oid)
        out.clear()
        levels: dict[tuple[int, int], None] = {}
        for t in _ordered(touched):
            prev = state.get(t)
            o = orders.get(t)
            now = None if o is None else (o.side, o.price, o.qty)
            if now == prev:
                continue
            if prev is not None and (now is None or now[1] != prev[1]):
                l3.append((DELETE, prev[0], prev[1], 0, t, ts))
                level_qty[prev[:2]] -= prev[2]
                levels[prev[:2]] = None
                prev = None
            if now is None:
                del state[t]
                continue
            l3.append((ADD if prev is None else UPDATE, now[0], now[1], now[2], t, ts))
            level_qty[now[:2]] = level_qty.get(now[:2], 0) + now[2] - (0 if prev is None else prev[2])
            levels[now[:2]] = None
            state[t] = now
        for key in levels:
            total = level_qty[key]
            if total:
                l2.append((key[0], key[1], total))
            else:
                del level_qty[key]
                l2.append((key[0], key[1], 0))
    return l3, l2


def _ordered(touched: list[int]) -> list[int]:
    """Touched ids once each, the instruction's own id (last element) last."""
    own = touched[-1]
    return [t for t in dict.fromkeys(touched[:-1]) if t != own] + [own]


# ---------------------------------------------------------------- the baseline


class _Order:
    __slots__ = ("order_id", "account", "side", "price", "qty")

    def __init__(self, order_id: int, account: str, side: int, price: int, qty: int) -> None:
        self.order_id = order_id
        self.account = account
        self.side = side
        self.price = price  # ticks
        self.qty = qty  # open lots; 0 marks an entry left dead in its deque


class _Level:
    __slots__ = ("queue", "qty", "count")

    def __init__(self) -> None:
        self.queue: deque[_Order] = deque()  # time priority; dead entries (qty 0) skipped
        self.qty = 0  # lots, live orders only
        self.count = 0  # live orders


class BaselineBook:
    """The obvious correct price-time matcher for limit/market/IOC/cancel/amend on one
    symbol: per side a SortedDict price key -> level (bids keyed by -price so index 0 is
    best on both sides), a level a deque in time priority, an order_id -> order dict.
    A deque cannot drop from the middle in O(1), so a cancelled (or moved) order is marked
    dead (qty 0) and skipped when it reaches the front; a level leaves the book when its
    last live order does. No self-trade prevention, post-only or FOK (rejected). Emits
    fills and order events as tuples into `out`, as ours does."""

    def __init__(self) -> None:
        self.bids: SortedDict = SortedDict()  # -price -> _Level
        self.asks: SortedDict = SortedDict()  # price -> _Level
        self.orders: dict[int, _Order] = {}  # live orders
        self.out: list[tuple] = []

    def apply_columns(self, ts, action, account, symbol, order_id, side, order_type, tif,
                      price, qty, stp) -> None:
        """Apply a batch of instructions given as columns (same shape as ours)."""
        for i in range(len(ts)):
            a = action[i]
            if a == NEW:
                self.new_order(ts[i], account[i], order_id[i], side[i], order_type[i], tif[i],
                               price[i], qty[i])
            elif a == CANCEL:
                self.cancel(ts[i], account[i], order_id[i])
            else:
                self.amend(ts[i], account[i], order_id[i], price[i], qty[i])

    def new_order(self, ts, account, oid, side, order_type, tif, price, qty) -> None:
        out = self.out
        if (qty is None or qty <= 0 or oid in self.orders or tif not in (GTC, IOC)
                or (price is None) != (order_type == MARKET) or (price is not None and price <= 0)):
            out.append(("rejected", ts, oid))
            return
        out.append(("accepted", ts, oid, qty))
        left = self._match(ts, account, oid, side, price, qty)
        if left:
            if order_type == LIMIT and tif == GTC:
                self._rest(oid, account, side, price, left)
            else:
                out.append(("expired", ts, oid))

    def cancel(self, ts, account, oid) -> None:
        order = self.orders.get(oid)
        if order is None or order.account != account:
            self.out.append(("rejected", ts, oid))
            return
        del self.orders[oid]
        self._unlink(order)
        self.out.append(("cancelled", ts, oid))

    def amend(self, ts, account, oid, price, qty) -> None:
        """New open qty and/or price: 0 cancels; same price and no more qty keeps the queue
        place; otherwise to the back, matching first if the new price crosses."""
        order = self.orders.get(oid)
        if order is None or order.account != account:
            self.out.append(("rejected", ts, oid))
            return
        price = order.price if price is None else price
        qty = order.qty if qty is None else qty
        if price <= 0 or qty < 0:
            self.out.append(("rejected", ts, oid))
            return
        if qty == 0:
            self.cancel(ts, account, oid)
            return
        self.out.append(("amended", ts, oid, qty))
        if price == order.price and qty <= order.qty:
            level = self.bids[-price] if order.side == BUY else self.asks[price]
            level.qty -= order.qty - qty
            order.qty = qty
            return
        self._unlink(order)
        left = self._match(ts, account, oid, order.side, price, qty)
        if left:
            self._rest(oid, account, order.side, price, left)
        else:
            del self.orders[oid]

    def _rest(self, oid, account, side, price, qty) -> None:
        order = _Order(oid, account, side, price, qty)
        book, key = (self.bids, -price) if side == BUY else (self.asks, price)
        level = book.get(key)
        if level is None:
            level = book[key] = _Level()
        level.queue.append(order)
        level.qty += qty
        level.count += 1
        self.orders[oid] = order

    def _unlink(self, order: _Order) -> None:
        """Take a live order off its level (left dead in the deque)."""
        book, key = (self.bids, -order.price) if order.side == BUY else (self.asks, order.price)
        level = book[key]
        level.qty -= order.qty
        level.count -= 1
        order.qty = 0
        if not level.count:
            del book[key]

    def _match(self, ts, account, oid, side, limit, qty) -> int:
        """Fill `qty` against the opposite side up to `limit` (None: any); return what is
        left. Best level first, oldest order first; emptied levels leave the book."""
        book, sign = (self.asks, 1) if side == BUY else (self.bids, -1)
        out, orders = self.out, self.orders
        while qty and book:
            key, level = book.peekitem(0)
            if limit is not None and key > limit * sign:
                break
            queue = level.queue
            while qty and queue:
                maker = queue[0]
                if not maker.qty:
                    queue.popleft()
                    continue
                fill = maker.qty if maker.qty <= qty else qty
                maker.qty -= fill
                level.qty -= fill
                qty -= fill
                out.append(("fill", ts, key * sign, fill, side, oid, maker.order_id, account,
                            maker.account, qty, maker.qty))
                if not maker.qty:
                    queue.popleft()
                    level.count -= 1
                    del orders[maker.order_id]
            if not level.count:
                del book[key]
        return qty

    def levels(self) -> Levels:
        return {"bid": {-k: v.qty for k, v in self.bids.items()},
                "ask": {k: v.qty for k, v in self.asks.items()}}


# ---------------------------------------------------------------- the peers


class LmeAdapter:
    """Our instruction columns into lightmatchingengine (see the module doc)."""

    def __init__(self) -> None:
        from lightmatchingengine.lightmatchingengine import LightMatchingEngine
        self.engine = LightMatchingEngine()
        self.ids: dict[int, tuple[object, str]] = {}  # our order_id -> (its Order, account)
        self.trades = 0
        self.assertion_errors = 0  # cancel of a filled order it still lists

    def apply_columns(self, ts, action, account, symbol, order_id, side, order_type, tif,
                      price, qty, stp) -> None:
        engine, ids = self.engine, self.ids
        add, cancel = engine.add_order, engine.cancel_order
        for i in range(len(ts)):
            a = action[i]
            oid = order_id[i]
            if a == NEW:
                order, trades = add(SYMBOL, price[i] or 0, qty[i], 1 if side[i] == BUY else 2)
                self.trades += len(trades)
                if order_type[i] == MARKET or tif[i] == IOC:
                    if order.leaves_qty:  # it rests every remainder: take it back
                        cancel(order.order_id, SYMBOL)
                else:
                    ids[oid] = (order, account[i])
                continue
            entry = ids.get(oid)
            if entry is None or entry[1] != account[i]:
                continue  # unknown: ours rejects it
            order = entry[0]
            if a == CANCEL:
                del ids[oid]
                try:
                    cancel(order.order_id, SYMBOL)
                except AssertionError:
                    self.assertion_errors += 1
                continue
            if not order.leaves_qty:
                continue  # amend of a filled or cancelled order: ours rejects it
            new_price = order.price if price[i] is None else price[i]
            new_qty = order.leaves_qty if qty[i] is None else qty[i]
            if new_qty == 0:
                del ids[oid]
                cancel(order.order_id, SYMBOL)
            elif new_price == order.price and new_qty <= order.leaves_qty:
                order.leaves_qty = new_qty  # no amend call: keep the queue place in place
            else:
                cancel(order.order_id, SYMBOL)
                new, trades = add(SYMBOL, new_price, new_qty, order.side)
                self.trades += len(trades)
                ids[oid] = (new, account[i])

    def levels(self) -> Levels:
        book = self.engine.order_books.get(SYMBOL)
        result: Levels = {"bid": {}, "ask": {}}
        if book is None:
            return result
        for name, side in (("bid", book.bids), ("ask", book.asks)):
            for p, orders in side.items():
                total = sum(o.leaves_qty for o in orders)
                if total or orders:
                    result[name][p] = total
        return result

    def leaked(self) -> int:
        """Orders it still lists in `order_id_map` that are not on its book."""
        book = self.engine.order_books.get(SYMBOL)
        if book is None:
            return 0
        on_book = {o.order_id for side in (book.bids, book.asks) for lvl in side.values() for o in lvl}
        return sum(1 for k in book.order_id_map if k not in on_book)


def nautilus_ops(l3: list[tuple]) -> tuple[Callable[[], object], list[tuple]]:
    """(a fresh-book factory, [(op, BookOrder, ts)]) for nautilus, built before timing."""
    from nautilus_trader.model.book import OrderBook
    from nautilus_trader.model.data import BookOrder
    from nautilus_trader.model.enums import BookType, OrderSide
    from nautilus_trader.model.identifiers import InstrumentId
    from nautilus_trader.model.objects import Price, Quantity
    instrument = InstrumentId.from_str(f"{SYMBOL}.SIM")
    sides = {BUY: OrderSide.BUY, 1 - BUY: OrderSide.SELL}
    ops = [(op, BookOrder(sides[side], Price(price, 0), Quantity(qty, 0), oid), ts)
           for op, side, price, qty, oid, ts in l3]
    return (lambda: OrderBook(instrument, BookType.L3_MBO)), ops


def run_nautilus(factory: Callable[[], object], ops: list[tuple]):
    """Apply pre-built BookOrders: nautilus's book and its Python call only."""
    book = factory()
    calls = (book.add, book.update, book.delete)
    for op, order, ts in ops:
        calls[op](order, ts)
    return book


def run_nautilus_plain(factory: Callable[[], object], l3: list[tuple]):
    """Apply the L3 feed from plain Python values, as ours gets its instructions: the
    BookOrder (Price, Quantity) is built per delta inside the timing."""
    from nautilus_trader.model.data import BookOrder
    from nautilus_trader.model.enums import OrderSide
    from nautilus_trader.model.objects import Price, Quantity
    book = factory()
    calls = (book.add, book.update, book.delete)
    sides = (OrderSide.BUY, OrderSide.SELL) if BUY == 0 else (OrderSide.SELL, OrderSide.BUY)
    for op, side, price, qty, oid, ts in l3:
        calls[op](BookOrder(sides[side], Price(price, 0), Quantity(qty, 0), oid), ts)
    return book


def nautilus_levels(book) -> Levels:
    return {"bid": {round(lv.price.as_double()): round(lv.size()) for lv in book.bids()},
            "ask": {round(lv.price.as_double()): round(lv.size()) for lv in book.asks()}}


def run_order_book(l2: list[tuple]):
    from order_book import OrderBook
    book = OrderBook()
    bids, asks = book.bids, book.asks
    for side, price, total in l2:
        levels = bids if side == BUY else asks
        if total:
            levels[price] = total
        else:
            del levels[price]
    return book


def order_book_levels(book) -> Levels:
    return {"bid": {int(p): int(q) for p, q in book.bids.to_dict().items()},
            "ask": {int(p): int(q) for p, q in book.asks.to_dict().items()}}


def run_batches(engine, feed: list[list[list]]):
    out = engine.out if hasattr(engine, "out") else None
    for batch in feed:
        engine.apply_columns(*batch)
        if out is not None:
            out.clear()
    return engine


def ours_levels(m: Matcher) -> Levels:
    book = m.books[SYMBOL]
    return {"bid": {p: lv.qty for p, lv in book.bids.items()},
            "ask": {p: lv.qty for p, lv in book.asks.items()}}


def diff_levels(ours: Levels, theirs: Levels) -> list[str]:
    """Levels whose qty differs (sorted, so the report is deterministic); [] if equal."""
    problems = []
    for side in ("bid", "ask"):
        a, b = ours[side], theirs[side]
        for p in sorted(set(a) | set(b)):
            if a.get(p) != b.get(p):
                problems.append(f"{side} {p}: ours {a.get(p)} theirs {b.get(p)}")
    return problems


# ---------------------------------------------------------------- the run


def _installed(module: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(module) is not None


def _timed(fn: Callable[[], object]) -> tuple[float, float, object]:
    """(CPU seconds of this thread, wall seconds, result) of `fn()`, collector paused."""
    gc.collect()
    gc.disable()
    try:
        wall, cpu = time.perf_counter(), time.thread_time()
        result = fn()
        return time.thread_time() - cpu, time.perf_counter() - wall, result
    finally:
        gc.enable()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="instructions (realistic stream)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--without", action="append", default=[], metavar="NAME",
                        help="leave out the engines whose name starts with NAME (repeatable)")
    args = parser.parse_args(argv)
    if args.n < 1 or args.rounds < 1:
        parser.error("--n and --rounds must be >= 1")
    import matching.engine
    compiled = not matching.engine.__file__.endswith(".py")
    t0 = time.perf_counter()
    original, plain = streams(args.n, args.seed)
    plain_batches, original_batches = batches(plain), batches(original)
    l3, l2 = derived_feeds(plain)
    print(f"realistic stream: {args.n:,} instructions, seed {args.seed} ({PEER_STREAM}); "
          f"L3 feed {len(l3):,} deltas, L2 feed {len(l2):,} level updates; "
          f"inputs built in {time.perf_counter() - t0:.1f} s; matcher "
          f"{'compiled' if compiled else 'PURE PYTHON'}; {args.rounds} rounds; rates from the median "
          f"CPU time of this thread (wall time is noisier on a shared machine)")

    engines: dict[str, tuple[str, int, Callable[[], object], Callable[[object], Levels] | None]] = {
        "ours": ("instructions, every event emitted", args.n,
                 lambda: run_batches(Matcher({SYMBOL: SymbolRules()}), plain_batches), ours_levels),
        "ours, stream as generated": ("instructions + stp cancel_taker, post-only", args.n,
                                      lambda: run_batches(Matcher({SYMBOL: SymbolRules()}),
                                                          original_batches), None),
        "SortedDict+deque baseline": ("instructions, fills+events emitted", args.n,
                                      lambda: run_batches(BaselineBook(), plain_batches),
                                      BaselineBook.levels),
    }
    skipped = []
    if _installed("nautilus_trader"):
        factory, ops = nautilus_ops(l3)
        engines["nautilus-trader OrderBook L3"] = (
            "L3 deltas, BookOrders pre-built, no matching", len(l3),
            lambda: run_nautilus(factory, ops), nautilus_levels)
        engines["nautilus, BookOrder built per delta"] = (
            "L3 deltas as plain tuples, no matching", len(l3),
            lambda: run_nautilus_plain(factory, l3), nautilus_levels)
    else:
        skipped.append("nautilus-trader")
    if _installed("order_book"):
        engines["order-book (C)"] = ("L2 level updates, no matching", len(l2),
                                     lambda: run_order_book(l2), order_book_levels)
    else:
        skipped.append("order-book")
    if _installed("lightmatchingengine"):
        engines["lightmatchingengine"] = ("instructions (adapter: IOC, amend, ids)", args.n,
                                          lambda: run_batches(LmeAdapter(), plain_batches),
                                          LmeAdapter.levels)
    else:
        skipped.append("lightmatchingengine")

    for prefix in args.without:
        for name in [n for n in engines if n.startswith(prefix) and n != "ours"]:
            del engines[name]
    times: dict[str, list[float]] = {name: [] for name in engines}
    walls: dict[str, list[float]] = {name: [] for name in engines}
    final: dict[str, object] = {}
    names = list(engines)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            cpu, wall, final[name] = _timed(engines[name][2])
            times[name].append(cpu)
            walls[name].append(wall)

    reference = ours_levels(final["ours"])
    ours_rate = args.n / statistics.median(times["ours"])
    print(f"final book (ours): {len(reference['bid'])} bid levels, {len(reference['ask'])} ask "
          f"levels, {sum(reference['bid'].values()) + sum(reference['ask'].values()):,} lots")
    print(f"{'engine':36} {'fed':44} {'cpu s':>7} {'best':>7} {'wall s':>7} {'instr/s':>11} "
          f"{'msgs/s':>11} {'ours/it':>8}  book")
    mismatched = 0
    for name, (fed, messages, _, levels_of) in engines.items():
        med = statistics.median(times[name])
        if levels_of is None:
            book = "n/a (other semantics)"
        else:
            problems = diff_levels(reference, levels_of(final[name]))
            mismatched += bool(problems)
            book = "same" if not problems else f"MISMATCH {len(problems)} levels, e.g. {problems[0]}"
        print(f"{name:36} {fed:44} {med:7.3f} {min(times[name]):7.3f} "
              f"{statistics.median(walls[name]):7.3f} {args.n / med:11,.0f} "
              f"{messages / med:11,.0f} {ours_rate / (args.n / med):8.2f}  {book}")
    if "lightmatchingengine" in final:
        lme = final["lightmatchingengine"]
        print(f"lightmatchingengine: {lme.assertion_errors:,} cancels raised AssertionError "
              f"(order filled, still in its order_id_map); {lme.leaked():,} filled orders "
              f"still listed at the end")
    for name in skipped:
        print(f"{name}: not installed (pip install {name}=={PINS[name]})")
    return 1 if mismatched else 0


if __name__ == "__main__":
    raise SystemExit(main())
