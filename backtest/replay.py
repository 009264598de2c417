"""The order-flow replay with clearing: every input stream merged into one sequence.

Streams merge by (ts, stream rank, seq) (CLEARING.md section 7): 0 transfers, 1 marks,
3 funding times, 7 orders (ranks 2 asset_prices, 4 interest, 5 depth, 6 trades belong to
later issues and slot into the same merge). `orders` stream from Parquet in batches; the
other tables are small and are loaded whole into one sorted list of events.

Per event:
- order `new`: the matcher's door checks, then the pre-trade checks (clearing/pretrade.py:
  reduce-only, then initial margin with the account's open orders), then the matcher.
  `amend`: the matcher's amend checks, then, when it raises the qty or moves the price, the
  margin check as for a new order of the amended size (reject: `rejected` /
  `insufficient_margin`, remaining = the unchanged open qty); `cancel` goes straight to the
  matcher.
- every fill is cleared at once (fees, positions, realised PnL); its fills row carries the
  fees and kind `trade`; its ledger entries reference it as `fill:<seq>`.
- a mark updates the symbol's mark; the accounts whose safe range it leaves are checked
  (clearing/watch.py: the same outcome as checking every holder).
- a funding time settles funding for every holder of the symbol at the current mark.
- a transfer moves money in or out; a withdrawal is refused `insufficient_balance` beyond
  the balance and `insufficient_margin` when equity after it would be below the initial
  margin of the account's positions and open orders in that asset.
After each input row, the accounts it touched are checked in account-id order; a pool at
or under maintenance margin gets a `margin_call` record when it enters that state (not
again while it stays there). Executing liquidations is the next issue's work.

Output records share one list and one sequence counter (backtest/outputs.py numbers them):
the matcher's records of an instruction, then the ledger entries of its fills, then margin
calls.
"""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction

from clearing.pretrade import OrderIntent, check_order
from clearing.settlement import Clearing
from clearing.watch import MarginWatch
from matching import Matcher
from matching.types import AMEND, BUY, CANCEL, FILL, LIMIT, NEW, REJECTED

MARGIN_CALL = "margin_call"
TRANSFER = "transfer"
TRADE = "trade"

RANK_TRANSFERS, RANK_MARKS, RANK_FUNDING = 0, 1, 3

R_INSUFFICIENT_BALANCE = "insufficient_balance"
R_NOT_SUPPORTED = "not_supported_yet"  # repay and set_mode: the multi-asset issue


