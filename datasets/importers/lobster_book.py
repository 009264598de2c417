"""The book side of `backtest import lobster`: our matcher's book driven by the imported
instructions, and the synthetic instructions that keep it in step with the recorded top L
levels (datasets/importers/lobster.py reads and writes the files; docs/import-lobster.md).

Per message row i, in this order, all instructions carrying `source_row` i:
1. message i's own instructions (`apply`), nothing synthetic before them (on row 1 the
   `seed` and the corrections for message 1 come first: they are the book before the file);
2. the alignment to recorded row i (`align`): `missing`, `excess`, `absent`, `deep`;
3. the corrections for message i+1 (`correct`), which leave every level's total as it is,
   so the book still equals row i: `unseen`, `resize`, `requeue`, and `stale_ahead` (the
   cancels, whose liquidity the recording still shows at row i: a `missing` order behind
   the executed one takes its place).
So the book that matched row i, plus message i+1's own instructions alone, is the one-step
view of row i+1, and `score` compares it with the recording, level by level.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from matching import Matcher
from matching.errors import BacktestError
from matching.types import BUY, FILL, GTC, IOC, SELL

if TYPE_CHECKING:
    from datasets.importers.lobster import Grid, Lookahead, Message, OrdersOut

SYNTHETIC_ID_BASE = 1_000_000_000_000  # ids the importer makes count up from here
ACCOUNT_LOBSTER, ACCOUNT_TAKER, ACCOUNT_SYNTHETIC = "lobster", "taker", "synthetic"
REASONS = ("seed", "unseen", "resize", "requeue", "stale_ahead", "missing", "excess", "absent", "deep")
# Liquidity the importer adds for these reasons takes the ids of orders never submitted in
# the file that a message names first at its price and side within NAMED_HORIZON rows
# (`add`). Not `deep`: a level beyond the window is a guess the next rows often undo, and an
# id cancelled before its first naming cannot be placed again (a `new` id is used once), so
# that message would find no order. Measured on the samples: with `deep`, or with no
# horizon, a few dozen to a few hundred messages lose their order (docs/import-lobster.md).
NAMED_REASONS = ("seed", "missing")
NAMED_HORIZON = 100

Levels = list[tuple[int, int]]


def top_levels(matcher: Matcher, symbol: str, side: int, n: int) -> Levels:
    """Our best `n` levels of one side as (price_ticks, qty_lots), best first. O(P log P)
    in C (a few hundred live levels: faster than a Python heap walk)."""
    book = matcher.books[symbol]
    if side == BUY:
        levels = book.bids
        return [(p, levels[p].qty) for p in sorted(levels, reverse=True)[:n]]
    levels = book.asks
    return [(p, levels[p].qty) for p in sorted(levels)[:n]]


def undo_first(asks: Levels, bids: Levels, msg: Message, grid: Grid, levels: int) -> tuple[Levels, Levels]:
    """The top levels before message 1: orderbook row 1 with message 1's size change undone."""
    if msg.kind not in (1, 2, 3, 4):
        return asks, bids
    price, qty = msg.price // grid.units_per_tick, msg.size // grid.shares_per_lot
    book = dict(bids if msg.side == BUY else asks)
    book[price] = book.get(price, 0) + (-qty if msg.kind == 1 else qty)
    if book[price] <= 0:
        del book[price]
    ordered = sorted(book.items(), reverse=msg.side == BUY)[:levels]
    return (asks, ordered) if msg.side == BUY else (ordered, bids)


