"""A deliberately simple reference matcher: one list of resting orders, scanned and sorted
on every instruction. No heaps, no indexes, no cleverness; written from DESIGN.md's
contract and docs/events.md, not from matching/engine.py, so the two can disagree.

It emits the same rows `matching.records.expand` produces from the real matcher:
order events (event, ts, account, symbol, order_id, reason, remaining_qty) and fills rows
("fill", ts, symbol, price, qty, aggressor_side, taker_order_id, maker_order_id,
taker_account, maker_account), followed by the taker's and the maker's `filled` events.
"""

from __future__ import annotations

from dataclasses import dataclass

BUY, SELL = 0, 1
LIMIT, MARKET = 0, 1
GTC, IOC, FOK, POST_ONLY = 0, 1, 2, 3
STP_NONE, STP_CANCEL_TAKER, STP_CANCEL_MAKER, STP_CANCEL_BOTH = 0, 1, 2, 3


@dataclass
class Resting:
    order_id: int
    account: str
    symbol: str
    side: int
    price: int
    qty: int
    stp: int
    post_only: bool
    stamp: int  # time priority: smaller is older


class NaiveMatcher:
    def __init__(self, rules: dict) -> None:
        self.rules = rules  # symbol -> SymbolRules (price_step, qty_step, min_qty)
        self.resting: list[Resting] = []
        self.rows: list[tuple] = []
        self.clock = 0

    # -- helpers
    def _stamp(self) -> int:
        self.clock += 1
        return self.clock

    def side_in_priority(self, symbol: str, side: int) -> list[Resting]:
        orders = [o for o in self.resting if o.symbol == symbol and o.side == side]
        if side == BUY:
            return sorted(orders, key=lambda o: (-o.price, o.stamp))
        return sorted(orders, key=lambda o: (o.price, o.stamp))

    def find(self, order_id: int) -> Resting | None:
        for o in self.resting:
            if o.order_id == order_id:
                return o
        return None

    @staticmethod
    def within(taker_side: int, limit: int | None, maker_price: int) -> bool:
        if limit is None:
            return True
        return maker_price <= limit if taker_side == BUY else maker_price >= limit

    def ev(self, event, ts, account, symbol, order_id, reason, remaining) -> None:
        self.rows.append((event, ts, account, symbol, order_id, reason, remaining))

    # -- instructions
    def new_order(self, ts, account, symbol, order_id, side, order_type, tif, price, qty, stp):
        rules = self.rules.get(symbol)
        if rules is None:
            return self.ev("rejected", ts, account, symbol, order_id, "unknown_symbol", 0)
        reason = None
        if order_type == LIMIT:
            if price is None or price <= 0:
                reason = "invalid_price"
            elif price % rules.price_step != 0:
                reason = "off_tick"
        else:
            if price is not None:
                reason = "invalid_price"
            elif tif == POST_ONLY:
                reason = "invalid_order"
        if reason is None:
            if qty <= 0 or qty % rules.qty_step != 0:
                reason = "invalid_qty"
            elif qty < rules.min_qty:
                reason = "below_min_qty"
            elif self.find(order_id) is not None:
                reason = "duplicate_order_id"
        if reason is not None:
            return self.ev("rejected", ts, account, symbol, order_id, reason, 0)
        opposite = self.side_in_priority(symbol, SELL if side == BUY else BUY)
        crossing = bool(opposite) and self.within(side, price, opposite[0].price)
        if tif == POST_ONLY:
            if crossing:
                return self.ev("rejected", ts, account, symbol, order_id, "would_cross", 0)
            self.ev("accepted", ts, account, symbol, order_id, None, qty)
            self.resting.append(Resting(order_id, account, symbol, side, price, qty, stp, True, self._stamp()))
            return None
        self.ev("accepted", ts, account, symbol, order_id, None, qty)
        if not crossing:
            if order_type == MARKET:
                self.ev("expired", ts, account, symbol, order_id, "no_liquidity", 0)
            elif tif == GTC:
                self.resting.append(Resting(order_id, account, symbol, side, price, qty, stp, False, self._stamp()))
            elif tif == FOK:
                self.ev("expired", ts, account, symbol, order_id, "fok_unfillable", 0)
            else:
                self.ev("expired", ts, account, symbol, order_id, "ioc_remainder", 0)
            return None
        if tif == FOK and not self.fok_can_fill(opposite, account, side, price, qty, stp):
            return self.ev("expired", ts, account, symbol, order_id, "fok_unfillable", 0)
        left = self.take(ts, account, symbol, order_id, side, price, qty, stp)
        if left > 0:
            if order_type == LIMIT and tif == GTC:
                self.resting.append(Resting(order_id, account, symbol, side, price, left, stp, False, self._stamp()))
            else:
                self.ev("expired", ts, account, symbol, order_id, "ioc_remainder", 0)
        return None

    def fok_can_fill(self, opposite, account, side, limit, qty, stp) -> bool:
        got = 0
        for maker in opposite:
            if not self.within(side, limit, maker.price):
                break
            if maker.account == account and stp != STP_NONE:
                if stp == STP_CANCEL_MAKER:
                    continue
                return False
            got += maker.qty
            if got >= qty:
                return True
        return False

    def take(self, ts, account, symbol, order_id, side, limit, qty, stp) -> int:
        """Match as the taker; return what is left (0 also when STP cancelled the taker)."""
        left = qty
        for maker in self.side_in_priority(symbol, SELL if side == BUY else BUY):
            if left == 0 or not self.within(side, limit, maker.price):
                break
            if maker.account == account and stp != STP_NONE:
                if stp in (STP_CANCEL_MAKER, STP_CANCEL_BOTH):
                    self.resting.remove(maker)
                    self.ev("cancelled", ts, maker.account, symbol, maker.order_id, "self_trade", 0)
                if stp in (STP_CANCEL_TAKER, STP_CANCEL_BOTH):
                    self.ev("cancelled", ts, account, symbol, order_id, "self_trade", 0)
                    return 0
                continue
            fill = min(left, maker.qty)
            left -= fill
            maker.qty -= fill
            self.rows.append(("fill", ts, symbol, maker.price, fill, side, order_id, maker.order_id,
                              account, maker.account))
            self.ev("filled", ts, account, symbol, order_id, None, left)
            self.ev("filled", ts, maker.account, symbol, maker.order_id, None, maker.qty)
            if maker.qty == 0:
                self.resting.remove(maker)
        return left

    def cancel(self, ts, account, symbol, order_id):
        o = self.find(order_id)
        if o is None or o.account != account or o.symbol != symbol:
            return self.ev("rejected", ts, account, symbol, order_id, "unknown_order", 0)
        self.resting.remove(o)
        self.ev("cancelled", ts, account, symbol, order_id, "user", 0)
        return None

    def amend(self, ts, account, symbol, order_id, price, qty):
        o = self.find(order_id)
        if o is None or o.account != account or o.symbol != symbol:
            return self.ev("rejected", ts, account, symbol, order_id, "unknown_order", 0)
        rules = self.rules[symbol]
        new_price = o.price if price is None else price
        new_qty = o.qty if qty is None else qty
        if new_price <= 0:
            return self.ev("rejected", ts, account, symbol, order_id, "invalid_price", o.qty)
        if new_price % rules.price_step != 0:
            return self.ev("rejected", ts, account, symbol, order_id, "off_tick", o.qty)
        if new_qty < 0 or new_qty % rules.qty_step != 0:
            return self.ev("rejected", ts, account, symbol, order_id, "invalid_qty", o.qty)
        if new_qty == 0:
            self.resting.remove(o)
            return self.ev("cancelled", ts, account, symbol, order_id, "user", 0)
        if new_price == o.price:
            if new_qty > o.qty:
                o.stamp = self._stamp()
            o.qty = new_qty
            return self.ev("amended", ts, account, symbol, order_id, None, new_qty)
        opposite = self.side_in_priority(symbol, SELL if o.side == BUY else BUY)
        crossing = bool(opposite) and self.within(o.side, new_price, opposite[0].price)
        if crossing and o.post_only:
            return self.ev("rejected", ts, account, symbol, order_id, "would_cross", o.qty)
        self.resting.remove(o)
        self.ev("amended", ts, account, symbol, order_id, None, new_qty)
        left = new_qty
        if crossing:
            left = self.take(ts, account, symbol, order_id, o.side, new_price, new_qty, o.stp)
        if left > 0:
            o.price, o.qty, o.stamp = new_price, left, self._stamp()
            self.resting.append(o)
        return None

    def book_levels(self) -> list[tuple]:
        """(symbol, side, price, qty, order_count) rows, as book_final orders them."""
        rows = []
        for symbol in sorted(self.rules):
            for side in (BUY, SELL):
                levels: dict[int, list[int]] = {}
                for o in self.side_in_priority(symbol, side):
                    levels.setdefault(o.price, []).append(o.qty)
                for price, qtys in levels.items():
                    rows.append((symbol, side, price, sum(qtys), len(qtys)))
        return rows