class Replay:
    """State of one replay: the matcher, clearing, the margin watch and the output list."""

    def __init__(self, matcher: Matcher, clearing: Clearing, events: list[tuple]) -> None:
        self.matcher = matcher
        self.clearing = clearing
        self.watch = MarginWatch(clearing)
        self.out: list[tuple] = clearing.out
        matcher.out = self.out
        self.seq = 0  # sequence number of the last record in `out` (drained or not)
        self.events = events  # sorted (ts, rank, seq, kind, *payload)
        self._next = 0
        self._next_ts = events[0][0] if events else None
        self.open_orders: dict[str, list[int]] = {}  # account -> ids that may rest
        # account -> symbol -> (open qty, highest limit, count): see _orders_margin_bound.
        self._bound: dict[str, dict[str, tuple[int, int, int]]] = {}
        self._min_leverage = {s: min(spec.tiers.max_leverage) for s, spec in clearing.symbols.items()
                              if spec.tiers is not None}
        self.called: dict[str, set[str]] = {}  # account -> pools under a margin call
        self.deposits: dict[str, int] = {}
        self.withdrawals: dict[str, int] = {}
        self.funding_skipped = 0  # funding times of a symbol with no mark yet
        self.instructions = 0
        self.margin_checks = 0

    # ------------------------------------------------------------------ merge

    def orders(self, cols: tuple[list, ...]) -> None:
        """Replay one batch of order instructions (iter_order_batches with reduce_only),
        each after every other event with ts <= its own."""
        (ts_col, action_col, account_col, symbol_col, id_col, side_col, type_col, tif_col,
         price_col, qty_col, stp_col, ro_col) = cols
        matcher = self.matcher
        out = self.out
        for i in range(len(ts_col)):
            ts = ts_col[i]
            if self._next_ts is not None and self._next_ts <= ts:
                self.until(ts)
            action = action_col[i]
            account = account_col[i]
            symbol = symbol_col[i]
            oid = id_col[i]
            n0 = len(out)
            if action == NEW:
                side, otype, tif, price, qty = side_col[i], type_col[i], tif_col[i], price_col[i], qty_col[i]
                if otype != LIMIT:
                    price = None
                reason = matcher.door_check(symbol, oid, otype, tif, price, qty)
                if reason is None:
                    reason = self._pretrade(account, symbol, side, price, qty, ro_col[i])
                if reason is not None:
                    out.append((REJECTED, ts, account, symbol, oid, reason, 0))
                    self.seq += 1
                    continue
                matcher.new_order(ts, account, symbol, oid, side, otype, tif, price, qty, stp_col[i])
                order = matcher.orders.get(oid)
                if order is not None:
                    ids = self.open_orders.get(account)
                    if ids is None:
                        self.open_orders[account] = [oid]
                    else:
                        ids.append(oid)
                    self._bound_add(account, symbol, order.qty, order.price)
            elif action == CANCEL:
                matcher.cancel(ts, account, symbol, oid)
            else:
                assert action == AMEND
                price, qty = price_col[i], qty_col[i]
                reason = self._amend_margin(account, symbol, oid, price, qty)
                if reason is not None:
                    out.append((REJECTED, ts, account, symbol, oid, reason, matcher.orders[oid].qty))
                    self.seq += 1
                    continue
                matcher.amend(ts, account, symbol, oid, price, qty)
                order = matcher.orders.get(oid)
                if order is not None and order.account == account:
                    # More qty or a new price: counted again in full (the bound loosens).
                    self._bound_add(account, symbol, order.qty, order.price)
            self._clear_fills(ts, n0)
        self.instructions += len(ts_col)

    def schedule(self, events: Iterable[tuple]) -> None:
        """Add events (ts, rank, seq, kind, *payload) not yet due to the merged sequence."""
        pending = sorted(self.events[self._next:] + list(events), key=lambda e: e[:3])
        del self.events[self._next:]
        self.events += pending
        self._next_ts = self.events[self._next][0] if self._next < len(self.events) else None

    def until(self, ts: int | None) -> None:
        """Apply every non-order event with ts <= `ts` (all of them for None)."""
        events = self.events
        while self._next < len(events) and (ts is None or events[self._next][0] <= ts):
            event = events[self._next]
            self._next += 1
            kind = event[3]
            if kind == "mark":
                self._mark(event[0], event[4], event[5])
            elif kind == "funding":
                self._funding(event[0], event[4], event[5], event[6])
            else:
                self._transfer(event[0], *event[4:])
        self._next_ts = events[self._next][0] if self._next < len(events) else None

    # ------------------------------------------------------------------ handlers

    def _clear_fills(self, ts: int, n0: int) -> None:
        """Clear the fills among out[n0:], number the new records, check touched accounts."""
        out = self.out
        n1 = len(out)
        seq = self.seq
        touched = None
        settle = self.clearing.settle_fill
        for j in range(n0, n1):
            r = out[j]
            if r[0] == FILL:
                seq += 1
                taker_fee, maker_fee = settle(r[1], r[2], r[3], r[4], r[5] == BUY, r[8], r[9],
                                              "fill:%d" % seq)
                out[j] = r + (taker_fee, maker_fee, TRADE)
                seq += 2
                if touched is None:
                    touched = {r[8], r[9]}
                else:
                    touched.add(r[8])
                    touched.add(r[9])
            else:
                seq += 1
        self.seq = seq + len(out) - n1
        if touched is not None:
            self._check(ts, sorted(touched), "fill")

    def _pretrade(self, account: str, symbol: str, side: int, price: int | None, qty: int,
                  reduce_only: bool) -> str | None:
        c = self.clearing
        spec = c.symbols[symbol]
        held = c.positions.get(account)
        pos = None if held is None else held.get(symbol)
        intent = OrderIntent(qty if side == BUY else -qty, price, reduce_only)
        if reduce_only:
            return check_order(intent, position_qty=0 if pos is None else pos.qty, equity=0,
                               initial_in_use=0, mark=None, k=spec.k, tiers=spec.tiers,
                               taker_rate=0)
        figures = c.pool(account, spec.settle)
        taker_rate = c.fee_schedule.tiers[c.fee_tier.get(account, 0)][1]
        mark = c.marks.get(symbol)
        bound = self._orders_margin_bound(account, spec.settle)
        if bound is not None:
            reason = check_order(intent, position_qty=0, equity=figures.equity,
                                 initial_in_use=figures.initial + bound, mark=mark, k=spec.k,
                                 tiers=spec.tiers, taker_rate=taker_rate)
            if reason is None:
                return None  # passes even with the open orders' margin overstated
        return check_order(intent, position_qty=0, equity=figures.equity,
                           initial_in_use=figures.initial + self._orders_margin(account, spec.settle),
                           mark=mark, k=spec.k, tiers=spec.tiers, taker_rate=taker_rate)

    def _amend_margin(self, account: str, symbol: str, oid: int, price: int | None,
                      qty: int | None) -> str | None:
        """An amend that raises an order's qty or moves its price is checked like a new
        order of the amended size and price, with the order's current margin taken out of
        the account's open-order margin; an amend the matcher would reject, or one that
        only reduces, is not checked."""
        matcher = self.matcher
        if matcher.amend_check(account, symbol, oid, price, qty) is not None:
            return None
        order = matcher.orders[oid]
        new_price = order.price if price is None else price
        new_qty = order.qty if qty is None else qty
        if new_qty == 0 or (new_qty <= order.qty and new_price == order.price):
            return None
        c = self.clearing
        spec = c.symbols[symbol]
        mark = c.marks.get(symbol)
        figures = c.pool(account, spec.settle)
        now = spec.tiers.initial((order.price if mark is None or mark < order.price else mark)
                                 * order.qty * spec.k)
        others = self._orders_margin(account, spec.settle) - now
        taker_rate = c.fee_schedule.tiers[c.fee_tier.get(account, 0)][1]
        intent = OrderIntent(new_qty if order.side == BUY else -new_qty, new_price, False)
        return check_order(intent, position_qty=0, equity=figures.equity,
                           initial_in_use=figures.initial + others, mark=mark, k=spec.k,
                           tiers=spec.tiers, taker_rate=taker_rate)

    def _orders_margin_bound(self, account: str, asset: str) -> int | None:
        """An upper bound of `_orders_margin` from per-symbol aggregates (total open qty Q,
        highest limit L, count n, of every order that rested since the last exact
        computation; fills and cancels are not subtracted, so it only loosens):
        sum of ceil(max(mark, L) x Q x K / lowest max leverage) + n, since each order's
        margin is at most its price x qty x K / its tier's leverage + 1 (the round-up).
        None when there is no aggregate yet (the exact figure builds it)."""
        aggregate = self._bound.get(account)
        if aggregate is None:
            return None
        total = 0
        symbols, marks = self.clearing.symbols, self.clearing.marks
        for symbol, (q, limit, n) in aggregate.items():
            spec = symbols[symbol]
            if spec.settle != asset:
                continue
            mark = marks.get(symbol)
            price = limit if mark is None or mark < limit else mark
            lev = self._min_leverage[symbol]
            total += -(-price * q * spec.k // lev) + n
        return total

    def _bound_add(self, account: str, symbol: str, qty: int, price: int) -> None:
        aggregate = self._bound.get(account)
        if aggregate is None:
            return
        entry = aggregate.get(symbol)
        if entry is None:
            aggregate[symbol] = (qty, price, 1)
        else:
            q, limit, n = entry
            aggregate[symbol] = (q + qty, price if price > limit else limit, n + 1)

    def _orders_margin(self, account: str, asset: str) -> int:
        """Initial margin of the account's resting orders in `asset`: |qty| x price x K /
        max leverage(tier), price = max(mark, limit) (the limit before the first mark).
        Forgets ids of orders no longer resting and rebuilds the account's aggregates for
        `_orders_margin_bound`."""
        ids = self.open_orders.get(account)
        aggregate: dict[str, tuple[int, int, int]] = {}
        self._bound[account] = aggregate
        if not ids:
            return 0
        resting = self.matcher.orders
        live = [oid for oid in ids if oid in resting]
        if len(live) != len(ids):
            self.open_orders[account] = live
        total = 0
        symbols, marks = self.clearing.symbols, self.clearing.marks
        for oid in live:
            order = resting[oid]
            symbol = order.book.symbol
            entry = aggregate.get(symbol)
            aggregate[symbol] = ((order.qty, order.price, 1) if entry is None else
                                 (entry[0] + order.qty, max(entry[1], order.price), entry[2] + 1))
            spec = symbols[symbol]
            if spec.settle != asset:
                continue
            mark = marks.get(symbol)
            price = order.price if mark is None or mark < order.price else mark
            total += spec.tiers.initial(price * order.qty * spec.k)
        return total

    def _check(self, ts: int, accounts: Iterable[str], trigger: str) -> None:
        """Liquidation checks of `accounts` (in the given order, which callers sort)."""
        out = self.out
        n0 = len(out)
        check = self.watch.check
        for account in accounts:
            self.margin_checks += 1
            due = check(account)
            called = self.called.get(account)
            if not due and not called:
                continue
            now = set()
            for asset, figures in due:
                now.add(asset)
                if called is None or asset not in called:
                    out.append((MARGIN_CALL, ts, account, asset, figures.equity,
                                figures.maintenance, figures.initial, trigger))
            if now:
                self.called[account] = now
            else:
                del self.called[account]
        self.seq += len(out) - n0

    def _mark(self, ts: int, symbol: str, mark: int) -> None:
        self.clearing.marks[symbol] = mark
        self._check(ts, self.watch.leaving(symbol, mark), "mark")

    def _funding(self, ts: int, symbol: str, rate: Fraction, source: str) -> None:
        mark = self.clearing.marks.get(symbol)
        if mark is None:
            self.funding_skipped += 1
            return
        n0 = len(self.out)
        touched = self.clearing.settle_funding(ts, symbol, mark, rate, f"funding:{symbol}:{ts}", source)
        self.seq += len(self.out) - n0
        self._check(ts, touched, "funding")

    def _transfer(self, ts: int, seq: int, account: str, kind: str, asset: str, amount: int) -> None:
        c = self.clearing
        ledger = c.ledger
        reason = None
        if kind in ("repay", "set_mode"):
            reason = R_NOT_SUPPORTED
        elif kind == "withdraw":
            if amount > ledger.balance(account, asset):
                reason = R_INSUFFICIENT_BALANCE
            else:
                figures = c.pool(account, asset)
                if figures.equity - amount < figures.initial + self._orders_margin(account, asset):
                    reason = "insufficient_margin"
        out = self.out
        n0 = len(out)
        out.append((TRANSFER, ts, account, kind, asset, amount,
                    "rejected" if reason else "applied", reason))
        if reason is None and amount:
            signed = amount if kind == "deposit" else -amount
            ledger.post(ts, account, asset, signed, kind, f"transfer:{seq}")
            book = self.deposits if kind == "deposit" else self.withdrawals
            book[asset] = book.get(asset, 0) + amount
        self.seq += len(out) - n0
        if reason is None:
            self._check(ts, [account], "transfer")
