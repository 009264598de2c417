"""A market-data book: recorded market-by-price liquidity owned by the `market` account, with
our accounts' orders resting beside it (DESIGN.md "Two kinds of replay", mode 2).

The recording says how much rests at each price (`depth` rows: absolute level sizes) and
what traded (`trades` rows); it has no orders. `MarketMatcher` keeps, per price level:

- `recorded`: the size the recording last gave;
- `taken`: what our takers took from it. It stays taken until the recording shows the
  level shrinking past it: `taken = min(taken, recorded)` after every depth row, so a level
  we emptied does not refill from an update that merely repeats the old size, and new size
  beyond what we took is available again. `visible = recorded - taken` is what can trade;
- our resting orders, in time priority, each with `ahead`: the visible market lots in
  front of it. An order joins behind everything visible at its price (`ahead = visible`).

What moves an order up the queue (the queue model, `front` or `proportional`):
- a recorded trade at its price advances it by the trade's qty, less what the trade
  filled of our orders at better prices on its way (trades eat the front);
- a recorded decrease of its level by d lots advances it by d (`front`: every decrease
  comes from the front of the queue) or by floor(d x ahead / recorded-before)
  (`proportional`: a decrease is spread over the queue, so the part in front of the order
  is in proportion to its place; rounded down, the order advances less). A recorded trade
  has already advanced the queue, so the depth decrease that follows it is not counted
  twice: each level keeps the qty traded at it since its last depth row, and a decrease
  first uses that credit up (any depth row of the level then clears it);
- `ahead` never exceeds the level's visible lots.

What fills our resting orders, with `market` as the taker (order id 0), at our price:
- a recorded trade: an aggressive sell of q lots at price p fills our bids priced above p
  (it must have passed through them) and, at p, whatever of q is left once the queue ahead
  is used up, in price-time order, never more than q in all; buys mirror this;
- a crossing update: a depth row that makes visible recorded liquidity cross our resting
  orders (an ask recorded at or below our bid) fills them, in price-time order, up to that
  level's visible lots, which are then taken.

Our takers (orders, and clearing's liquidation orders through `take`) walk the opposite
side in price order; within a level, the visible market lots ahead of each of our resting
orders come first, then that order, and the market lots behind all of ours last. What they
take from the market adds to the level's `taken` and advances our orders behind it.

Output records are the engine's (matching/engine.py's module doc), with the market's
liquidity as maker or taker order id 0 of account `market` (MARKET_ACCOUNT); its `filled`
events carry the level's visible lots left (as maker) or 0 (as taker). Every other rule
(door checks, post-only, IOC/FOK/market, self-trade prevention, amend) is the engine's:
`new_order`, `amend` and `take` repeat the engine's control flow over this book on purpose
(the engine is a compiled final class whose hot path takes no hooks), and
tests/matching/test_market_book.py holds them equal record for record when nothing is
recorded.

Snapshots (`depth` rows with snapshot = true): consecutive snapshot rows of a symbol with
one ts replace its recorded book: the levels the snapshot does not name are set to 0 when
its last row is applied (`end_snapshot`), each named level goes through the usual update
(so `taken` persists when the snapshot repeats a size).
"""

from __future__ import annotations

from collections.abc import Mapping

from sortedcontainers import SortedDict

from matching.engine import Matcher, SymbolRules
from matching.types import (
    ACCEPTED,
    AMENDED,
    BUY,
    CANCELLED,
    EXPIRED,
    FILL,
    FOK,
    GTC,
    LIMIT,
    MARKET,
    POST_ONLY,
    R_FOK_UNFILLABLE,
    R_INVALID_PRICE,
    R_INVALID_QTY,
    R_IOC_REMAINDER,
    R_NO_LIQUIDITY,
    R_OFF_TICK,
    R_SELF_TRADE,
    R_UNKNOWN_ORDER,
    R_USER,
    R_WOULD_CROSS,
    REJECTED,
    SELL,
    STP_CANCEL_MAKER,
    STP_CANCEL_TAKER,
    STP_NONE,
)

