"""The matching engine: instructions in, order events and fills out.

Semantics (the contract is DESIGN.md's `orders` table and Outputs; `docs/events.md` lists
every event an instruction can produce, in order):
- Price-time priority; a fill is at the maker's price; quantities are whole lots.
- `new` passes the door checks in this order: symbol known, price (a limit needs a price
  > 0 on the instrument's price step; a market order has none), qty (> 0, a whole number of
  the lot step), min qty, order id not live. A failure is one `rejected` event, nothing else.
- post_only: `rejected` (would_cross) if it would take liquidity, else `accepted` and rests.
- Every other accepted order gets `accepted`, then matches as the taker: a fill row plus a
  `filled` event for the taker and then for the maker, per maker order touched.
  A GTC limit rests its remainder; IOC and market expire it (`expired`, ioc_remainder;
  no_liquidity when a market order meets an empty side); FOK first checks, without touching
  the book, that it can fill in full, else it `expired` (fok_unfillable) with nothing done.
- `cancel` of a live order of the same account and symbol: `cancelled` (user); otherwise
  `rejected` (unknown_order).
- `amend` sets a new open qty and/or price: qty 0 cancels; the same price with less qty
  keeps queue position; more qty or a new price goes to the back of the level; a new price
  that crosses trades as the taker (after `amended`) and rests what is left. A post-only
  order's amend that would cross is `rejected` (would_cross) and the order is unchanged.
- Self-trade prevention: the taker's `stp` decides, checked against each maker it would
  trade with. cancel_maker cancels that maker and keeps matching; cancel_taker cancels the
  taker's remainder; cancel_both does both; none lets the account trade with itself.

Output: `Matcher.out` is a list of records in emission order (a record's place in the run's
output is its sequence number). An order event is
    (event, ts_ns, account, symbol, order_id, reason | None, remaining_qty)
and a fill is
    (FILL, ts_ns, symbol, price_ticks, qty_lots, aggressor_side, taker_order_id,
     maker_order_id, taker_account, maker_account, taker_remaining, maker_remaining)
which stands for three output rows in this order: the fills row, the taker's `filled`
event and the maker's `filled` event (`matching.records.expand` writes them out). Records
are tuples: one allocation per record, no dicts, nothing else per event; a fill costs one
record, not three (measured: about a quarter of the realistic stream's records are fills).
The owner drains `out` (reads, then clears it) as often as it likes; the matcher only
appends.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from matching.book import Book, Level, Order, make_order
from matching.types import (
    ACCEPTED,
    AMENDED,
    BUY,
    CANCELLED,
    EXPIRED,
    FILL,
    FILLED,
    FOK,
    GTC,
    LIMIT,
    MARKET,
    NEW,
    CANCEL,
    POST_ONLY,
    R_BELOW_MIN_QTY,
    R_DUPLICATE_ORDER_ID,
    R_FOK_UNFILLABLE,
    R_INVALID_ORDER,
    R_INVALID_PRICE,
    R_INVALID_QTY,
    R_IOC_REMAINDER,
    R_NO_LIQUIDITY,
    R_OFF_TICK,
    R_SELF_TRADE,
    R_UNKNOWN_ORDER,
    R_UNKNOWN_SYMBOL,
    R_USER,
    R_WOULD_CROSS,
    REJECTED,
    SELL,
    STP_CANCEL_MAKER,
    STP_CANCEL_TAKER,
    STP_NONE,
)


@dataclass(frozen=True, slots=True)
class SymbolRules:
    """What the matcher checks at the door for one symbol (prices in ticks, qty in lots)."""

    price_step: int = 1  # a limit price must be a multiple of this many ticks
    qty_step: int = 1  # a qty must be a multiple of this many lots
    min_qty: int = 1  # lots


class Matcher:
    """Books for every symbol of a dataset and the instruction handlers that change them."""

    def __init__(self, symbols: Mapping[str, SymbolRules]) -> None:
        self.books: dict[str, Book] = {}
        # symbol -> (book, price_step, qty_step, min_qty): one lookup per instruction.
        self._specs: dict[str, tuple[Book, int, int, int]] = {}
        for symbol in sorted(symbols):
            rules = symbols[symbol]
            book = Book(symbol)
            self.books[symbol] = book
            self._specs[symbol] = (book, rules.price_step, rules.qty_step, rules.min_qty)
        self.orders: dict[int, Order] = {}  # order_id -> resting order, all symbols
        self.out: list[tuple] = []  # emitted records, see the module docstring
        self._done: list[int] = []  # scratch: makers to unlink after a level is walked

    # ------------------------------------------------------------------ instructions

    def new_order(
        self,
        ts: int,
        account: str,
        symbol: str,
        order_id: int,
        side: int,
        order_type: int,
        tif: int,
        price: int | None,
        qty: int,
        stp: int,
    ) -> None:
        """Accept or reject a new order, match it, rest or expire what is left."""
        out = self.out
        reason = self.door_check(symbol, order_id, order_type, tif, price, qty)
        if reason is not None:
            out.append((REJECTED, ts, account, symbol, order_id, reason, 0))
            return
        book = self.books[symbol]
        if side == BUY:
            heap = book.ask_heap
            crosses = bool(heap) and (price is None or heap[0] <= price)
        else:
            heap = book.bid_heap
            crosses = bool(heap) and (price is None or -heap[0] >= price)

        if tif == POST_ONLY:
            if crosses:
                out.append((REJECTED, ts, account, symbol, order_id, R_WOULD_CROSS, 0))
                return
            out.append((ACCEPTED, ts, account, symbol, order_id, None, qty))
            self._rest(book, order_id, account, side, price, qty, stp, True)
            return

        out.append((ACCEPTED, ts, account, symbol, order_id, None, qty))
        if not crosses:
            if order_type == MARKET:
                out.append((EXPIRED, ts, account, symbol, order_id, R_NO_LIQUIDITY, 0))
            elif tif == GTC:
                self._rest(book, order_id, account, side, price, qty, stp, False)
            else:
                reason = R_FOK_UNFILLABLE if tif == FOK else R_IOC_REMAINDER
                out.append((EXPIRED, ts, account, symbol, order_id, reason, 0))
            return
        if tif == FOK and not self._fillable(book, account, side, price, qty, stp):
            out.append((EXPIRED, ts, account, symbol, order_id, R_FOK_UNFILLABLE, 0))
            return
        remaining = self._match(book, ts, account, symbol, order_id, side, price, qty, stp)
        if remaining:
            if order_type == LIMIT and tif == GTC:
                self._rest(book, order_id, account, side, price, remaining, stp, False)
            else:
                out.append((EXPIRED, ts, account, symbol, order_id, R_IOC_REMAINDER, 0))

    def door_check(self, symbol: str, order_id: int, order_type: int, tif: int,
                   price: int | None, qty: int) -> str | None:
        """The reject reason of a `new` order's door checks (module doc), or None. Pure:
        a replay calls it to run its own pre-trade checks only on orders the matcher would
        accept at the door, so a venue's reasons keep their order."""
        spec = self._specs.get(symbol)
        if spec is None:
            return R_UNKNOWN_SYMBOL
        book, price_step, qty_step, min_qty = spec
        if order_type == LIMIT:
            if price is None or price <= 0:
                return R_INVALID_PRICE
            if price % price_step:
                return R_OFF_TICK
        elif price is not None:
            return R_INVALID_PRICE
        elif tif == POST_ONLY:
            return R_INVALID_ORDER
        if qty <= 0 or qty % qty_step:
            return R_INVALID_QTY
        if qty < min_qty:
            return R_BELOW_MIN_QTY
        if order_id in self.orders:
            return R_DUPLICATE_ORDER_ID
        return None

    def cancel(self, ts: int, account: str, symbol: str, order_id: int, reason: str = R_USER) -> None:
        """Cancel a live order of this account on this symbol, or reject (unknown_order).
        `reason` is the cancelled event's reason: `user` for an instruction, `liquidation`
        when clearing cancels a liquidated account's orders."""
        order = self.orders.get(order_id)
        if order is None or order.account != account or order.book.symbol != symbol:
            self.out.append((REJECTED, ts, account, symbol, order_id, R_UNKNOWN_ORDER, 0))
            return
        del self.orders[order_id]
        order.book.remove_order(order)
        self.out.append((CANCELLED, ts, account, symbol, order_id, reason, 0))

    def take(self, ts: int, account: str, symbol: str, order_id: int, side: int, limit: int,
             qty: int) -> int:
        """A liquidation order: an IOC limit that takes what the book holds up to `limit`
        and never rests, with no door checks (a liquidation is not refused for size or
        grid) and no self-trade prevention (its owner has no resting orders: they were
        cancelled first, and the fund never rests). Emits `accepted`, fills, and `expired`
        (ioc_remainder) for what is left; returns the filled qty."""
        book = self._specs[symbol][0]
        self.out.append((ACCEPTED, ts, account, symbol, order_id, None, qty))
        remaining = self._match(book, ts, account, symbol, order_id, side, limit, qty, STP_NONE)
        if remaining:
            self.out.append((EXPIRED, ts, account, symbol, order_id, R_IOC_REMAINDER, 0))
        return qty - remaining

    def amend_check(self, account: str, symbol: str, order_id: int, price: int | None,
                    qty: int | None) -> str | None:
        """The reject reason of an amend's checks (unknown_order, invalid_price, off_tick,
        invalid_qty), or None. Pure, like `door_check`."""
        order = self.orders.get(order_id)
        if order is None or order.account != account or order.book.symbol != symbol:
            return R_UNKNOWN_ORDER
        book, price_step, qty_step, _ = self._specs[symbol]
        if price is None:
            price = order.price
        if qty is None:
            qty = order.qty
        if price <= 0:
            return R_INVALID_PRICE
        if price % price_step:
            return R_OFF_TICK
        if qty < 0 or qty % qty_step:
            return R_INVALID_QTY
        return None

    def amend(
        self, ts: int, account: str, symbol: str, order_id: int, price: int | None, qty: int | None
    ) -> None:
        """Change a live order's open qty and/or price (None keeps it); see the module doc."""
        out = self.out
        reason = self.amend_check(account, symbol, order_id, price, qty)
        if reason is not None:
            order = self.orders.get(order_id)
            remaining = 0 if reason == R_UNKNOWN_ORDER else order.qty
            out.append((REJECTED, ts, account, symbol, order_id, reason, remaining))
            return
        order = self.orders[order_id]
        book = order.book
        if price is None:
            price = order.price
        if qty is None:
            qty = order.qty
        if qty == 0:
            del self.orders[order_id]
            book.remove_order(order)
            out.append((CANCELLED, ts, account, symbol, order_id, R_USER, 0))
            return
        level = order.level
        assert level is not None
        if price == order.price:
            if qty > order.qty:  # more qty: to the back of the level
                del level.orders[order_id]
                level.orders[order_id] = order
            level.qty += qty - order.qty
            order.qty = qty
            out.append((AMENDED, ts, account, symbol, order_id, None, qty))
            return
        side = order.side
        if side == BUY:
            heap = book.ask_heap
            crosses = bool(heap) and heap[0] <= price
        else:
            heap = book.bid_heap
            crosses = bool(heap) and -heap[0] >= price
        if crosses and order.post_only:
            out.append((REJECTED, ts, account, symbol, order_id, R_WOULD_CROSS, order.qty))
            return
        book.remove_order(order)
        order.price = price
        order.qty = qty
        out.append((AMENDED, ts, account, symbol, order_id, None, qty))
        if crosses:
            qty = self._match(book, ts, account, symbol, order_id, side, price, qty, order.stp)
            if not qty:
                del self.orders[order_id]
                return
            order.qty = qty
        book.add_order(order)

    def apply_columns(
        self,
        ts: list[int],
        action: list[int],
        account: list[str],
        symbol: list[str],
        order_id: list[int],
        side: list[int],
        order_type: list[int],
        tif: list[int],
        price: list[int | None],
        qty: list[int | None],
        stp: list[int],
    ) -> None:
        """Apply a batch of instructions given as columns (codes from matching.types)."""
        # Indexing (not zip): compiled, each is a direct list slot read.
        for i in range(len(ts)):
            a = action[i]
            if a == NEW:
                self.new_order(ts[i], account[i], symbol[i], order_id[i], side[i], order_type[i],
                               tif[i], price[i], qty[i], stp[i])  # type: ignore[arg-type]
            elif a == CANCEL:
                self.cancel(ts[i], account[i], symbol[i], order_id[i])
            else:
                self.amend(ts[i], account[i], symbol[i], order_id[i], price[i], qty[i])

    # ------------------------------------------------------------------ internals

    def _rest(
        self, book: Book, order_id: int, account: str, side: int, price: int | None,
        qty: int, stp: int, post_only: bool,
    ) -> None:
        """Put an accepted limit order's remainder on the book (assumes validation ran)."""
        assert price is not None
        order = make_order(order_id, account, side, price, qty, stp, post_only, book)
        self.orders[order_id] = order
        book.add_order(order)

    def _match(
        self, book: Book, ts: int, account: str, symbol: str, order_id: int, side: int,
        limit: int | None, qty: int, stp: int,
    ) -> int:
        """Match a taker against the opposite side; return the qty left to rest or expire.

        Returns 0 when the taker is filled or self-trade prevention cancelled it (the
        `cancelled` event is emitted here). `limit` None is a market order.

        Steps: take the best opposite level while it is within the limit; walk its orders
        oldest first, filling each up to the taker's remaining qty and emitting the fill,
        then the taker's and the maker's `filled`; self-trade prevention acts on makers of
        the taker's own account. Filled or cancelled makers are collected and unlinked once
        the walk ends (never mutate a dict while iterating it); an emptied level is dropped
        and the next best surfaces.
        """
        out = self.out
        index = self.orders
        done = self._done
        if side == BUY:
            levels = book.asks
            heap = book.ask_heap
            sign = 1
            maker_side = SELL
        else:
            levels = book.bids
            heap = book.bid_heap
            sign = -1
            maker_side = BUY
        limit_key = None if limit is None else limit * sign
        remaining = qty
        while remaining and heap:
            key = heap[0]
            if limit_key is not None and key > limit_key:
                break
            price = key * sign
            level: Level = levels[price]
            taker_cancelled = False
            for maker_id, maker in level.orders.items():
                maker_account = maker.account
                if maker_account == account and stp != STP_NONE:
                    if stp != STP_CANCEL_TAKER:  # cancel_maker or cancel_both
                        done.append(maker_id)
                        level.qty -= maker.qty
                        maker.level = None
                        out.append((CANCELLED, ts, maker_account, symbol, maker_id, R_SELF_TRADE, 0))
                    if stp != STP_CANCEL_MAKER:  # cancel_taker or cancel_both
                        out.append((CANCELLED, ts, account, symbol, order_id, R_SELF_TRADE, 0))
                        taker_cancelled = True
                        break
                    continue
                maker_qty = maker.qty
                fill = maker_qty if maker_qty <= remaining else remaining
                remaining -= fill
                maker_qty -= fill
                maker.qty = maker_qty
                level.qty -= fill
                out.append((FILL, ts, symbol, price, fill, side, order_id, maker_id, account,
                            maker_account, remaining, maker_qty))
                if not maker_qty:
                    done.append(maker_id)
                    maker.level = None
                if not remaining:
                    break
            if done:
                orders = level.orders
                for maker_id in done:
                    del orders[maker_id]
                    del index[maker_id]
                done.clear()
                if not orders:
                    book.remove_level(maker_side, price)
            if taker_cancelled:
                return 0
        return remaining

    def _fillable(
        self, book: Book, account: str, side: int, limit: int | None, qty: int, stp: int
    ) -> bool:
        """Could a FOK taker fill `qty` in full, self-trade prevention included? Pure.

        Makers of the taker's own account are skipped under cancel_maker (they would be
        cancelled), end the walk under cancel_taker/cancel_both (the taker would be
        cancelled first), and count under none.
        """
        need = qty
        for level in book.levels_in_priority(SELL if side == BUY else BUY):
            if limit is not None and (level.price > limit if side == BUY else level.price < limit):
                return False
            for maker in level.orders.values():
                if maker.account == account and stp != STP_NONE:
                    if stp == STP_CANCEL_MAKER:
                        continue
                    return False
                need -= maker.qty
                if need <= 0:
                    return True
        return False