class Reconstruction:
    """Our matcher's book, the instructions that drive it, and the alignment to the
    recording (module docstring)."""

    def __init__(self, out: OrdersOut, symbol: str, levels: int, look: Lookahead) -> None:
        self.out = out
        self.matcher = out.matcher
        self.book = self.matcher.books[symbol]
        self.symbol = symbol
        self.levels = levels
        self.look = look
        self.next_id = SYNTHETIC_ID_BASE
        self.placed: set[int] = set()  # unseen ids placed once (a `new` id is used once)
        self.consumed: dict[int, int] = {}  # unseen id -> lots messages have named so far
        self.unseen_pos: dict[tuple[int, int], int] = {}  # (side, price) -> next in look.unseen_at
        self.skipped = 0  # 2/3 messages naming an order not on our book
        self.executions_own = 0  # visible executions of orders submitted in the file
        self.executions_hit = 0  # ... whose IOC filled against that same order only
        # Strict one-step matches: per side (asks, bids) and level, per level on both
        # sides, all levels; rows (after the first) with a synthetic instruction before
        # their message count as misses on every level.
        self.one_step_side = ([0] * levels, [0] * levels)
        self.one_step_level = [0] * levels
        self.one_step_all = 0
        self.corrected_rows = 0
        self.rows = 0

    def make_id(self) -> int:
        self.next_id += 1
        return self.next_id

    # ------------------------------------------------------------ messages

    def apply(self, msg: Message, grid: Grid) -> None:
        """Message `msg`'s own instructions, nothing synthetic."""
        out, orders = self.out, self.matcher.orders
        price, qty = msg.price // grid.units_per_tick, msg.size // grid.shares_per_lot
        ts, row = msg.ts, msg.row
        if msg.kind == 1:
            if msg.order_id in orders:
                self.skipped += 1
                return
            out.new(ts, ACCOUNT_LOBSTER, msg.order_id, msg.side, GTC, price, qty, row, None)
        elif msg.kind in (2, 3):
            order = orders.get(msg.order_id)
            if order is None:
                self.skipped += 1
            elif msg.kind == 3 or order.qty <= qty:
                out.cancel(ts, order.account, msg.order_id, row, None)
            else:
                out.amend(ts, order.account, msg.order_id, order.qty - qty, row, None)
        elif msg.kind == 4:
            own = msg.order_id in self.look.last_ref and msg.order_id not in self.look.unseen
            self.matcher.out.clear()
            out.new(ts, ACCOUNT_TAKER, self.make_id(), SELL if msg.side == BUY else BUY, IOC, price, qty, row, None)
            if own:
                self.executions_own += 1
                fills = [r for r in self.matcher.out if r[0] == FILL]
                if fills and all(f[7] == msg.order_id for f in fills) and sum(f[4] for f in fills) == qty:
                    self.executions_hit += 1
        self.matcher.out.clear()

    def correct(self, msg: Message, grid: Grid, ts: int, row: int) -> None:
        """Before message `msg` names an order, fix what our book holds for it without
        changing any level's total, emitted with `ts` and `source_row` `row` (the row the
        book already equals): `unseen` and `resize` (`prepare`), then, for an execution,
        the orders ahead of the executed one at its price: `requeue` those a later message
        names (real orders, only our queue order is wrong: an amend to qty + 1 sends an
        order to the back, a second amend restores its qty), cancel the others as
        `stale_ahead` and put their total back behind the executed order as one
        `missing` order (the recording still shows it)."""
        if msg.kind not in (2, 3, 4):
            return
        price, qty = msg.price // grid.units_per_tick, msg.size // grid.shares_per_lot
        self.prepare(msg, price, qty, ts, row)
        if msg.kind != 4:
            return
        order = self.matcher.orders.get(msg.order_id)
        if order is None or order.level is None or order.price != price or order.side != msg.side:
            return
        ahead = []
        for oid, other in order.level.orders.items():
            if oid == msg.order_id:
                break
            ahead.append((oid, other.account, other.qty))
        last_ref = self.look.last_ref
        stale = 0
        for oid, account, q in ahead:
            if last_ref.get(oid, 0) > msg.row:
                self.out.amend(ts, account, oid, q + 1, row, "requeue")
                self.out.amend(ts, account, oid, q, row, "requeue")
            else:
                stale += q
                self.out.cancel(ts, account, oid, row, "stale_ahead")
        if stale:
            self.add(ts, row, msg.side, price, stale, "missing")

    def prepare(self, msg: Message, price: int, qty: int, ts: int, emit: int) -> None:
        """The level-neutral fixes of the order a message names (emitted at row `emit`):
        - `unseen`: an order never submitted in the file and not on our book takes the
          place of liquidity at its price that no later message names;
        - `resize`: the order's open qty is set to what the message says it has (a delete
          removes all of it, an execution needs at least its size), the difference taken
          from or given to other liquidity at that price."""
        oid, row = msg.order_id, msg.row
        levels = self.book.bids if msg.side == BUY else self.book.asks
        level = levels.get(price)
        unseen_lots = self.look.unseen.get(oid)  # what the messages take from it, if unseen
        left = 0
        if unseen_lots is not None:
            left = unseen_lots - self.consumed.get(oid, 0)
            self.consumed[oid] = self.consumed.get(oid, 0) + qty
        order = self.matcher.orders.get(oid)
        if level is None:
            return
        if order is None:
            if unseen_lots is None or oid in self.placed:
                return
            want = qty if msg.kind == 3 else max(left, qty)
            taken = self.reduce(ts, row, level, want, "unseen", dead_only=True, emit=emit)
            if taken:
                self.placed.add(oid)
                self.out.new(ts, ACCOUNT_SYNTHETIC, oid, msg.side, GTC, price, taken, emit, "unseen")
            return
        if order.price != price or order.side != msg.side:
            return
        if order.qty < qty and msg.kind in (3, 4):
            taken = self.reduce(ts, row, level, qty - order.qty, "resize", keep=oid, dead_only=True, emit=emit)
            if taken:
                self.out.amend(ts, order.account, oid, order.qty + taken, emit, "resize")
        elif order.qty > qty and msg.kind == 3:
            extra = order.qty - qty
            self.out.amend(ts, order.account, oid, qty, emit, "resize")
            self.out.new(ts, ACCOUNT_SYNTHETIC, self.make_id(), msg.side, GTC, price, extra, emit, "resize")

    # ------------------------------------------------------------ alignment

    def score(self, asks: Levels, bids: Levels, corrected: bool) -> bool:
        """Count the strict one-step matches of this row: our book now (the book that
        matched the previous row plus this row's message alone) against the recorded row,
        per side and level; a row whose message needed a synthetic instruction before it
        (`corrected`) misses on every level. True when every level matched."""
        n = self.levels
        ours = (top_levels(self.matcher, self.symbol, SELL, n), top_levels(self.matcher, self.symbol, BUY, n))
        recorded = (asks, bids)
        self.rows += 1
        self.corrected_rows += corrected
        all_ok = not corrected
        for j in range(n):
            both = not corrected
            for s in (0, 1):
                a = ours[s][j] if j < len(ours[s]) else None
                b = recorded[s][j] if j < len(recorded[s]) else None
                if a == b and not corrected:
                    self.one_step_side[s][j] += 1
                else:
                    both = all_ok = False
            self.one_step_level[j] += both
        self.one_step_all += all_ok
        return all_ok

    def align(self, ts: int, row: int, asks: Levels, bids: Levels, *, reason_add: str = "missing",
              upcoming: tuple[Levels, Levels] | None = None) -> None:
        """Emit the synthetic instructions that make our top L equal the recorded row."""
        adds = []
        for side, recorded, levels in ((SELL, asks, self.book.asks), (BUY, bids, self.book.bids)):
            want = dict(recorded)
            in_window = sorted(levels, reverse=side == BUY)
            if len(recorded) == self.levels:  # a full window: what lies beyond is unknown here
                worst, sign = recorded[-1][0], (1 if side == SELL else -1)
                end = 0
                while end < len(in_window) and (in_window[end] - worst) * sign <= 0:
                    end += 1
                del in_window[end:]
            for p in in_window:
                have = levels[p].qty
                target = want.get(p, 0)
                if have > target:
                    self.reduce(ts, row, levels[p], have - target, "excess" if target else "absent")
            for p, q in recorded:
                level = levels.get(p)
                have = level.qty if level is not None else 0
                if have < q:
                    adds.append((side, p, q - have))
        for side, p, q in adds:
            self.add(ts, row, side, p, q, reason_add)
        if upcoming is not None:
            self.align_deep(ts, row, asks, bids, upcoming)

    def align_deep(self, ts: int, row: int, asks: Levels, bids: Levels, upcoming: tuple[Levels, Levels]) -> None:
        """Set what we hold just beyond a full window from the next recorded row: a level
        that row shows beyond this row's worst level is book that was already there (one
        message changes one order, inside the window), so hold it now, where it cannot
        show; if the next row's side is not full, the book held nothing beyond."""
        for side, recorded, following, levels in ((SELL, asks, upcoming[0], self.book.asks),
                                                  (BUY, bids, upcoming[1], self.book.bids)):
            if len(recorded) < self.levels:
                continue
            worst = recorded[-1][0]
            sign = 1 if side == SELL else -1
            beyond = [(p, q) for p, q in following if (p - worst) * sign > 0]
            if len(following) == self.levels and not beyond:
                continue
            want = dict(beyond)
            limit = beyond[-1][0] if beyond else None
            ours = sorted((p for p in levels if (p - worst) * sign > 0
                           and (limit is None or (p - limit) * sign <= 0)), key=lambda p: p * sign)
            for p in ours:
                have, target = levels[p].qty, want.get(p, 0)
                if have > target:
                    self.reduce(ts, row, levels[p], have - target, "deep")
            for p, q in beyond:
                level = levels.get(p)
                have = level.qty if level is not None else 0
                if have < q:
                    self.add(ts, row, side, p, q - have, "deep")

    def reduce(self, ts: int, row: int, level, qty: int, reason: str, *, keep: int | None = None,
               dead_only: bool = False, emit: int | None = None) -> int:
        """Take up to `qty` lots off one of our levels: orders no message after row `row`
        names first (oldest first), then (unless `dead_only`) the others (newest first);
        never order `keep`. Emitted at row `emit` (default `row`). Returns the lots taken."""
        last_ref = self.look.last_ref
        emit = row if emit is None else emit
        orders = [o for o in level.orders.values() if o.order_id != keep]
        victims = [o for o in orders if last_ref.get(o.order_id, 0) <= row]
        if not dead_only:
            # Orders never submitted in the file and not yet named (placed ahead of their
            # first naming: `add`), the one named last first; then the others, newest first.
            first_named = self.look.first_named
            early = sorted((o for o in orders if first_named.get(o.order_id, 0) > row),
                           key=lambda o: -first_named[o.order_id])
            victims += early
            victims += [o for o in reversed(orders) if last_ref.get(o.order_id, 0) > row
                        and first_named.get(o.order_id, 0) <= row]
        wanted = qty
        for order in victims:
            if qty <= 0:
                break
            if order.qty <= qty:
                qty -= order.qty
                self.out.cancel(ts, order.account, order.order_id, emit, reason)
            else:
                self.out.amend(ts, order.account, order.order_id, order.qty - qty, emit, reason)
                qty = 0
        return wanted - qty

    def add(self, ts: int, row: int, side: int, price: int, qty: int, reason: str) -> None:
        """Add `qty` lots at `price`. For NAMED_REASONS, first as the orders never submitted
        in the file that a message within NAMED_HORIZON rows names first at this price and
        side (in the order of that naming, each sized to what the messages take from it, at
        most what is left to add); the rest as one anonymous synthetic order (an unseen
        order that a later message names takes its place then: `prepare`)."""
        key = (side, price)
        queue = self.look.unseen_at.get(key) if reason in NAMED_REASONS else None
        if queue:
            pos = self.unseen_pos.get(key, 0)
            first_named, lots = self.look.first_named, self.look.unseen
            done = row - 1 if reason == "seed" else row  # the last message applied
            while qty > 0 and pos < len(queue):
                oid = queue[pos]
                if oid in self.placed or first_named[oid] <= done:
                    pos += 1  # placed already, or its first naming has passed
                    continue
                if first_named[oid] > done + NAMED_HORIZON:
                    break
                take = min(qty, lots[oid])
                self.placed.add(oid)
                self.out.new(ts, ACCOUNT_SYNTHETIC, oid, side, GTC, price, take, row, reason)
                qty -= take
                pos += 1
            self.unseen_pos[key] = pos
        if qty > 0:
            self.out.new(ts, ACCOUNT_SYNTHETIC, self.make_id(), side, GTC, price, qty, row, reason)

    def check(self, row: int, asks: Levels, bids: Levels) -> None:
        """Raise unless our top L equals the recorded row (a bug in `align` otherwise)."""
        n = self.levels
        ours = (top_levels(self.matcher, self.symbol, SELL, n), top_levels(self.matcher, self.symbol, BUY, n))
        if ours != (asks, bids):
            raise BacktestError(f"lobster alignment failed (a bug): row={row}, ours={ours}, "
                                f"recorded={(asks, bids)}")
