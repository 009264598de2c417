"""Deterministic generated order streams for the matcher: the realistic mix and the
adversarial one. Used by `make demo`, `backtest generate orders`, the benchmarks and the
tests. Same arguments, same stream, on every machine (random.Random is seeded; nothing else
varies).

The realistic mix follows issue 3: about 55% limit adds near the touch, 35% cancels,
5% amends, 5% marketable (market or IOC through the touch). The generator keeps a live
matcher beside it so that adds are placed against the book as it really is and cancels
and amends name orders that are really live; it does not write that matcher's output.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from matching import Matcher, SymbolRules
from matching.types import (
    AMEND, BUY, CANCEL, GTC, IOC, LIMIT, MARKET, NEW, POST_ONLY, SELL, STP_CANCEL_TAKER,
)

START_NS = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z; any fixed instant would do


@dataclass
class OrderColumns:
    """An instruction stream as columns of matching.types codes (the matcher's input)."""

    ts: list[int] = field(default_factory=list)
    seq: list[int] = field(default_factory=list)
    action: list[int] = field(default_factory=list)
    account: list[str] = field(default_factory=list)
    symbol: list[str] = field(default_factory=list)
    order_id: list[int] = field(default_factory=list)
    side: list[int] = field(default_factory=list)
    order_type: list[int] = field(default_factory=list)
    tif: list[int] = field(default_factory=list)
    price: list[int | None] = field(default_factory=list)
    qty: list[int | None] = field(default_factory=list)
    reduce_only: list[bool] = field(default_factory=list)
    stp: list[int] = field(default_factory=list)
    # The generating shadow book's mid (ticks) at each whole second: (ts, symbol, mid).
    mids: list[tuple[int, str, int]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ts)

    def append(
        self, ts: int, action: int, account: str, symbol: str, order_id: int, side: int,
        order_type: int, tif: int, price: int | None, qty: int | None, stp: int,
    ) -> None:
        self.ts.append(ts)
        self.seq.append(len(self.seq))
        self.action.append(action)
        self.account.append(account)
        self.symbol.append(symbol)
        self.order_id.append(order_id)
        self.side.append(side)
        self.order_type.append(order_type)
        self.tif.append(tif)
        self.price.append(price)
        self.qty.append(qty)
        self.reduce_only.append(False)
        self.stp.append(stp)

    def matcher_args(self) -> tuple[list, ...]:
        """The columns `Matcher.apply_columns` takes, in its order."""
        return (self.ts, self.action, self.account, self.symbol, self.order_id, self.side,
                self.order_type, self.tif, self.price, self.qty, self.stp)


CRASH_MARKETABLE = 0.10  # extra share of instructions turned marketable during a crash
CRASH_BUY_SHARE = 0.15  # share of marketable orders that buy during a crash
CRASH_BID_BACKOFF = 12  # new bids sit this many times further below the fair price
CRASH_DEPTH = 0.25  # the fair price falls this far over the crash window
RECOVERY = 0.45  # after the crash the fair price wins back this share of the fall...
RECOVERY_SPAN = 0.5  # ...over this share of the instructions left
RECOVERY_BUY_SHARE = 0.65  # share of marketable orders that buy while it recovers
WALK_STEP = 6  # with a crash, the fair price walks up to this many ticks per instruction


def _steps(n: int, timeline: tuple[tuple[int, int], ...] | None) -> list[tuple[int, int, int]]:
    """(first instruction index, low, high) of each segment of `timeline` ((end index,
    duration ns) pairs): instruction gaps are drawn uniform in [low, high], so a segment
    of k instructions spans about its duration. Without a timeline: 1..200 us gaps."""
    if timeline is None:
        return [(0, 1_000, 200_000)]
    steps, start = [], 0
    for end, duration in timeline:
        mean = max(2, duration // max(1, end - start))
        steps.append((start, 1, 2 * mean - 1))
        start = end
    return steps


def realistic_stream(
    n: int, *, seed: int = 1, symbols: tuple[str, ...] = ("BTCUSDT",), accounts: int = 500,
    mid_ticks: int = 300_000, target_live: int = 5_000,
    progress: Callable[[int], None] | None = None,
    crash: tuple[float, float] | None = None,
    timeline: tuple[tuple[int, int], ...] | None = None,
) -> OrderColumns:
    """`n` instructions of the realistic mix over `symbols`, from `accounts` accounts.

    Adds sit 0..~30 ticks behind the touch (an exponential offset, so most are within a few
    ticks), some improve an open spread, 10% are post-only. Marketable orders are half
    market, half IOC limits a few ticks through the touch; their size adapts so the live
    book hovers around `target_live` orders per symbol instead of growing with `n`.

    `crash` = (start, end) as fractions of the stream: inside that window a sell-off runs
    (CRASH_* above): a fair price slides CRASH_DEPTH below `mid_ticks`; sellers quote near
    it, buyers step back far below it (makers pull their bids), most marketable orders sell
    and they come three times as often, so the bids above the fair price are eaten and the
    book is thin. After the window the fair price recovers RECOVERY of the fall over
    RECOVERY_SPAN of the instructions left, and most marketable orders buy. Outside the
    window adds are quoted around the fair price, which walks (WALK_STEP; a generator of
    its own, so the stream draws as many numbers as one without a crash).

    `timeline` ((end instruction index, duration ns), ...) spaces the instructions so each
    segment lasts about its duration (a crash is busier than the hours around it);
    without one, gaps are 1..200 us (about 10,000 instructions a second).
    """
    rng = random.Random(seed)
    rules = {s: SymbolRules() for s in symbols}
    shadow = Matcher(rules)
    cols = OrderColumns()
    names = [f"acct{i:05d}" for i in range(accounts)]
    live: dict[str, list[int]] = {s: [] for s in symbols}  # ids that may still rest
    ts = START_NS
    next_second = START_NS
    next_id = 1
    crash_from, crash_to = (int(crash[0] * n), int(crash[1] * n)) if crash else (n, n)
    recovery_end = crash_to + max(1, int((n - crash_to) * RECOVERY_SPAN))
    # With a crash, adds are quoted around a fair price: a random walk (its own generator,
    # so the stream's draws are those of the crash-free stream) that stands still while
    # the crash takes it down, then recovers part of the fall.
    walk_rng = random.Random(f"walk-{seed}") if crash else None
    walk = 0
    fair = mid_ticks
    steps = _steps(n, timeline)
    segment, (_, low, high) = 0, steps[0]
    for i in range(n):
        if progress is not None and i % 65_536 == 0:
            progress(i)
        while segment + 1 < len(steps) and i >= steps[segment + 1][0]:
            segment += 1
            _, low, high = steps[segment]
        crashing = crash_from <= i < crash_to
        recovering = crash_to <= i < recovery_end
        ts += rng.randint(low, high)
        if walk_rng is not None:
            if not crashing:
                walk += walk_rng.randint(-WALK_STEP, WALK_STEP)
            fall = min(1.0, max(0, i - crash_from) / max(1, crash_to - crash_from))
            back = min(1.0, max(0, i - crash_to) / max(1, recovery_end - crash_to))
            fair = max(1, int((mid_ticks + walk) * (1 - CRASH_DEPTH * fall * (1 - RECOVERY * back))))
        while next_second <= ts:
            for s in symbols:
                bid, ask = shadow.books[s].best_bid(), shadow.books[s].best_ask()
                if bid is not None and ask is not None:
                    cols.mids.append((next_second, s, (bid + ask) // 2))
            next_second += 1_000_000_000
        symbol = symbols[rng.randrange(len(symbols))]
        book = shadow.books[symbol]
        pool = live[symbol]
        # Forget ids the shadow book no longer holds (filled or cancelled).
        while pool and pool[-1] not in shadow.orders:
            pool.pop()
        r = rng.random()
        if crashing and r < CRASH_MARKETABLE:
            r = 0.97  # the sell-off: marketable flow instead of an add
        if r >= 0.55 and r < 0.95 and not pool:
            r = 0.0  # nothing to cancel or amend yet: add instead
        if r < 0.55:
            side = BUY if rng.random() < 0.5 else SELL
            bid, ask = book.best_bid(), book.best_ask()
            offset = int(rng.expovariate(0.25))
            if side == BUY:
                ref = bid if bid is not None else (ask - 1 if ask is not None else mid_ticks - 1)
                price = ref - offset
                if ask is not None and bid is not None and ask - bid > 1 and rng.random() < 0.3:
                    price = bid + 1  # improve the open spread
                if ask is not None and price >= ask:
                    price = ask - 1
            else:
                ref = ask if ask is not None else (bid + 1 if bid is not None else mid_ticks + 1)
                price = ref + offset
                if ask is not None and bid is not None and ask - bid > 1 and rng.random() < 0.3:
                    price = ask - 1
                if bid is not None and price <= bid:
                    price = bid + 1
            if crashing:
                # Sellers quote near the falling fair price, buyers step back far below it.
                if side == BUY:
                    price = min(price, fair - CRASH_BID_BACKOFF * (offset + 1))
                else:
                    price = min(price, fair + offset)
            elif walk_rng is not None:
                price = fair - 1 - offset if side == BUY else fair + offset
            if walk_rng is not None:
                if side == BUY and ask is not None and price >= ask:
                    price = ask - 1
                if side == SELL and bid is not None and price <= bid:
                    price = bid + 1
                price = max(1, price)
            tif = POST_ONLY if rng.random() < 0.1 else GTC
            qty = rng.randint(1, 100)
            row = (ts, NEW, names[rng.randrange(accounts)], symbol, next_id, side, LIMIT, tif,
                   price, qty, STP_CANCEL_TAKER)
            pool.append(next_id)
            # Keep a random order at the back of the pool so the pop-check above is fair.
            j = rng.randrange(len(pool))
            pool[j], pool[-1] = pool[-1], pool[j]
            next_id += 1
        elif r < 0.95:
            oid, order = _take_live(rng, pool, shadow.orders, keep=r >= 0.90)
            if order is None:
                # A cancel of a finished order: venues see these too; the matcher rejects it.
                row = (ts, CANCEL, names[rng.randrange(accounts)], symbol, oid, BUY, LIMIT, GTC,
                       None, None, STP_CANCEL_TAKER)
            elif r < 0.90:
                row = (ts, CANCEL, order.account, symbol, oid, order.side, LIMIT, GTC, None,
                       None, STP_CANCEL_TAKER)
            else:
                kind = rng.random()
                new_price: int | None = None
                new_qty: int | None = None
                if kind < 0.5:
                    new_qty = max(1, order.qty - rng.randint(1, 20))
                elif kind < 0.75:
                    new_qty = order.qty + rng.randint(1, 20)
                else:
                    step = rng.randint(1, 3)
                    new_price = order.price - step if order.side == BUY else order.price + step
                row = (ts, AMEND, order.account, symbol, oid, order.side, LIMIT, GTC, new_price,
                       new_qty, STP_CANCEL_TAKER)
        else:
            buy_share = CRASH_BUY_SHARE if crashing else RECOVERY_BUY_SHARE if recovering else 0.5
            side = BUY if rng.random() < buy_share else SELL
            scale = max(1, len(shadow.orders) * len(symbols) // target_live)
            qty = rng.randint(1, 200) * scale
            if rng.random() < 0.5:
                row = (ts, NEW, names[rng.randrange(accounts)], symbol, next_id, side, MARKET,
                       IOC, None, qty, STP_CANCEL_TAKER)
            else:
                touch = book.best_ask() if side == BUY else book.best_bid()
                if touch is None:
                    touch = mid_ticks
                through = rng.randint(0, 5)
                price = touch + through if side == BUY else max(1, touch - through)
                row = (ts, NEW, names[rng.randrange(accounts)], symbol, next_id, side, LIMIT,
                       IOC, price, qty, STP_CANCEL_TAKER)
            next_id += 1
        cols.append(*row)
        shadow.apply_columns(*([v] for v in (row[0],) + row[1:]))
        shadow.out.clear()
    return cols


def _take_live(rng: random.Random, pool: list[int], live: dict, *, keep: bool) -> tuple[int, object]:
    """Pick a random id from `pool` whose order is still live (up to 4 tries; dead ids seen
    on the way leave the pool). The picked id leaves the pool too unless `keep`. Returns the
    id and its order, or the last dead id and None."""
    oid = pool[-1]
    for _ in range(4):
        j = rng.randrange(len(pool))
        oid = pool[j]
        order = live.get(oid)
        if order is None or not keep:
            pool[j] = pool[-1]
            pool.pop()
        if order is not None or not pool:
            return oid, order
    return oid, None


def adversarial_stream(
    n: int, *, seed: int = 1, symbol: str = "BTCUSDT", depth_levels: int = 2_000,
    orders_per_level: int = 5, mid_ticks: int = 300_000,
) -> OrderColumns:
    """`n` instructions that stress the book: build a deep side (`depth_levels` levels of
    `orders_per_level` small orders each), then sweep all of it with one market order that
    walks every level, and repeat on alternating sides."""
    rng = random.Random(seed)
    cols = OrderColumns()
    ts = START_NS
    next_id = 1
    side = SELL
    while len(cols) < n:
        total = 0
        for lvl in range(depth_levels):
            price = mid_ticks + 1 + lvl if side == SELL else mid_ticks - 1 - lvl
            for _ in range(orders_per_level):
                if len(cols) >= n - 1:
                    break
                ts += 1_000
                qty = rng.randint(1, 10)
                total += qty
                cols.append(ts, NEW, f"maker{rng.randrange(50):03d}", symbol, next_id, side,
                            LIMIT, GTC, price, qty, STP_CANCEL_TAKER)
                next_id += 1
        ts += 1_000
        cols.append(ts, NEW, "sweeper", symbol, next_id, BUY if side == SELL else SELL, MARKET,
                    IOC, None, total, STP_CANCEL_TAKER)
        next_id += 1
        side = BUY if side == SELL else SELL
    return cols