MARKET_ACCOUNT = "market"
MARKET_ORDER_ID = 0  # the recorded liquidity's order id in fills and order events
QUEUE_MODELS = ("front", "proportional")
R_RESERVED_ORDER_ID = "reserved_order_id"  # order id 0 names the recorded liquidity


class MarketOrder:
    """One of our resting orders in a market-data book."""

    __slots__ = ("order_id", "account", "side", "price", "qty", "stp", "post_only", "book",
                 "level", "ahead")

    def __init__(self, order_id: int, account: str, side: int, price: int, qty: int, stp: int,
                 post_only: bool, book: MarketBook) -> None:
        self.order_id = order_id
        self.account = account
        self.side = side
        self.price = price
        self.qty = qty  # open lots
        self.stp = stp
        self.post_only = post_only
        self.book = book
        self.level: MarketLevel | None = None
        self.ahead = 0  # visible market lots in front of it


class MarketLevel:
    """One price of one side: the recording's size, what we took, and our orders."""

    __slots__ = ("price", "recorded", "taken", "traded", "orders", "qty")

    def __init__(self, price: int) -> None:
        self.price = price
        self.recorded = 0  # lots, as the recording last gave
        self.taken = 0  # lots our takers took, <= recorded
        self.traded = 0  # recorded trade lots here since the last depth row (queue credit)
        self.orders: dict[int, MarketOrder] = {}  # ours, insertion order = time priority
        self.qty = 0  # lots of our orders

    @property
    def visible(self) -> int:
        return self.recorded - self.taken


class MarketBook:
    """Both sides of one symbol; a side is a SortedDict price -> MarketLevel."""

    __slots__ = ("symbol", "bids", "asks", "snapshot_open", "stale")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.bids: SortedDict = SortedDict()
        self.asks: SortedDict = SortedDict()
        self.snapshot_open = False
        self.stale: set[tuple[int, int]] = set()  # (side, price) an open snapshot has not named

    def side(self, side: int) -> SortedDict:
        return self.bids if side == BUY else self.asks

    def in_priority(self, side: int):
        """Levels of one side, best first (a live view: do not change the side while
        walking it without restarting)."""
        levels = self.bids if side == BUY else self.asks
        return reversed(levels.values()) if side == BUY else iter(levels.values())

    def best(self, side: int) -> tuple[int | None, int]:
        """(price, lots) of the best level of `side` that has anything to trade (visible
        market lots or ours), or (None, 0)."""
        for level in self.in_priority(side):
            total = level.recorded - level.taken + level.qty
            if total:
                return level.price, total
        return None, 0

    def best_bid(self) -> int | None:
        return self.best(BUY)[0]

    def best_ask(self) -> int | None:
        return self.best(SELL)[0]

    def levels_in_priority(self, side: int) -> list[tuple[int, int, int]]:
        """(price, lots, order count) of every level with something to trade, best first:
        lots = visible market lots + ours; the market's visible lots count as one order."""
        rows = []
        for level in self.in_priority(side):
            visible = level.recorded - level.taken
            if visible or level.qty:
                rows.append((level.price, visible + level.qty, len(level.orders) + (1 if visible else 0)))
        return rows


def _makers(level: MarketLevel) -> list[tuple[int, object]]:
    """What a taker meets at `level`, in order: (lots, maker) with maker None for visible
    market lots, else our order: the market lots ahead of each of our orders, the order,
    then the market lots behind all of ours. Zero-lot chunks are left out."""
    out: list[tuple[int, object]] = []
    passed = 0  # market lots listed so far
    for order in level.orders.values():
        if order.ahead > passed:
            out.append((order.ahead - passed, None))
            passed = order.ahead
        out.append((order.qty, order))
    rest = level.recorded - level.taken - passed
    if rest > 0:
        out.append((rest, None))
    return out


