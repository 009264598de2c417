"""One symbol's limit order book: price levels in price-time priority.

Invariants (checked by `Book.check_invariants`, called after every step in the property
tests):
- each side maps price_ticks -> Level; a Level holds at least one order; its `qty` is the
  sum of its orders' open quantities, each of which is > 0;
- within a level, dict insertion order is time priority (first inserted trades first);
- the best price of each side is the top of that side's heap; every live level's price is
  in its heap (stale prices of emptied levels may linger below the top, never at it);
- the book is not crossed after an instruction completes: best bid < best ask.

Why heaps and not a sorted map: the realistic stream creates and empties levels near the
touch all the time. A heap push is one C call and an emptied level deep in the book is left
as a stale heap entry (dropped when it surfaces, or when stale entries outnumber live
levels and the heap is rebuilt), so level churn costs O(log n) in C rather than a
SortedDict insert/delete in Python. Ordered walks over many levels (FOK checks, book
snapshots) sort the live prices on demand; they are rare.

Bid heap entries are negated prices so that both heaps are min-heaps whose top is best.
"""

from __future__ import annotations

from heapq import heapify, heappop, heappush

from matching.types import BUY


class Order:
    """A resting order. Mutable: `qty` falls as it fills, amend changes price and qty."""

    __slots__ = ("order_id", "account", "side", "price", "qty", "stp", "post_only", "book", "level")

    def __init__(
        self,
        order_id: int,
        account: str,
        side: int,
        price: int,
        qty: int,
        stp: int,
        post_only: bool,
        book: Book,
    ) -> None:
        self.order_id = order_id  # unique in the dataset
        self.account = account
        self.side = side  # BUY or SELL
        self.price = price  # ticks
        self.qty = qty  # open lots, > 0 while resting
        self.stp = stp  # self-trade prevention mode when this order is the taker (amends)
        self.post_only = post_only  # an amend that would cross is rejected
        self.book = book
        self.level: Level | None = None  # the level it rests in; None once off the book


def make_order(
    order_id: int, account: str, side: int, price: int, qty: int, stp: int, post_only: bool,
    book: Book,
) -> Order:
    """A new Order, not yet on a book. Same as `Order(...)`; compiled, it skips the
    argument parsing of `__init__` (measured: about a fifth of an add's cost)."""
    order = Order.__new__(Order)
    order.order_id = order_id
    order.account = account
    order.side = side
    order.price = price
    order.qty = qty
    order.stp = stp
    order.post_only = post_only
    order.book = book
    order.level = None
    return order


class Level:
    """All resting orders at one price on one side, oldest first."""

    __slots__ = ("price", "orders", "qty")

    def __init__(self, price: int) -> None:
        self.price = price  # ticks
        self.orders: dict[int, Order] = {}  # order_id -> order, insertion order = priority
        self.qty = 0  # lots, sum of the orders' open qty


class Book:
    """Bids and asks of one symbol."""

    __slots__ = ("symbol", "bids", "asks", "bid_heap", "ask_heap")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.bids: dict[int, Level] = {}  # price_ticks -> level
        self.asks: dict[int, Level] = {}
        self.bid_heap: list[int] = []  # -price_ticks of bid levels (top = best bid)
        self.ask_heap: list[int] = []  # price_ticks of ask levels (top = best ask)

    def best_bid(self) -> int | None:
        """Highest bid price in ticks, or None for an empty side. O(1)."""
        heap = self.bid_heap
        return -heap[0] if heap else None

    def best_ask(self) -> int | None:
        """Lowest ask price in ticks, or None for an empty side. O(1)."""
        heap = self.ask_heap
        return heap[0] if heap else None

    def add_order(self, order: Order) -> None:
        """Append `order` at the back of its price level (creating the level). O(log L)."""
        price = order.price
        if order.side == BUY:
            levels = self.bids
            level = levels.get(price)
            if level is None:
                level = Level(price)
                levels[price] = level
                heappush(self.bid_heap, -price)
        else:
            levels = self.asks
            level = levels.get(price)
            if level is None:
                level = Level(price)
                levels[price] = level
                heappush(self.ask_heap, price)
        level.orders[order.order_id] = order
        level.qty += order.qty
        order.level = level

    def remove_order(self, order: Order) -> None:
        """Take a resting order off the book (cancel, or a price amend). O(1) amortised."""
        level = order.level
        assert level is not None, "remove_order of an order that is not resting"
        del level.orders[order.order_id]
        level.qty -= order.qty
        order.level = None
        if not level.orders:
            self.remove_level(order.side, level.price)

    def remove_level(self, side: int, price: int) -> None:
        """Drop an emptied level; keep the heap's top live. O(1) amortised."""
        if side == BUY:
            levels = self.bids
            heap = self.bid_heap
            key = -price
        else:
            levels = self.asks
            heap = self.ask_heap
            key = price
        del levels[price]
        if heap[0] == key:
            heappop(heap)
            # Surface the next live level: pop stale entries of levels emptied earlier.
            if side == BUY:
                while heap and -heap[0] not in levels:
                    heappop(heap)
            else:
                while heap and heap[0] not in levels:
                    heappop(heap)
        elif len(heap) > 2 * len(levels) + 64:
            # Stale entries outnumber live levels: rebuild, so memory follows live levels.
            heap[:] = [-p for p in levels] if side == BUY else list(levels)
            heapify(heap)

    def levels_in_priority(self, side: int) -> list[Level]:
        """Live levels of one side, best first. O(L log L): for rare ordered walks."""
        if side == BUY:
            return [self.bids[p] for p in sorted(self.bids, reverse=True)]
        return [self.asks[p] for p in sorted(self.asks)]

    def check_invariants(self) -> None:
        """Recompute every cached figure and verify the ordering rules; raise on a breach."""
        for side, levels, heap in ((BUY, self.bids, self.bid_heap), (1 - BUY, self.asks, self.ask_heap)):
            keys = {-k if side == BUY else k for k in heap}
            for price, level in levels.items():
                assert level.price == price, f"level keyed at {price} has price {level.price}"
                assert level.orders, f"empty level left on the book: price={price}"
                assert price in keys, f"live level missing from heap: price={price}"
                total = 0
                for oid, order in level.orders.items():
                    assert order.order_id == oid and order.level is level
                    assert order.price == price and order.side == side
                    assert order.qty > 0, f"resting order with qty {order.qty}: order_id={oid}"
                    total += order.qty
                assert total == level.qty, f"level qty {level.qty} != sum {total}: price={price}"
            if heap:
                top = -heap[0] if side == BUY else heap[0]
                assert top in levels, f"heap top {top} is not a live level"
                best = max(levels) if side == BUY else min(levels)
                assert top == best, f"heap top {top} is not the best price {best}"
            else:
                assert not levels, "levels present with an empty heap"
        bid, ask = self.best_bid(), self.best_ask()
        assert bid is None or ask is None or bid < ask, f"crossed book: bid={bid} ask={ask}"