class MarketMatcher:
    """Our orders against recorded liquidity, symbol by symbol. The interface the replay
    uses is the engine's (`new_order`, `cancel`, `amend`, `take`, `door_check`, `orders`,
    `books`, `out`), plus `depth`, `end_snapshot`, `trade` and `queue`."""

    def __init__(self, symbols: Mapping[str, SymbolRules], queue_model: str = "front") -> None:
        if queue_model not in QUEUE_MODELS:
            raise ValueError(f"queue model {queue_model!r}: one of {', '.join(QUEUE_MODELS)}")
        self.queue_model = queue_model
        self.books: dict[str, MarketBook] = {s: MarketBook(s) for s in sorted(symbols)}
        self._steps = {s: (r.price_step, r.qty_step) for s, r in symbols.items()}
        self.orders: dict[int, MarketOrder] = {}
        self.out: list[tuple] = []
        self.open_snapshots = 0  # symbols with a snapshot begun and not yet ended
        # The engine's door checks, sharing our order index (its duplicate-id check).
        self._door = Matcher(symbols)
        self._door.orders = self.orders  # type: ignore[assignment]

    # ------------------------------------------------------------------ our instructions

    def door_check(self, symbol: str, order_id: int, order_type: int, tif: int,
                   price: int | None, qty: int) -> str | None:
        """The engine's door checks; order id 0 is the recorded liquidity's."""
        if order_id == MARKET_ORDER_ID:
            return R_RESERVED_ORDER_ID
        return self._door.door_check(symbol, order_id, order_type, tif, price, qty)

    def new_order(self, ts: int, account: str, symbol: str, order_id: int, side: int,
                  order_type: int, tif: int, price: int | None, qty: int, stp: int) -> None:
        out = self.out
        reason = self.door_check(symbol, order_id, order_type, tif, price, qty)
        if reason is not None:
            out.append((REJECTED, ts, account, symbol, order_id, reason, 0))
            return
        book = self.books[symbol]
        crosses = self._crosses(book, side, price)
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

    def cancel(self, ts: int, account: str, symbol: str, order_id: int, reason: str = R_USER) -> None:
        order = self.orders.get(order_id)
        if order is None or order.account != account or order.book.symbol != symbol:
            self.out.append((REJECTED, ts, account, symbol, order_id, R_UNKNOWN_ORDER, 0))
            return
        self._unlink(order)
        self.out.append((CANCELLED, ts, account, symbol, order_id, reason, 0))

    def take(self, ts: int, account: str, symbol: str, order_id: int, side: int, limit: int,
             qty: int) -> int:
        """A liquidation order (the engine's `take`): IOC up to `limit`, no door checks."""
        book = self.books[symbol]
        self.out.append((ACCEPTED, ts, account, symbol, order_id, None, qty))
        remaining = self._match(book, ts, account, symbol, order_id, side, limit, qty, STP_NONE)
        if remaining:
            self.out.append((EXPIRED, ts, account, symbol, order_id, R_IOC_REMAINDER, 0))
        return qty - remaining

    def amend_check(self, account: str, symbol: str, order_id: int, price: int | None,
                    qty: int | None) -> str | None:
        order = self.orders.get(order_id)
        if order is None or order.account != account or order.book.symbol != symbol:
            return R_UNKNOWN_ORDER
        price_step, qty_step = self._steps[symbol]
        price = order.price if price is None else price
        qty = order.qty if qty is None else qty
        if price <= 0:
            return R_INVALID_PRICE
        if price % price_step:
            return R_OFF_TICK
        if qty < 0 or qty % qty_step:
            return R_INVALID_QTY
        return None

    def amend(self, ts: int, account: str, symbol: str, order_id: int, price: int | None,
              qty: int | None) -> None:
        """The engine's amend: less qty at the same price keeps the place in the queue; more
        qty or a new price goes to the back (behind everything visible there)."""
        out = self.out
        reason = self.amend_check(account, symbol, order_id, price, qty)
        if reason is not None:
            remaining = 0 if reason == R_UNKNOWN_ORDER else self.orders[order_id].qty
            out.append((REJECTED, ts, account, symbol, order_id, reason, remaining))
            return
        order = self.orders[order_id]
        book = order.book
        price = order.price if price is None else price
        qty = order.qty if qty is None else qty
        if qty == 0:
            self._unlink(order)
            out.append((CANCELLED, ts, account, symbol, order_id, R_USER, 0))
            return
        level = order.level
        if price == order.price:
            if qty > order.qty:  # to the back of the level
                del level.orders[order_id]
                level.orders[order_id] = order
                order.ahead = level.recorded - level.taken
            level.qty += qty - order.qty
            order.qty = qty
            out.append((AMENDED, ts, account, symbol, order_id, None, qty))
            return
        crosses = self._crosses(book, order.side, price)
        if crosses and order.post_only:
            out.append((REJECTED, ts, account, symbol, order_id, R_WOULD_CROSS, order.qty))
            return
        self._unlink(order)
        out.append((AMENDED, ts, account, symbol, order_id, None, qty))
        if crosses:
            qty = self._match(book, ts, account, symbol, order_id, order.side, price, qty, order.stp)
            if not qty:
                return
        self._rest(book, order_id, account, order.side, price, qty, order.stp, order.post_only)

    # ------------------------------------------------------------------ the recording

    def depth(self, ts: int, symbol: str, side: int, price: int, qty: int, snapshot: bool = False) -> None:
        """One `depth` row: the recorded size of (side, price) is now `qty` (0 removes it).
        A snapshot row opens the symbol's snapshot if none is open; call `end_snapshot`
        after its last row. May fill our orders the update crosses (records in `out`)."""
        book = self.books[symbol]
        if snapshot:
            if not book.snapshot_open:
                book.snapshot_open = True
                self.open_snapshots += 1
                book.stale = {(s, p) for s in (BUY, SELL) for p, lv in book.side(s).items() if lv.recorded}
            book.stale.discard((side, price))
        self._set(ts, book, side, price, qty)

    def end_snapshot(self, ts: int, symbol: str) -> None:
        """Close the symbol's open snapshot: the levels it did not name are removed."""
        book = self.books[symbol]
        if not book.snapshot_open:
            return
        for side, price in sorted(book.stale):
            self._set(ts, book, side, price, 0)
        book.stale = set()
        book.snapshot_open = False
        self.open_snapshots -= 1

    def trade(self, ts: int, symbol: str, price: int, qty: int, aggressor: int) -> None:
        """One recorded trade: `qty` lots at `price`, the aggressor buying (BUY) or selling.
        Fills our resting orders it passed through, and at `price` those the queue ahead no
        longer covers (module doc); advances the queue at `price`."""
        book = self.books[symbol]
        maker_side = SELL if aggressor == BUY else BUY
        levels = book.side(maker_side)
        left = qty
        # Our orders priced better than the trade: the aggressor passed through them.
        if aggressor == BUY:
            through = [lv for lv in levels.values()[:levels.bisect_left(price)] if lv.orders]
        else:
            through = [lv for lv in reversed(levels.values()[levels.bisect_right(price):]) if lv.orders]
        for level in through:
            for order in list(level.orders.values()):
                if not left:
                    break
                left -= self._fill_ours(ts, book, order, min(left, order.qty), aggressor)
        level = levels.get(price)
        if level is None:
            return
        level.traded += qty
        used = 0  # market lots ahead that the trade used
        for order in list(level.orders.values()):
            ahead = order.ahead - used
            if ahead > 0:
                step = min(left, ahead)
                used += step
                left -= step
            if not left:
                break
            left -= self._fill_ours(ts, book, order, min(left, order.qty), aggressor)
        if used:
            for order in level.orders.values():
                order.ahead = max(0, order.ahead - used)

    # ------------------------------------------------------------------ queries

    def queue(self, symbol: str, selling: bool, limit: int) -> list[tuple[int, int]]:
        """(price, lots) of what a taker at `limit` would meet, in the order it would meet
        it: the fills it would make, one per maker chunk (Replay's sweep sizing)."""
        book = self.books[symbol]
        rows = []
        for level in book.in_priority(BUY if selling else SELL):
            if (level.price < limit) if selling else (level.price > limit):
                break
            rows += [(level.price, lots) for lots, _ in _makers(level)]
        return rows

    def depth_near(self, symbol: str, low: int, high: int) -> tuple[int, int]:
        """Lots to trade (visible market + ours) on bids priced >= low and asks <= high."""
        book = self.books[symbol]
        bids = sum(lv.recorded - lv.taken + lv.qty for lv in book.bids.values()[book.bids.bisect_left(low):])
        asks = sum(lv.recorded - lv.taken + lv.qty for lv in book.asks.values()[:book.asks.bisect_right(high)])
        return bids, asks

    def check_invariants(self) -> None:
        for book in self.books.values():
            for side in (BUY, SELL):
                for price, level in book.side(side).items():
                    assert level.price == price
                    assert 0 <= level.taken <= level.recorded, (price, level.taken, level.recorded)
                    assert level.recorded or level.orders, f"empty level kept: {price}"
                    assert level.qty == sum(o.qty for o in level.orders.values())
                    last = 0
                    for order in level.orders.values():
                        assert order.level is level and order.qty > 0
                        assert last <= order.ahead <= level.recorded - level.taken, (order.ahead, last)
                        last = order.ahead
            ours_bid = max((p for p, lv in book.bids.items() if lv.orders), default=None)
            ours_ask = min((p for p, lv in book.asks.items() if lv.orders), default=None)
            best_bid, best_ask = book.best_bid(), book.best_ask()
            # Our orders never rest crossed with anything tradable.
            assert ours_bid is None or best_ask is None or ours_bid < best_ask, (ours_bid, best_ask)
            assert ours_ask is None or best_bid is None or ours_ask > best_bid, (ours_ask, best_bid)

    # ------------------------------------------------------------------ internals

    def _crosses(self, book: MarketBook, side: int, price: int | None) -> bool:
        best = book.best(SELL if side == BUY else BUY)[0]
        if best is None:
            return False
        return price is None or (best <= price if side == BUY else best >= price)

    def _rest(self, book: MarketBook, order_id: int, account: str, side: int, price: int,
              qty: int, stp: int, post_only: bool) -> None:
        levels = book.side(side)
        level = levels.get(price)
        if level is None:
            level = levels[price] = MarketLevel(price)
        order = MarketOrder(order_id, account, side, price, qty, stp, post_only, book)
        order.ahead = level.recorded - level.taken
        order.level = level
        level.orders[order_id] = order
        level.qty += qty
        self.orders[order_id] = order

    def _unlink(self, order: MarketOrder) -> None:
        level = order.level
        del level.orders[order.order_id]
        level.qty -= order.qty
        order.level = None
        del self.orders[order.order_id]
        if not level.orders and not level.recorded:
            del order.book.side(order.side)[level.price]

    def _fill_ours(self, ts: int, book: MarketBook, order: MarketOrder, lots: int, aggressor: int) -> int:
        """The market (taker, order id 0) fills `lots` of our resting order at its price."""
        order.qty -= lots
        level = order.level
        level.qty -= lots
        self.out.append((FILL, ts, book.symbol, order.price, lots, aggressor, MARKET_ORDER_ID,
                         order.order_id, MARKET_ACCOUNT, order.account, 0, order.qty))
        if not order.qty:
            self._unlink(order)
        return lots

    def _set(self, ts: int, book: MarketBook, side: int, price: int, qty: int) -> None:
        levels = book.side(side)
        level = levels.get(price)
        if level is None:
            if not qty:
                return
            level = levels[price] = MarketLevel(price)
        old = level.recorded
        credit, level.traded = level.traded, 0
        if qty < old and level.orders:
            advance = max(0, old - qty - credit)
            if advance:
                proportional = self.queue_model == "proportional"
                for order in level.orders.values():
                    if proportional:
                        order.ahead -= advance * order.ahead // old
                    else:
                        order.ahead = max(0, order.ahead - advance)
        level.recorded = qty
        if level.taken > qty:
            level.taken = qty
        visible = qty - level.taken
        for order in level.orders.values():
            if order.ahead > visible:
                order.ahead = visible
        if not qty and not level.orders:
            del levels[price]
            return
        if visible and qty > old:
            self._cross(ts, book, side, level)

    def _cross(self, ts: int, book: MarketBook, side: int, level: MarketLevel) -> None:
        """Recorded liquidity at `level` (side `side`) that crosses our resting orders on
        the other side trades with them: the market is the taker at our prices."""
        price = level.price
        ours = book.side(SELL if side == BUY else BUY)
        if side == SELL:  # a recorded ask at or below our bids: the market sells
            crossed = [lv for lv in reversed(ours.values()[ours.bisect_left(price):]) if lv.orders]
            aggressor = SELL
        else:
            crossed = [lv for lv in ours.values()[:ours.bisect_right(price)] if lv.orders]
            aggressor = BUY
        for our_level in crossed:
            for order in list(our_level.orders.values()):
                visible = level.recorded - level.taken
                if not visible:
                    return
                lots = self._fill_ours(ts, book, order, min(visible, order.qty), aggressor)
                level.taken += lots
                for other in level.orders.values():  # our orders behind those lots advance
                    if other.ahead > level.recorded - level.taken:
                        other.ahead = level.recorded - level.taken

    def _match(self, book: MarketBook, ts: int, account: str, symbol: str, order_id: int,
               side: int, limit: int | None, qty: int, stp: int) -> int:
        """Walk the opposite side as the taker (module doc); return the qty left."""
        out = self.out
        levels = book.asks if side == BUY else book.bids
        remaining = qty
        # The prices within the limit, best first, listed once: the walk only removes
        # levels (it never adds one), so a listed price is either still there or gone.
        if side == BUY:
            prices = list(levels.irange(maximum=limit))
        else:
            prices = list(levels.irange(minimum=limit, reverse=True))
        for price in prices:
            if not remaining:
                break
            level = levels.get(price)
            if level is None or not (level.recorded - level.taken or level.qty):
                continue
            taken = 0  # market lots this walk takes at the level
            cancelled = False
            for lots, maker in _makers(level):
                if maker is None:
                    fill = min(lots, remaining)
                    taken += fill
                    remaining -= fill
                    out.append((FILL, ts, symbol, price, fill, side, order_id, MARKET_ORDER_ID,
                                account, MARKET_ACCOUNT, remaining,
                                level.recorded - level.taken - taken))
                elif maker.account == account and stp != STP_NONE:
                    if stp != STP_CANCEL_TAKER:
                        self._unlink(maker)
                        out.append((CANCELLED, ts, account, symbol, maker.order_id, R_SELF_TRADE, 0))
                    if stp != STP_CANCEL_MAKER:
                        out.append((CANCELLED, ts, account, symbol, order_id, R_SELF_TRADE, 0))
                        cancelled = True
                        break
                    continue
                else:
                    fill = min(maker.qty, remaining)
                    remaining -= fill
                    maker.qty -= fill
                    level.qty -= fill
                    out.append((FILL, ts, symbol, price, fill, side, order_id, maker.order_id,
                                account, maker.account, remaining, maker.qty))
                    if not maker.qty:
                        self._unlink(maker)
                if not remaining:
                    break
            if taken:
                level.taken += taken
                for order in level.orders.values():
                    order.ahead = max(0, order.ahead - taken)
            if not level.recorded and not level.orders and levels.get(price) is level:
                del levels[price]
            if cancelled:
                return 0
        return remaining

    def _fillable(self, book: MarketBook, account: str, side: int, limit: int | None, qty: int,
                  stp: int) -> bool:
        """Could a FOK taker fill `qty` in full? Pure (the engine's rule, market lots
        counted as another account's)."""
        need = qty
        for level in book.in_priority(SELL if side == BUY else BUY):
            if limit is not None and (level.price > limit if side == BUY else level.price < limit):
                return False
            for lots, maker in _makers(level):
                if maker is not None and maker.account == account and stp != STP_NONE:
                    if stp == STP_CANCEL_MAKER:
                        continue
                    return False
                need -= lots
                if need <= 0:
                    return True
        return False
