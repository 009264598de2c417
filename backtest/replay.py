"""The order-flow replay with clearing: every input stream merged into one sequence.

Streams merge by (ts, stream rank, seq) (CLEARING.md section 7): 0 transfers, 1 marks,
2 asset_prices, 3 funding times, 4 interest times, 5 depth, 6 trades, 7 orders. `orders`
stream from Parquet in batches, and so does the recorded market data of a market-data
replay (`depth` and `trades` merged, datasets/market_stream.py); the other tables are small
and are loaded whole into one sorted list of events. `until(ts)` applies the events and
market rows up to ts in merge order (at one ts the events' ranks 0-4 come first).

A market-data replay runs on a `matching.market.MarketMatcher`: the recorded book is the
`market` account's liquidity; a depth row sets a level's recorded size and a recorded trade
advances our queues, and either may fill our resting orders (the market is the taker);
those fills clear like any other (the market pays no fees), then the accounts they touched
are checked. Liquidation orders take from that book.

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

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from heapq import heapify, heappop

from sortedcontainers import SortedList

from clearing.liquidation import (Parcel, band_limit, bankruptcy_notional, better, binance_rank,
                                  bitmex_rank, equity_shares, rank_order,
                                  rank_text, safe_price, sweep_size)
from clearing.money import SCALE, div_ceil, fee
from clearing.pretrade import (R_INSUFFICIENT_MARGIN, R_NO_MARK_PRICE, ceil_notional, check_order_parts,
                               headroom, notional_margin, order_requirement)
from clearing.collateral import needed_to_convert, to_valuation
from clearing.settlement import FILL_ROW, FUND, Clearing, is_exchange_account
from clearing.watch import MarginWatch
from datasets.market_stream import RANK_DEPTH, RANK_TRADES  # ranks 5 and 6 of the merge
from matching import Matcher
from matching.market import MarketMatcher
from matching.types import (AMEND, BUY, CANCEL, FILL, LIMIT, NEW, R_LIQUIDATION, R_REDUCE_ONLY,
                             REJECTED, SELL)

MARGIN_CALL = "margin_call"
TRANSFER = "transfer"
ADL = "adl"
TRADE = "trade"
LIQUIDATION = "liquidation"


@dataclass(frozen=True)
class LiquidationRules:
    """The rule set's liquidation settings (datasets/rules.py reads them)."""

    execution: str = "sweep"  # ioc_at_bankruptcy | sweep | partial
    band: int = 5_000_000  # over 1e8 of mark
    fee: int = 0  # partial mode's liquidation fee over 1e8 of fill notional
    fund_floor: int = 0  # minor units of each settlement asset
    ranking: str = "bitmex"  # bitmex | binance
    max_takeover: int | None = None  # over 1e8 of the fund's balance; None: no cap
    adl_fees: bool = False  # ADL fills pay the deleveraged account's taker fee
    price_step: dict[str, int] = field(default_factory=dict)  # symbol -> ticks
    one_unit: dict[str, int] = field(default_factory=dict)  # asset -> minor units in 1 unit


@dataclass
class Leg:
    """One step of a `partial` liquidation: the account's own order in the book."""

    liquidation_id: int
    account: str
    symbol: str
    asset: str
    ts: int
    trigger_seq: int
    mark: int
    position_qty: int  # signed lots held when the step started
    step_qty: int  # lots the step tried to close
    bankruptcy_notional: int  # B of the whole position at the step
    filled_qty: int = 0
    exit_notional: int = 0
    fee_income: int = 0  # liquidation fee paid to the fund

RANK_TRANSFERS, RANK_MARKS, RANK_ASSET_PRICES, RANK_FUNDING, RANK_INTEREST = 0, 1, 2, 3, 4

R_INSUFFICIENT_BALANCE = "insufficient_balance"
R_NOT_SUPPORTED = "not_supported_yet"
R_MODE_SWITCH_BLOCKED = "mode_switch_blocked"  # open positions, open orders or debt
R_NO_DEBT = "no_debt"  # a repay of an asset the account does not owe
R_NO_PRICE = "no_price"  # a conversion of an asset with no price yet
R_MULTI_ASSET_INSTRUMENT = "multi_asset_instrument"  # multi-asset mode serves USDT-M and USDC-M only
INFINITY = float("inf")  # the approximate ADL key of a position that ranks last
# Approximate ADL keys closer than this (relative) are ranked exactly together (Replay._grow).
CLUSTER_TOLERANCE = 2.0 ** -40
# Integers above this are ranked exactly, not approximated: a product of two such floats
# could overflow (2^1024), and the quotient of two infinities is nan.
APPROXIMABLE = 1 << 500


def _adl_candidate(holders: dict, account: str, long_parcel: bool) -> bool:
    """A user holding the side opposite a parcel (ADL's counterparty). A module function,
    not a closure: a closure in the compiled generator would tie its frame into a cycle
    that only the cyclic collector (paused in the replay) frees."""
    pos = holders.get(account)
    return pos is not None and _opposes(pos, account, long_parcel)


def _opposes(pos: Position, account: str, long_parcel: bool) -> bool:
    """`account`'s position `pos` is a user's, on the side opposite a parcel."""
    return (pos.qty > 0) != long_parcel and not is_exchange_account(account)


class AdlRanking:
    """One (symbol, side)'s ADL ranking within one mark (Replay._ranked)."""

    __slots__ = ("version", "seen", "order", "approx", "start", "reranked", "fresh", "entries")

    def __init__(self, version: int, seen: int, order: list, approx: list) -> None:
        self.version = version  # the replay's _mark_version it belongs to
        self.seen = seen  # the ledger change-log position re-ranked up to
        self.order = order  # (account, exact rank) best first: the ranking at the mark, so far
        self.approx = approx  # heap of (approximate key, account): what _grow has yet to rank
        self.start = 0  # order[:start] is all re-ranked (skipped)
        self.reranked: dict[str, bool] = {}  # re-ranked accounts -> still a candidate
        self.fresh = SortedList()  # _fresh_entry of each re-ranked candidate, best first
        self.entries: dict[str, tuple] = {}  # account -> its entry in `fresh`


def _fresh_entry(account: str, rank: tuple[int, int] | None) -> tuple:
    """A SortedList entry ordering (account, rank) pairs as rank_order does: exact ranks
    best first (a Fraction compares exactly), ranked before unranked, ties by account id.
    The key is unique (it holds the id), so the pair itself is never compared."""
    key = (True, 0, account) if rank is None else (False, -Fraction(rank[0], rank[1]), account)
    return key, (account, rank)


def _valued(k: int, mark: int | None, k_factor: int, pos, held: int) -> int:
    """What k of a position's `held` lots count for in its equity now: their mark notional,
    or before the first mark their entry cost (as clearing values them)."""
    if mark is not None:
        return k * mark * k_factor
    if k == held:
        return pos.cost
    return div_ceil(pos.cost * k, held) if pos.qty > 0 else (pos.cost * k) // held


class Replay:
    """State of one replay: the matcher, clearing, the margin watch and the output list."""

    def __init__(self, matcher: Matcher, clearing: Clearing, events: list[tuple],
                 liquidation: LiquidationRules | None = None, *, adl_cache: bool = True,
                 depth_every_ns: int = 0, depth_band_bps: int = 100,
                 interest_rates: dict[str, int] | None = None, conversion_spread: int = 0,
                 market: Iterable[tuple[list, ...]] | None = None,
                 market_batch: Callable[[int, int], None] | None = None) -> None:
        self.matcher = matcher
        self.market_mode = isinstance(matcher, MarketMatcher)
        self.clearing = clearing
        self.watch = MarginWatch(clearing)
        self.out: list[tuple] = clearing.out
        matcher.out = self.out
        self.seq = 0  # sequence number of the last record in `out` (drained or not)
        self.events = events  # sorted (ts, rank, seq, kind, *payload)
        self._next = 0
        # Recorded market data (datasets/market_stream.py batches): the current batch, the
        # index of its next row, and that row's ts (None when the stream is done).
        self._market = iter(market) if market is not None else None
        self._mk: tuple[list, ...] = ()
        self._mk_i = 0
        self._mk_ts: int | None = None
        self.market_rows = 0  # market rows applied
        self._held: set[str] = set()  # accounts touched by market fills, checked at the message's end
        self._market_batch = market_batch  # called (rows applied, ts) before each new batch
        self._load_market()
        self._next_ts = self._first_ts()
        self.open_orders: dict[str, list[int]] = {}  # account -> ids that may rest
        self._reduce_only: dict[str, list[int]] = {}  # account -> resting reduce-only ids
        # account -> symbol -> (open qty, highest limit, count): see _orders_margin_bound.
        self._bound: dict[str, dict[str, tuple[int, int, int]]] = {}
        # account -> (pool asset, _mark_version, bound): _orders_margin_bound's last figure.
        self._bound_total: dict[str, tuple[str, int, int]] = {}
        # account -> pool asset -> (equity, initial margin): see _pool_figures.
        self._figures: dict[str, dict[str, tuple[int, int]]] = {}
        self._figures_version = 0  # the _mark_version the cached figures were computed at
        self._figures_seen = 0  # entries of the ledger's change log already applied to them
        self._min_leverage = {s: min(spec.tiers.max_leverage) for s, spec in clearing.symbols.items()
                              if spec.tiers is not None}
        # The taker rate of each fee tier (the schedule is a frozen value, set with the Clearing).
        self._taker_rates = tuple([rates[1] for rates in clearing.fee_schedule.tiers])
        self.called: dict[str, set[str]] = {}  # account -> pools under a margin call
        self.deposits: dict[str, int] = {}
        self.withdrawals: dict[str, int] = {}
        self.funding_skipped = 0  # funding times of a symbol with no mark yet
        self.instructions = 0
        self.margin_checks = 0
        self.liquidation = liquidation or LiquidationRules()
        self._settle_assets = sorted({spec.settle for spec in clearing.symbols.values()})
        self._liq_orders: dict[int, tuple] = {}  # liquidation order id (< 0) -> its parcel or leg
        self._next_order_id = -1
        self._next_liquidation_id = 1
        self.trigger_seq: dict[int, int] = {}  # liquidation id -> seq of its margin_call row
        self.legs: list[Leg] = []
        # ADL rank cache (see _ranked): ranks hold until the next mark, except for the
        # accounts whose balance or position changed since (the ledger's change log).
        self._mark_version = 0
        self._adl_cache: dict[tuple[str, bool], AdlRanking] = {}
        self._use_adl_cache = adl_cache  # False: rank every holder at every ADL (tests)
        self.liquidated = 0  # liquidation events (an account's pool at a time)
        # Book depth near the touch, sampled at the first mark of a symbol at least
        # depth_every_ns after its last sample (0: never): (ts, symbol, mark, best bid,
        # best ask, bid lots and ask lots within depth_band_bps of the mark). An
        # observation for the report, not an event: it takes no sequence number.
        self.depth_every_ns = depth_every_ns
        self.depth_band_bps = depth_band_bps
        self.depth: list[tuple] = []
        self._depth_due: dict[str, int] = {}
        # Multi-asset mode: debt interest per asset (over 1e8 per interest time) and the
        # spread a `repay` conversion pays (over 1e8).
        self.interest_rates = dict(interest_rates or {})
        self.conversion_spread = conversion_spread

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
                    if ro_col[i]:
                        self._reduce_only.setdefault(account, []).append(oid)
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
            touched = self._clear_fills(ts, n0)
            if touched:
                if self._reduce_only:
                    self._trim_reduce_only(ts, touched)
                self._check(ts, touched, "fill")
        self.instructions += len(ts_col)

    def schedule(self, events: Iterable[tuple]) -> None:
        """Add events (ts, rank, seq, kind, *payload) not yet due to the merged sequence."""
        pending = sorted(self.events[self._next:] + list(events), key=lambda e: e[:3])
        del self.events[self._next:]
        self.events += pending
        self._next_ts = self._first_ts()

    def _first_ts(self) -> int | None:
        """The ts of the next event or market row, whichever comes first (None: none left)."""
        ets = self.events[self._next][0] if self._next < len(self.events) else None
        mts = self._mk_ts
        if ets is None:
            return mts
        return ets if mts is None or ets <= mts else mts

    def _load_market(self) -> None:
        """Move to the next batch of market rows (or mark the stream done)."""
        self._mk_ts = None
        if self._market is None:
            return
        if self._market_batch is not None and self.market_rows:
            done = self._mk[0]  # (no negative index: compiled without wraparound)
            self._market_batch(self.market_rows, done[len(done) - 1])
        for batch in self._market:
            if batch[0]:
                self._mk, self._mk_i, self._mk_ts = batch, 0, batch[0][0]
                return
        self._market = None

    def until(self, ts: int | None) -> None:
        """Apply every non-order event and market row with ts <= `ts` (all of them for
        None), in merge order: at one ts the events (ranks 0-4) before the market rows."""
        events = self.events
        while True:
            ets = events[self._next][0] if self._next < len(events) else None
            mts = self._mk_ts
            if ets is None or (mts is not None and mts < ets):
                if mts is None or (ts is not None and mts > ts):
                    break
                self._market_row()
                continue
            if ts is not None and ets > ts:
                break
            event = events[self._next]
            self._next += 1
            kind = event[3]
            if kind == "mark":
                self._mark(event[0], event[4], event[5])
            elif kind == "funding":
                self._funding(event[0], event[4], event[5], event[6])
            elif kind == "asset_price":
                self._asset_price(event[0], event[4], event[5])
            elif kind == "interest":
                self._interest(event[0])
            else:
                self._transfer(event[0], *event[4:])
        self._next_ts = self._first_ts()

    def _market_row(self) -> None:
        """Apply the next recorded depth or trade row (datasets/market_stream.py columns)
        and clear the fills it made against our resting orders at once. The accounts they
        touched are checked (and may be liquidated into the book) only once the book is
        whole again: after the last row of a venue message (rows sharing ts, rank and seq)
        and with no snapshot half applied, so a liquidation never walks levels the same
        update is about to change."""
        ts_col, rank_col, seq_col, symbol_col, side_col, price_col, qty_col, snap_col, end_col = self._mk
        i = self._mk_i
        ts = ts_col[i]
        rank = rank_col[i]
        seq = seq_col[i]
        symbol = symbol_col[i]
        matcher = self.matcher
        n0 = len(self.out)
        if rank == RANK_TRADES:
            matcher.trade(ts, symbol, price_col[i], qty_col[i], side_col[i])
        else:
            matcher.depth(ts, symbol, side_col[i], price_col[i], qty_col[i], snap_col[i])
            if end_col[i]:
                matcher.end_snapshot(ts, symbol)
        self.market_rows += 1
        if len(self.out) > n0:
            touched = self._clear_fills(ts, n0)
            if touched:
                self._held |= touched
        i += 1
        last = i >= len(ts_col)  # a batch never ends inside a ts (market_stream)
        if self._held and not matcher.open_snapshots and (
                last or ts_col[i] != ts or rank_col[i] != rank or seq_col[i] != seq):
            held = self._held
            self._held = set()
            if self._reduce_only:
                self._trim_reduce_only(ts, held)
            self._check(ts, held, "fill")
        if not last:
            self._mk_i = i
            self._mk_ts = ts_col[i]
        else:
            self._load_market()

    # ------------------------------------------------------------------ handlers

    def _clear_fills(self, ts: int, n0: int) -> set[str] | None:
        """Clear the fills among out[n0:] (the matcher's records of one call), number the
        new records, and return the accounts the fills touched (None if none)."""
        out = self.out
        n1 = len(out)
        seq = self.seq
        touched = None
        c = self.clearing
        for j in range(n0, n1):
            r = out[j]
            kind = r[0]  # compiled: a str (every record's tag is), compared in C
            if kind == FILL:
                seq += 1
                reference = f"fill:{seq}"  # compiled: seq is a C integer, formatted in C
                taker_id = r[6]
                context = self._liq_orders.get(taker_id) if taker_id < 0 else None
                if context is None:
                    taker_fee, maker_fee = c.settle_fill(r[1], r[2], r[3], r[4], r[5] == BUY, r[8], r[9], reference)
                    out[j] = r + (taker_fee, maker_fee, TRADE)
                elif isinstance(context, Parcel):
                    maker_fee = self.clearing.settle_parcel_fill(r[1], context, r[3], r[4], r[9], reference)
                    out[j] = r + (0, maker_fee, LIQUIDATION)
                else:  # a partial liquidation's step: the account's own order, usual fees
                    taker_fee, maker_fee = c.settle_fill(r[1], r[2], r[3], r[4], r[5] == BUY, r[8], r[9], reference)
                    out[j] = r + (taker_fee, maker_fee, LIQUIDATION)
                    context.filled_qty += r[4]
                    context.exit_notional += r[3] * r[4] * self.clearing.symbols[r[2]].k
                seq += 2
                if touched is None:
                    touched = {r[8], r[9]}
                else:
                    touched.add(r[8])
                    touched.add(r[9])
            else:
                seq += 1
        self.seq = seq + len(out) - n1
        return touched

    def _pretrade(self, account: str, symbol: str, side: int, price: int | None, qty: int,
                  reduce_only: bool) -> str | None:
        """clearing/pretrade.py's check_order for one new order (check_order_parts: no
        OrderIntent, no keywords; the pool's figures as a tuple: this runs per new order)."""
        c = self.clearing
        spec = c.symbols[symbol]
        qty_signed = qty if side == BUY else -qty
        if reduce_only:
            held = c.positions.get(account)
            pos = None if held is None else held.get(symbol)
            # The position must cover this order and the account's resting reduce-only
            # orders on the same side, so together they can never flip it.
            resting = self._reduce_only_qty(account, symbol, side)
            position = 0 if pos is None else pos.qty
            if resting:
                left = position - resting if position > 0 else position + resting
                if position == 0 or left == 0 or (left > 0) != (position > 0):
                    return "reduce_only_would_increase"
                position = left
            return check_order_parts(qty_signed, price, True, position, 0, 0, None, spec.k, spec.tiers, 0, None)
        multi = account in c.multi
        pool = c.valuation if multi else spec.settle  # c.pool_asset(account, symbol)
        rate = None
        if multi:
            if not c.serves_multi(symbol):
                return R_MULTI_ASSET_INSTRUMENT  # multi-asset: linear USDT-M and USDC-M only
            rate = c.pool_rate(account, symbol)  # a USDC-M order in the USDT pool converts
        needs = order_requirement(qty_signed, price, c.marks.get(symbol), spec.k, spec.tiers,
                                  self._taker_rates[c.fee_tier.get(account, 0)], rate)
        if needs is None:
            return R_NO_MARK_PRICE
        equity, initial = c.pool_figures(account, pool)[::2] if multi else self._pool_figures(account, pool)
        # check_order: rejected when equity - taker fee < initial margin of the positions,
        # the open orders and this order. `free` is what the open orders may use.
        free = headroom(equity, needs[1], initial, needs[0])
        if free < 0:
            return R_INSUFFICIENT_MARGIN  # even if the open orders used none
        return self._open_orders_fit(account, pool, free, 0)

    def _open_orders_fit(self, account: str, pool: str, free: int, own: int) -> str | None:
        """The last step of an order's margin check in a single-asset pool: None when
        `free` (equity - taker fee - the positions' and this order's initial margin) covers
        the account's open orders' margin in `pool` less `own` (an amended order's current
        margin, which that figure holds; 0 for a new order), else insufficient_margin. The
        bound first; the exact figure only when the bound does not settle it."""
        bound = self._orders_margin_bound(account, pool)
        if bound is not None and free >= bound - own:
            return None  # passes even with the open orders' margin overstated
        return R_INSUFFICIENT_MARGIN if free < self._orders_margin(account, pool) - own else None

    def _current_figures(self) -> dict[str, dict[str, tuple[int, int]]]:
        """The figures cache of _pool_figures with every entry the change log or a mark
        made stale dropped: what is left is exact now."""
        changed = self.clearing.ledger.changed
        cache = self._figures
        if self._figures_version != self._mark_version:
            cache.clear()
            self._figures_version = self._mark_version
            self._figures_seen = len(changed)
        else:
            seen = self._figures_seen
            end = len(changed)
            if seen != end:
                if cache:
                    for a in changed[seen:end]:
                        cache.pop(a, None)
                self._figures_seen = end
        return cache

    def _pool_figures(self, account: str, asset: str) -> tuple[int, int]:
        """(equity, initial margin) of a single-asset account's pool `asset`, as
        Clearing.pool_figures gives them, cached per account for the pre-trade check.

        Those figures depend only on the account's balance in `asset`, its positions and
        the marks. Every change of a balance or a position logs the account in the ledger's
        change log (Ledger.post, Clearing._apply), and every mark or asset price bumps
        `_mark_version` (the log is cleared only at a mark): an entry is dropped when its
        account appears in the log after it was stored, and the whole cache when the
        version moved. Multi-asset accounts are not cached (their equity also moves with
        every asset price and all their balances). The margin checks store the figures
        they compute (_check), so the next order of an account checked after its fills
        finds them."""
        cache = self._current_figures()
        pools = cache.get(account)
        if pools is None:
            pools = cache[account] = {}
        else:
            figures = pools.get(asset)
            if figures is not None:
                return figures
        equity, _, initial = self.clearing.pool_figures(account, asset)
        figures = pools[asset] = (equity, initial)
        return figures

    def _resting_of(self, account: str, ids: list[int]) -> list[int]:
        """The ids among `ids` under which an order of `account` still rests, in order. (A
        validated dataset never reuses a `new` id; should one reach the replay anyway,
        another account's order under an id this account forgot is not this account's.)"""
        resting = self.matcher.orders
        return [oid for oid in ids if oid in resting and resting[oid].account == account]

    def _reduce_only_qty(self, account: str, symbol: str, side: int) -> int:
        """Open lots of the account's resting reduce-only orders in `symbol` on `side`."""
        ids = self._reduce_only.get(account)
        if not ids:
            return 0
        resting = self.matcher.orders
        live = self._resting_of(account, ids)
        if len(live) != len(ids):
            if live:
                self._reduce_only[account] = live
            else:
                del self._reduce_only[account]
        total = 0  # (a loop, not a generator: this is a cpdef method when compiled)
        for oid in live:
            order = resting[oid]
            if order.book.symbol == symbol and order.side == side:
                total += order.qty
        return total

    def _trim_reduce_only(self, ts: int, accounts: Iterable[str]) -> None:
        """After fills, an account's resting reduce-only orders may no longer be covered by
        its position (it shrank or flipped): cancel them, newest first, reason
        `reduce_only`, until what is left on the reducing side fits the position."""
        matcher, out = self.matcher, self.out
        for account in sorted(a for a in accounts if a in self._reduce_only):
            n0 = len(out)
            for symbol in sorted({matcher.orders[o].book.symbol for o in self._reduce_only[account]
                                  if o in matcher.orders}):
                pos = self.clearing.position(account, symbol)
                held = 0 if pos is None else pos.qty
                for side in (BUY, SELL):
                    room = abs(held) if held and (held > 0) != (side == BUY) else 0
                    excess = self._reduce_only_qty(account, symbol, side) - room
                    for oid in reversed(list(self._reduce_only.get(account, []))):
                        if excess <= 0:
                            break
                        order = matcher.orders.get(oid)
                        if order is None or order.book.symbol != symbol or order.side != side:
                            continue
                        excess -= order.qty
                        matcher.cancel(ts, account, symbol, oid, R_REDUCE_ONLY)
            self.seq += len(out) - n0

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
        if oid in self._reduce_only.get(account, ()):
            # A reduce-only order is exempt from margin but must stay covered.
            if new_qty <= order.qty:
                return None
            pos = self.clearing.position(account, symbol)
            held = 0 if pos is None else pos.qty
            room = abs(held) if held and (held > 0) != (order.side == BUY) else 0
            more = self._reduce_only_qty(account, symbol, order.side) - order.qty + new_qty
            return "reduce_only_would_increase" if more > room else None
        c = self.clearing
        spec = c.symbols[symbol]
        mark = c.marks.get(symbol)
        pool = c.pool_asset(account, symbol)
        now = notional_margin(order.price if mark is None or mark < order.price else mark, order.qty, spec.k,
                              spec.tiers)
        taker_rate = self._taker_rates[c.fee_tier.get(account, 0)]
        qty_signed = new_qty if order.side == BUY else -new_qty
        if account in c.multi:
            figures = c.pool(account, pool)
            rate = c.pool_rate(account, symbol)
            if rate is not None:  # the pool's figures sum converted amounts: take out at most its value
                now = to_valuation(now, rate[0], rate[1], up=False)
            others = self._orders_margin(account, pool) - now
            return check_order_parts(qty_signed, new_price, False, 0, figures.equity, figures.initial + others,
                                     mark, spec.k, spec.tiers, taker_rate, rate)
        # A single-asset pool, as _pretrade decides a new order: check_order with the cached
        # figures, the open orders other than this one taken at their bound first (the bound
        # counts this order at no less than `now`, as the exact figure does).
        needs = order_requirement(qty_signed, new_price, mark, spec.k, spec.tiers, taker_rate, None)
        if needs is None:
            return R_NO_MARK_PRICE
        equity, initial = self._pool_figures(account, pool)
        free = headroom(equity, needs[1], initial, needs[0])  # what the other open orders may use
        return self._open_orders_fit(account, pool, free, now)

    def _orders_margin_bound(self, account: str, asset: str) -> int | None:
        """An upper bound of `_orders_margin` from per-symbol aggregates (total open qty Q,
        highest limit L, count n, of every order that rested since the last exact
        computation; fills and cancels are not subtracted, so it only loosens):
        sum of ceil(max(mark, L) x Q x K / lowest max leverage) + n, since each order's
        margin is at most its price x qty x K / its tier's leverage + 1 (the round-up).
        None when there is no aggregate yet (the exact figure builds it). In a multi-asset
        pool the bound of orders settling in another asset is summed per asset and
        converted as `_orders_margin` converts (rounding up is monotone)."""
        aggregate = self._bound.get(account)
        if aggregate is None:
            return None
        # The bound changes only with the account's aggregates (_bound_add, _orders_margin
        # and _liquidate drop the cached value), the marks and asset prices (_mark_version)
        # and its margin mode (_transfer's set_mode drops it).
        cached = self._bound_total.get(account)
        if cached is not None and cached[0] == asset and cached[1] == self._mark_version:
            return cached[2]
        total = self._orders_margin_bound_of(account, asset, aggregate)
        self._bound_total[account] = (asset, self._mark_version, total)
        return total

    def _orders_margin_bound_of(self, account: str, asset: str, aggregate: dict[str, tuple[int, int, int]]) -> int:
        """_orders_margin_bound computed from `aggregate` (no cache)."""
        total = 0
        other = None  # settle asset -> bound in that asset (a multi-asset pool's USDC-M orders)
        c = self.clearing
        symbols, marks = c.symbols, c.marks
        # pool_asset(account, symbol), decided once: the valuation asset for a multi-asset
        # account, else each symbol's settlement asset.
        multi = account in c.multi
        if multi and c.valuation != asset:
            return total
        min_leverage = self._min_leverage
        for symbol, (q, limit, n) in aggregate.items():
            spec = symbols[symbol]
            if not multi and spec.settle != asset:
                continue
            mark = marks.get(symbol)
            price = limit if mark is None or mark < limit else mark
            lev = min_leverage[symbol]
            if spec.settle != asset:
                if other is None:
                    other = {}
                other[spec.settle] = other.get(spec.settle, 0) + ceil_notional(price, q, spec.k, lev) + n
                continue
            total += ceil_notional(price, q, spec.k, lev) + n
        if other is not None:
            total += self._in_pool(other)
        return total

    def _in_pool(self, amounts: dict[str, int]) -> int:
        """Margin amounts per settlement asset in the multi-asset pool's units: each asset's
        sum converted once at its price, rounded up (as Clearing.pool converts margins)."""
        c = self.clearing
        total = 0
        for settle in sorted(amounts):
            total += to_valuation(amounts[settle], c.price_of(settle), c.collateral.per_unit[settle], up=True)
        return total

    def _bound_add(self, account: str, symbol: str, qty: int, price: int) -> None:
        aggregate = self._bound.get(account)
        if aggregate is None:
            return
        self._bound_total.pop(account, None)
        entry = aggregate.get(symbol)
        if entry is None:
            aggregate[symbol] = (qty, price, 1)
        else:
            q, limit, n = entry
            aggregate[symbol] = (q + qty, price if price > limit else limit, n + 1)

    def _orders_margin(self, account: str, asset: str) -> int:
        """Initial margin of the account's resting orders in `asset`: |qty| x price x K /
        max leverage(tier), price = max(mark, limit) (the limit before the first mark); in a
        multi-asset pool, orders settling in another asset sum per asset and convert once,
        rounded up (_in_pool). Forgets ids of orders no longer resting and rebuilds the
        account's aggregates for `_orders_margin_bound`."""
        ids = self.open_orders.get(account)
        aggregate: dict[str, tuple[int, int, int]] = {}
        self._bound[account] = aggregate
        self._bound_total.pop(account, None)
        if not ids:
            return 0
        resting = self.matcher.orders
        live = self._resting_of(account, ids)
        if len(live) != len(ids):
            self.open_orders[account] = live
        total = 0
        other = None  # settle asset -> margin in that asset (a multi-asset pool's USDC-M orders)
        symbols, marks = self.clearing.symbols, self.clearing.marks
        for oid in live:
            order = resting[oid]
            symbol = order.book.symbol
            entry = aggregate.get(symbol)
            aggregate[symbol] = ((order.qty, order.price, 1) if entry is None else
                                 (entry[0] + order.qty, max(entry[1], order.price), entry[2] + 1))
            spec = symbols[symbol]
            if self.clearing.pool_asset(account, symbol) != asset:
                continue
            mark = marks.get(symbol)
            price = order.price if mark is None or mark < order.price else mark
            if spec.settle != asset:
                if other is None:
                    other = {}
                other[spec.settle] = other.get(spec.settle, 0) + notional_margin(price, order.qty, spec.k, spec.tiers)
                continue
            total += notional_margin(price, order.qty, spec.k, spec.tiers)
        if other is not None:
            total += self._in_pool(other)
        return total

    def _check(self, ts: int, accounts: Iterable[str], trigger: str) -> None:
        """Liquidation checks of `accounts` in account-id order. A pool at or under
        maintenance margin gets a `margin_call` row (when it enters that state) and is
        liquidated at once; the accounts its liquidation touched (makers of the liquidation
        fills, ADL counterparties) are checked next, in id order, until none is left."""
        out = self.out
        watch = self.watch
        multi = self.clearing.multi
        pending = sorted(set(accounts))
        while pending:
            touched: set[str] = set()
            for account in pending:
                self.margin_checks += 1
                due = watch.check(account)
                last = watch.last
                if last is not None and account not in multi:
                    # The figures check just computed, nothing changed since: keep them.
                    pools = self._current_figures().get(account)
                    if pools is None:
                        pools = self._figures[account] = {}
                    for asset, equity, initial in last:
                        pools[asset] = (equity, initial)
                called = self.called.get(account)
                if not due and not called:
                    self._cover_deficit(ts, account)
                    continue
                now = set()
                for asset, figures in due:
                    now.add(asset)
                    if called is None or asset not in called:
                        out.append((MARGIN_CALL, ts, account, asset, figures.equity,
                                    figures.maintenance, figures.initial, trigger))
                        self.seq += 1
                    touched |= self._liquidate(ts, account, asset)
                    now.discard(asset)  # liquidated: flat (or healthy) in that pool now
                if now:
                    self.called[account] = now
                else:
                    self.called.pop(account, None)
                self._cover_deficit(ts, account)
            touched.discard(FUND)
            if touched and self._reduce_only:
                self._trim_reduce_only(ts, touched)  # liquidation and ADL fills shrink positions
            pending = sorted([a for a in touched if not is_exchange_account(a)])
            trigger = LIQUIDATION

    def _cover_deficit(self, ts: int, account: str) -> None:
        """A user left with a negative balance in an asset it holds no position in (a
        reduce-only close or a partial liquidation step at a loss larger than its wallet,
        fees included) is bankrupt there: the insurance fund pays the deficit, cause
        `bankruptcy`, so no user account ends below zero equity (CLEARING.md section 5's
        property; our reading in docs/run.md)."""
        c = self.clearing
        if is_exchange_account(account) or account in c.multi:
            return
        held = c.positions.get(account, {})
        for asset in self._settle_assets:
            # A position in the asset rules it out first: after a fill the account usually
            # holds one, and that test is cheaper than the balance's lookup.
            if self._holds_in(held, asset):
                continue
            balance = c.ledger.balance(account, asset)
            if balance >= 0:
                continue
            n0 = len(self.out)
            reference = f"bankruptcy:{account}"
            c.ledger.post(ts, account, asset, -balance, "insurance", reference)
            c.fund_post(ts, asset, balance, "insurance", reference, "bankruptcy", None)
            self.seq += len(self.out) - n0

    def _holds_in(self, held: dict, asset: str) -> bool:
        """Whether any of the positions `held` (symbol -> Position) settles in `asset`."""
        symbols = self.clearing.symbols
        for symbol in held:
            if symbols[symbol].settle == asset:
                return True
        return False

    def _mark(self, ts: int, symbol: str, mark: int) -> None:
        """A mark update: the fund's open parcels in the symbol are worked again (takeover
        order), then the accounts it (or those fills) may have made liquidatable are checked."""
        self.clearing.marks[symbol] = mark
        self._mark_version += 1  # every cached ADL rank is void
        self.clearing.ledger.changed.clear()
        touched: set[str] = set()
        for parcel in list(self.clearing.live_parcels[symbol]):
            touched |= self._work(ts, parcel)
        accounts = self.watch.leaving(symbol, mark)
        if touched:
            accounts = sorted(set(accounts) | touched)
        self._check(ts, accounts, "mark")
        if self.depth_every_ns and ts >= self._depth_due.get(symbol, ts):
            self._depth_due[symbol] = ts + self.depth_every_ns
            self._sample_depth(ts, symbol, mark)

    def _sample_depth(self, ts: int, symbol: str, mark: int) -> None:
        """Append one depth sample of `symbol`'s book after the mark's liquidations:
        resting lots priced within depth_band_bps of the mark on each side. O(levels)."""
        book = self.matcher.books.get(symbol)
        band = mark * self.depth_band_bps // 10_000
        if book is None:
            self.depth.append((ts, symbol, mark, None, None, 0, 0))
            return
        if self.market_mode:
            bid_qty, ask_qty = self.matcher.depth_near(symbol, mark - band, mark + band)
        else:
            bid_qty = sum(level.qty for price, level in book.bids.items() if price >= mark - band)
            ask_qty = sum(level.qty for price, level in book.asks.items() if price <= mark + band)
        self.depth.append((ts, symbol, mark, book.best_bid(), book.best_ask(), bid_qty, ask_qty))

    # ------------------------------------------------------------------ liquidation

    def _liquidate(self, ts: int, account: str, asset: str) -> set[str]:
        """CLEARING.md section 5 for one pool: cancel the account's orders (reason
        `liquidation`), then `partial` steps or the takeover, then work the parcels."""
        matcher, out = self.matcher, self.out
        self.liquidated += 1
        trigger_seq = self.seq  # the margin_call row just written
        ids = sorted(oid for oid in self.open_orders.pop(account, []) if oid in matcher.orders)
        self._bound.pop(account, None)
        self._bound_total.pop(account, None)
        n0 = len(out)
        for oid in ids:
            order = matcher.orders[oid]
            if order.account == account:
                matcher.cancel(ts, account, order.book.symbol, oid, R_LIQUIDATION)
        self.seq += len(out) - n0
        touched: set[str] = set()
        c = self.clearing
        execution = self.liquidation.execution
        if execution == "partial":
            touched |= self._partial(ts, account, asset, trigger_seq)
            figures = c.pool(account, asset)
            if (figures.equity > figures.maintenance
                    or not any(c.pool_asset(account, s) == asset for s in c.positions.get(account, ()))):
                self.watch.check(account)
                return touched
            execution = "sweep"  # what the steps could not close is taken over and swept
        n0 = len(out)
        parcels = c.takeover(ts, account, asset, self._next_liquidation_id, execution)
        self._next_liquidation_id += len(parcels)
        if account in c.multi and parcels:
            self._take_collateral(ts, account, parcels[0].liquidation_id)
        self.seq += len(out) - n0
        for parcel in parcels:
            self.trigger_seq[parcel.liquidation_id] = trigger_seq
        for i, parcel in enumerate(parcels):
            keep = self._takeover_cap(parcel, parcels[i + 1:])
            if keep < abs(parcel.qty):  # the cap sends the rest straight to ADL
                touched |= self._adl(ts, parcel, keep=keep)
            touched |= self._work(ts, parcel)
        self.watch.check(account)  # re-arm its safe ranges for what it still holds
        return touched

    def _takeover_cap(self, parcel: Parcel, pending: list[Parcel]) -> int:
        """Lots of a new parcel the fund may keep under `insurance_fund.max_takeover`: the
        largest k whose bankruptcy notional (section 2's rounding) fits, with the parcels
        it already holds, under max_takeover x its balance / 1e8 (CLEARING.md 5.4). The
        same takeover's later parcels (`pending`) are not counted yet: each parcel is
        capped in turn, after the ones before it were worked."""
        cap = self.liquidation.max_takeover
        lots = abs(parcel.qty)
        if cap is None:
            return lots
        c = self.clearing
        held = sum(p.cost for parcels in c.live_parcels.values() for p in parcels
                   if p.asset == parcel.asset and p is not parcel and p not in pending)
        room = max(0, c.ledger.balance(FUND, parcel.asset)) * cap // SCALE - held
        if parcel.removal(lots) <= room:
            return lots
        lo, hi = 0, lots  # removal(lo) fits (0 always does when room >= 0), removal(hi) not
        if room < 0:
            return 0
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if parcel.removal(mid) <= room:
                lo = mid
            else:
                hi = mid
        return lo

    def _queue(self, symbol: str, selling: bool, limit: int) -> list[tuple[int, int]]:
        """(price, qty) of every resting order a liquidation order at `limit` would meet,
        in price-time order: the fills it would make, one per maker order."""
        if self.market_mode:
            return self.matcher.queue(symbol, selling, limit)
        book = self.matcher.books[symbol]
        if selling:
            prices = sorted((p for p in book.bids if p >= limit), reverse=True)
            levels = book.bids
        else:
            prices = sorted(p for p in book.asks if p <= limit)
            levels = book.asks
        return [(p, order.qty) for p in prices for order in levels[p].orders.values()]

    def _take(self, ts: int, account: str, symbol: str, side: int, limit: int, qty: int,
              context: object) -> tuple[int, set[str]]:
        """Send one liquidation order to the matcher and clear its fills at once."""
        oid = self._next_order_id
        self._next_order_id -= 1
        self._liq_orders[oid] = context
        n0 = len(self.out)
        filled = self.matcher.take(ts, account, symbol, oid, side, limit, qty)
        touched = self._clear_fills(ts, n0) or set()
        del self._liq_orders[oid]
        return filled, touched

    def _work(self, ts: int, parcel: Parcel) -> set[str]:
        """Work one parcel into the book by its execution mode (section 5.3); send to ADL
        what `ioc_at_bankruptcy` leaves or what the floor forbids."""
        c, rules = self.clearing, self.liquidation
        touched: set[str] = set()
        if not parcel.qty:
            return touched  # closed already (the takeover cap sent it all to ADL)
        spec = c.symbols[parcel.symbol]
        mark = c.marks.get(parcel.symbol)
        selling = parcel.qty > 0
        step = rules.price_step.get(parcel.symbol, 1)
        if parcel.execution == "ioc_at_bankruptcy":
            limit = safe_price(parcel.cost, parcel.qty, spec.k, selling=selling, step=step)
            size, to_adl = abs(parcel.qty), True
        else:
            if mark is None:
                return touched  # nothing to put a band around until the first mark
            limit = band_limit(mark, rules.band, selling=selling, step=step)
            fund = c.ledger.balance(FUND, parcel.asset)
            available, size = sweep_size(parcel, self._queue(parcel.symbol, selling, limit),
                                         spec.k, fund, rules.fund_floor)
            to_adl = size < available
        if size > 0:
            _, touched = self._take(ts, FUND, parcel.symbol, SELL if selling else BUY, limit, size, parcel)
        if to_adl and parcel.qty:
            touched |= self._adl(ts, parcel)
        return touched

    def _rank(self, account: str, asset: str, symbol: str) -> tuple[int, int] | None:
        """The ADL rank of `account`'s position in `symbol` at the current marks (None ranks
        last), by the rule set's `adl.ranking`. A multi-asset account's position settling in
        another asset than its pool (USDC-M) is ranked with its PnL and maintenance in pool
        units (binance) or its equity share converted back (bitmex), as Clearing.pool and
        Clearing.takeover convert them."""
        c = self.clearing
        held = c.positions[account]
        pos = held[symbol]
        spec = c.symbols[symbol]
        mark = c.marks.get(symbol)
        at_mark = pos.cost if mark is None else abs(pos.qty) * mark * spec.k
        unrealised = at_mark - pos.cost if pos.qty > 0 else pos.cost - at_mark
        multi = account in c.multi
        converts = False
        if multi:
            asset = c.valuation
            converts = spec.settle != asset
        wallet = c.effective_margin(account) if multi else c.ledger.balances.get((account, asset), 0)
        single = len(held) == 1 and not converts
        if single:  # the common case: the pool's equity is all this position's
            equity = wallet + unrealised
        else:
            equity = c.pool(account, asset).equity
        if self.liquidation.ranking == "binance":
            maintenance = spec.tiers.maintenance(at_mark)
            if converts:
                unrealised = c.in_pool(account, symbol, unrealised)
                maintenance = c.in_pool(account, symbol, maintenance, up=True)
            return binance_rank(unrealised, wallet, maintenance, equity,
                                self.liquidation.one_unit.get(asset, 1))
        if single:
            return bitmex_rank(pos.qty, pos.cost, at_mark, equity)
        notionals = []
        for s in sorted(held):
            if c.pool_asset(account, s) == asset:
                m = c.marks.get(s)
                notionals.append((s, c.in_pool(account, s, held[s].cost if m is None else
                                                abs(held[s].qty) * m * c.symbols[s].k)))
        share = c.from_pool(account, symbol, equity_shares(equity, notionals)[symbol])
        return bitmex_rank(pos.qty, pos.cost, at_mark, share)

    def _adl(self, ts: int, parcel: Parcel, keep: int = 0) -> set[str]:
        """Close the parcel's remainder (all but `keep` lots) against opposite user
        positions, best-ranked first (ties by account id), each taking min(remainder, its
        position); then against the fund's own opposite parcels, oldest first; what is
        left stays in the parcel. With `adl.fees` the deleveraged account pays its taker
        fee on the ADL notional."""
        c, out = self.clearing, self.out
        symbol, asset = parcel.symbol, parcel.asset
        spec = c.symbols[symbol]
        long_parcel = parcel.qty > 0
        touched: set[str] = set()
        reference = f"adl:{parcel.liquidation_id}"
        n0 = len(out)
        for account, rank in self._ranked(symbol, asset, long_parcel):
            if abs(parcel.qty) <= keep:
                break
            qty = self._adl_capacity(account, parcel, min(abs(parcel.qty) - keep,
                                                          abs(c.holders[symbol][account].qty)))
            if qty == 0:
                continue
            notional = c.adl_fill(ts, parcel, account, qty, reference)
            taker_fee = 0
            if self.liquidation.adl_fees:
                taker_fee = fee(notional, c.fee_schedule.tiers[c.fee_tier.get(account, 0)][1])
                c.ledger.post(ts, account, asset, -taker_fee, "fee", reference)
                c.ledger.post(ts, "fees", asset, taker_fee, "fee", reference)
            price = safe_price(notional, qty, spec.k, selling=long_parcel)
            out.append((FILL_ROW, ts, symbol, price, qty, SELL if long_parcel else BUY, None, None,
                        FUND, account, 0, taker_fee, ADL, notional))
            out.append((ADL, ts, parcel.liquidation_id, parcel.account, symbol, account, qty,
                        notional, price, rank_text(rank), None if rank is None else rank[0] / rank[1]))
            touched.add(account)
        for other in list(c.live_parcels[symbol]):
            if abs(parcel.qty) <= keep:
                break
            if other is parcel or (other.qty > 0) == long_parcel:
                continue
            qty = self._cross_capacity(parcel, other, min(abs(parcel.qty) - keep, abs(other.qty)))
            if qty == 0:
                continue
            notional = c.parcel_cross(ts, parcel, other, qty, reference)
            price = safe_price(notional, qty, spec.k, selling=long_parcel)
            out.append((FILL_ROW, ts, symbol, price, qty, SELL if long_parcel else BUY, None, None,
                        FUND, FUND, 0, 0, ADL, notional))
            out.append((ADL, ts, parcel.liquidation_id, parcel.account, symbol, FUND, qty,
                        notional, price, "fund_parcel", None))
        self.seq += len(out) - n0
        return touched

    def _cross_capacity(self, parcel: Parcel, other: Parcel, most: int) -> int:
        """Lots (<= `most`) the fund may close between two of its own opposite parcels
        without its balance going below its floor (or lower than it is, if already
        below): each side leaves at its own removed cost, the difference is the fund's.
        The difference is monotone in the lots, so bisection finds the largest."""
        balance = self.clearing.ledger.balance(FUND, parcel.asset)
        bar = min(self.liquidation.fund_floor, balance)

        def after(k: int) -> int:
            n, m = parcel.removal(k), other.removal(k)
            return balance + (m - n if parcel.qty > 0 else n - m)

        if after(most) >= bar:
            return most
        lo, hi = 0, most
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if after(mid) >= bar:
                lo = mid
            else:
                hi = mid
        return lo

    def _ranked(self, symbol: str, asset: str, long_parcel: bool):
        """Opposite-side user positions in `symbol`, best-ranked first (exact, ties by
        account id), as (account, rank). Ranking every holder per ADL would make a crash
        cost (liquidations x holders); instead the ranking is built once per mark and
        side (AdlRanking), and each later ADL re-ranks only the accounts whose balance or
        position changed since (the ledger's change log, cleared at every mark), merging
        the two orders. The re-ranked accounts keep their ranks from one ADL to the next
        within the mark (a later change logs the account again), so each ADL ranks only
        what changed since the previous one. A rank depends only on the marks, the
        account's balance and positions.

        The ranking of a mark is exact but lazy (_approximate, _grow): holders are sorted
        by a float approximation of their rank, and exact ranks are computed only for the
        prefix an ADL walks, a cluster at a time. The re-ranked accounts are kept sorted
        as they change (a SortedList keyed by the exact rank), not re-sorted at every ADL.
        With adl_cache off (tests), every ADL ranks every holder exactly, the reference the
        cached path is held to."""
        c = self.clearing
        holders = c.holders[symbol]
        changed = c.ledger.changed
        key = (symbol, long_parcel)
        state = self._adl_cache.get(key) if self._use_adl_cache else None
        if state is None or state.version != self._mark_version:
            if self._use_adl_cache:
                state = AdlRanking(self._mark_version, len(changed), [],
                                   self._approximate(symbol, asset, long_parcel))
            else:
                state = AdlRanking(self._mark_version, len(changed),
                                   rank_order([(a, self._rank(a, asset, symbol)) for a in holders
                                               if _adl_candidate(holders, a, long_parcel)]), [])
            self._adl_cache[key] = state
        order, stale, fresh = state.order, state.reranked, state.fresh
        if state.seen < len(changed):
            entries = state.entries
            for a in sorted(set(changed[state.seen:])):
                old = entries.pop(a, None)
                if old is not None:
                    fresh.remove(old)
                stale[a] = candidate = _adl_candidate(holders, a, long_parcel)
                if candidate:
                    entries[a] = entry = _fresh_entry(a, self._rank(a, asset, symbol))
                    fresh.add(entry)
            state.seen = len(changed)
        # The order's accounts before `start` were all re-ranked (stale) when last walked,
        # and stay so within the mark: start there.
        i = state.start = self._past_stale(state, state.start, asset, symbol)
        j = 0
        while True:
            i = self._past_stale(state, i, asset, symbol)
            more = i < len(order)
            if not more and j == len(fresh):
                return
            if j == len(fresh):
                pick, i = order[i], i + 1
            elif not more:
                pick, j = fresh[j][1], j + 1
            else:
                a, b = order[i], fresh[j][1]
                first = better(a[1], b[1]) or (not better(b[1], a[1]) and a[0] < b[0])
                if first:
                    pick, i = a, i + 1
                else:
                    pick, j = b, j + 1
            if _adl_candidate(holders, pick[0], long_parcel):
                yield pick

    def _past_stale(self, state: AdlRanking, i: int, asset: str, symbol: str) -> int:
        """The first index from `i` of the mark's exact order (grown as needed) whose
        account was not re-ranked since; len(state.order) when none is left."""
        order, stale = state.order, state.reranked
        while (i < len(order) or self._grow(state, asset, symbol)) and order[i][0] in stale:
            i += 1
        return i

    def _approximate(self, symbol: str, asset: str, long_parcel: bool) -> list[tuple[float, str]]:
        """The ADL candidates of `symbol` against a parcel, as a heap (heapq) of (key,
        account): key = -(rank as a float), or +inf for a position that ranks last (rank
        None). A heap, not a sorted list: an ADL usually takes a few accounts of many
        thousands, and _grow pops only what it walks.

        A one-position single-asset account under bitmex ranking (nearly every holder) is
        approximated from exact integers: gain = its unrealised PnL, N = its mark notional,
        share = its balance + gain, and rank = gain x N / (cost x share) when gain > 0, else
        gain x share / (cost x N), each integer rounded once to a float, two products and
        a quotient: relative error under 8 x 2^-53. Whether it ranks last (share <= 0 or
        cost 0) is decided exactly. Any other account (more positions, multi-asset, binance
        ranking, a zero mark, an amount beyond 2^500) is ranked exactly and its key is that
        fraction rounded once (int / int rounds correctly).
        _grow turns this into the exact order."""
        c = self.clearing
        holders = c.holders[symbol]
        mark = c.marks.get(symbol)
        k = c.symbols[symbol].k
        balances = c.ledger.balances
        multi = c.multi
        positions = c.positions
        simple = self.liquidation.ranking == "bitmex" and mark is not None and mark != 0
        keys = []
        for a, pos in holders.items():
            if not _opposes(pos, a, long_parcel):
                continue
            if simple and a not in multi and len(positions[a]) == 1:
                cost = pos.cost
                n = abs(pos.qty) * mark * k
                gain = n - cost if pos.qty > 0 else cost - n
                share = balances.get((a, asset), 0) + gain
                if share <= 0 or cost == 0:
                    keys.append((INFINITY, a))
                elif n > APPROXIMABLE or cost > APPROXIMABLE or share > APPROXIMABLE:
                    rank = self._rank(a, asset, symbol)  # floats could overflow: exact
                    keys.append((-(rank[0] / rank[1]), a))
                elif gain > 0:
                    keys.append((-(float(gain) * float(n)) / (float(cost) * float(share)), a))
                else:
                    keys.append((-(float(gain) * float(share)) / (float(cost) * float(n)), a))
            else:
                rank = self._rank(a, asset, symbol)
                keys.append((INFINITY, a) if rank is None else (-(rank[0] / rank[1]), a))
        heapify(keys)
        return keys

    def _grow(self, state: AdlRanking, asset: str, symbol: str) -> bool:
        """Extend the exact order (state.order) by the next cluster of the approximate one
        (popped from the heap state.approx) that adds an account; False when nothing is
        left. A cluster is a run of keys each within CLUSTER_TOLERANCE x (|x| + |y|) of the
        one before: two keys x < y further apart than that have true values in the same
        order (each is within 8 x 2^-53 of its own magnitude, far inside the tolerance), so
        every account before a gap ranks strictly better than every account after it, and
        exact ranking within each cluster (rank_order: exact fractions, ties by id) gives
        the exact order. The last-ranked keys (+inf) form one cluster, ordered by id.

        Accounts re-ranked since the approximation (state.reranked) are left out: _ranked
        skips them anyway, and they may no longer hold the position. Every other account
        is as it was then (only _ranked's own picks change during a walk, and those come
        from the exact prefix or the re-ranked), so its rank now is its rank then."""
        approx = state.approx
        order = state.order
        stale = state.reranked
        n0 = len(order)
        while approx and len(order) == n0:
            first = heappop(approx)
            cluster = [first]
            last = first[0]
            if last == INFINITY:
                cluster += approx  # every key left is +inf
                approx.clear()
            else:
                while approx:
                    x = approx[0][0]
                    if x == INFINITY or x - last > CLUSTER_TOLERANCE * (abs(x) + abs(last)):
                        break
                    cluster.append(heappop(approx))
                    last = x
            order += rank_order([(a, self._rank(a, asset, symbol)) for _, a in cluster if a not in stale])
        return len(order) > n0

    def _adl_capacity(self, account: str, parcel: Parcel, most: int) -> int:
        """The lots (<= `most`) `account` can take from `parcel` by ADL without its equity
        going below 0. Closing k lots at the parcel's removed cost n(k) changes its equity
        by exactly mark notional(k) - n(k) for a short taking a long parcel (n(k) - mark
        notional(k) for a long): negative only when the parcel's bankruptcy price is beyond
        the mark, i.e. the liquidated account was already bankrupt at the trigger. Our
        reading (docs/run.md): ADL never makes a user bankrupt; what it cannot place stays
        in the parcel. The change is monotone in k, so bisection finds the largest k.
        In a multi-asset pool valued in another asset (a USDC-M position in the USDT pool)
        the change converts at the asset's price, rounded down, less 2: the pool rounds the
        asset's balance and its unrealised PnL once each (Clearing.pool), so its equity
        moves by at least that."""
        c = self.clearing
        spec = c.symbols[parcel.symbol]
        mark = c.marks.get(parcel.symbol)
        pos = c.holders[parcel.symbol][account]
        held = abs(pos.qty)
        equity = c.pool(account, c.pool_asset(account, parcel.symbol)).equity
        rate = c.fee_schedule.tiers[c.fee_tier.get(account, 0)][1] if self.liquidation.adl_fees else 0
        conversion = c.pool_rate(account, parcel.symbol)

        def after(k: int) -> int:
            n = parcel.removal(k)
            v = _valued(k, mark, spec.k, pos, held)
            change = (v - n if parcel.qty > 0 else n - v) - fee(n, rate)
            if conversion is not None:
                return equity + to_valuation(change, conversion[0], conversion[1], up=False) - 2
            return equity + change

        if after(most) >= 0:
            return most
        if after(1) < 0:
            return 0
        lo, hi = 1, most  # after(lo) >= 0 > after(hi)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if after(mid) >= 0:
                lo = mid
            else:
                hi = mid
        return lo

    def _partial(self, ts: int, account: str, asset: str, trigger_seq: int) -> set[str]:
        """`partial` (section 5.3): while the pool is liquidatable, close the largest
        position (ties: smallest symbol) in the lowest tier, or the fewest lots that bring
        its mark notional below its tier's floor, with an order of the account's own,
        limited to the band or the position's bankruptcy price, whichever is nearer the
        mark; its fills pay the taker fee plus `liquidation.fee` (rounded up, capped at the
        account's equity after them) to the fund. A step that fills nothing ends it.
        In a multi-asset pool positions compare, and share the equity, at their mark
        notionals in pool units (Clearing.takeover's conversion); a step's fee is in the
        position's settlement asset, capped at the pool's equity converted into it."""
        c, rules = self.clearing, self.liquidation
        touched: set[str] = set()
        while True:
            held = c.positions.get(account, {})
            symbols = sorted(s for s in held if c.pool_asset(account, s) == asset)
            figures = c.pool(account, asset)
            if not symbols or figures.equity > figures.maintenance:
                return touched
            notionals = []
            for s in symbols:
                mark = c.marks.get(s)
                notionals.append((s, c.in_pool(account, s, held[s].cost if mark is None else
                                               abs(held[s].qty) * mark * c.symbols[s].k)))
            symbol, _ = min(notionals, key=lambda item: (-item[1], item[0]))
            mark = c.marks.get(symbol)
            if mark is None:
                return touched  # no mark: no band; the takeover handles it
            spec, pos = c.symbols[symbol], held[symbol]
            at_mark = abs(pos.qty) * mark * spec.k
            tier = spec.tiers.tier(at_mark)
            lots = abs(pos.qty)
            step_qty = lots if tier == 0 else lots - (spec.tiers.floors[tier] - 1) // (mark * spec.k)
            share = c.from_pool(account, symbol, equity_shares(figures.equity, notionals)[symbol])
            b = bankruptcy_notional(pos.qty, at_mark, share)
            selling = pos.qty > 0
            step = rules.price_step.get(symbol, 1)
            bankrupt = safe_price(b, pos.qty, spec.k, selling=selling, step=step)
            band = band_limit(mark, rules.band, selling=selling, step=step)
            limit = max(bankrupt, band) if selling else min(bankrupt, band)
            leg = Leg(self._next_liquidation_id, account, symbol, spec.settle, ts, trigger_seq, mark,
                      pos.qty, step_qty, b)
            self._next_liquidation_id += 1
            self.legs.append(leg)
            filled, more = self._take(ts, account, symbol, SELL if selling else BUY, limit, step_qty, leg)
            touched |= more
            if filled == 0:
                return touched
            equity = c.from_pool(account, symbol, c.pool(account, asset).equity)
            charge = min(div_ceil(leg.exit_notional * rules.fee, SCALE), max(0, equity))
            if charge:
                n0 = len(self.out)
                reference = f"liquidation:{leg.liquidation_id}"
                c.ledger.post(ts, account, spec.settle, -charge, "liquidation_fee", reference)
                c.fund_post(ts, spec.settle, charge, "liquidation_fee", reference, "liquidation_fee",
                            leg.liquidation_id)
                leg.fee_income = charge
                self.seq += len(self.out) - n0

    def _funding(self, ts: int, symbol: str, rate: Fraction, source: str) -> None:
        mark = self.clearing.marks.get(symbol)
        if mark is None:
            self.funding_skipped += 1
            return
        n0 = len(self.out)
        touched = self.clearing.settle_funding(ts, symbol, mark, rate, f"funding:{symbol}:{ts}", source,
                                               fund_floor=self.liquidation.fund_floor)
        self.seq += len(self.out) - n0
        self._check(ts, touched, "funding")

    def _transfer(self, ts: int, seq: int, account: str, kind: str, asset: str, amount: int,
                  repay_with: str | None = None) -> None:
        """A `transfers` row: deposit (repaying debt in that asset first, interest then
        principal), withdraw (not into debt, not below the initial margin), repay (convert
        `repay_with` to pay `amount` of the `asset` debt), set_mode (amount 1: multi_asset,
        0: single_asset; refused while the account has positions, open orders or debt)."""
        c = self.clearing
        ledger = c.ledger
        reference = f"transfer:{seq}"
        reason = None
        if kind == "set_mode":
            reason = self._set_mode_refusal(account, amount)
        elif kind == "repay":
            reason, given = self._repay_plan(account, asset, amount, repay_with)
        elif kind == "withdraw":
            if amount > ledger.balance(account, asset):
                reason = R_INSUFFICIENT_BALANCE
            elif amount:
                pool = c.valuation if account in c.multi else asset
                balances = ledger.balances
                balances[(account, asset)] -= amount  # the figures after it, then restored
                figures = c.pool(account, pool)
                balances[(account, asset)] += amount
                if figures.equity < figures.initial + self._orders_margin(account, pool):
                    reason = "insufficient_margin"
        out = self.out
        n0 = len(out)
        out.append((TRANSFER, ts, account, kind, asset, amount,
                    "rejected" if reason else "applied", reason))
        if reason is None:
            if kind == "set_mode":
                self._bound_total.pop(account, None)  # its pools are other ones now
                if amount:
                    c.multi.add(account)
                else:
                    c.multi.discard(account)
            elif kind == "repay":
                owed = -ledger.balance(account, asset)
                got = c.convert(ts, account, repay_with, given, asset, self.conversion_spread, reference)
                c.record_repayment(ts, account, asset, owed, got, "repay", repay_with, given)
            elif amount:
                owed = -ledger.balance(account, asset)
                signed = amount if kind == "deposit" else -amount
                ledger.post(ts, account, asset, signed, kind, reference)
                book = self.deposits if kind == "deposit" else self.withdrawals
                book[asset] = book.get(asset, 0) + amount
                if kind == "deposit" and owed > 0:
                    c.record_repayment(ts, account, asset, owed, amount, "deposit", None, None)
        self.seq += len(out) - n0
        if reason is None:
            self._check(ts, [account], "transfer")

    def _set_mode_refusal(self, account: str, amount: int) -> str | None:
        c = self.clearing
        if amount not in (0, 1):
            return R_NOT_SUPPORTED  # 1: multi_asset, 0: single_asset; nothing else
        if amount and c.collateral is None:
            return R_NOT_SUPPORTED
        if c.positions.get(account) or any(
                self.matcher.orders.get(oid) is not None for oid in self.open_orders.get(account, ())):
            return R_MODE_SWITCH_BLOCKED
        assets = c.collateral.per_unit if c.collateral is not None else self._settle_assets
        if any(c.ledger.balance(account, a) < 0 for a in assets):  # debt
            return R_MODE_SWITCH_BLOCKED
        return None

    def _repay_plan(self, account: str, asset: str, amount: int,
                    repay_with: str | None) -> tuple[str | None, int]:
        """(reject reason or None, the amount of `repay_with` to convert): the least that
        pays min(amount, the debt) of `asset` at the price less the conversion spread."""
        c = self.clearing
        if account not in c.multi or c.collateral is None or repay_with is None or repay_with == asset:
            return R_NOT_SUPPORTED, 0
        owed = -c.ledger.balance(account, asset)
        if owed <= 0:
            return R_NO_DEBT, 0
        if c.price_of(repay_with) is None or c.price_of(asset) is None:
            return R_NO_PRICE, 0
        need = needed_to_convert(min(amount, owed), c.price_of(repay_with), c.collateral.per_unit[repay_with],
                                 c.price_of(asset), c.collateral.per_unit[asset], self.conversion_spread)
        if amount == 0 or need > c.ledger.balance(account, repay_with):
            return R_INSUFFICIENT_BALANCE, 0
        return None, need

    def _asset_price(self, ts: int, asset: str, price: int) -> None:
        """An `asset_prices` row: the collateral (and debt) of multi-asset accounts is valued
        anew, so each of them holding a position is checked (CLEARING.md section 6)."""
        c = self.clearing
        c.asset_prices[asset] = price
        self._mark_version += 1  # multi-asset equities moved: cached ADL ranks are void
        self._check(ts, sorted(a for a in c.multi if c.positions.get(a)), "asset_price")

    def _interest(self, ts: int) -> None:
        """An interest time: debt interest on every multi-asset account (Clearing.charge_interest),
        then the checks of the accounts charged."""
        if not self.interest_rates:
            return
        n0 = len(self.out)
        charged = self.clearing.charge_interest(ts, self.interest_rates, f"interest:{ts}")
        self.seq += len(self.out) - n0
        self._check(ts, charged, "interest")

    def _take_collateral(self, ts: int, account: str, liquidation_id: int) -> None:
        """CLEARING.md section 6, after a multi-asset takeover (which left the account's
        equity at 0): every remaining balance, collateral and debt, passes to the fund as a
        ledger pair, and the fund converts the collateral into the valuation asset at once
        through `conversion` at the current price (no spread). A debt in another asset than
        the valuation asset (USDC after USDC-M losses) is bought back at once the same way:
        the fund converts the least valuation amount that pays it (needed_to_convert), so
        the whole result of the takeover lands in the valuation balance, where the floor is,
        and the fund's own USDC (its USDC parcels' balance) is not drawn on (our reading,
        docs/run.md). Each change of the fund's valuation balance is an insurance_fund row
        with cause `collateral_takeover`, as is what the buy-back pays beyond the debt (the
        conversion's round-down, kept by the fund in that asset); the account ends at zero
        in every asset."""
        c = self.clearing
        reference = f"liquidation:{liquidation_id}"
        valuation = c.valuation
        per_unit = c.collateral.per_unit
        for asset in sorted(per_unit):
            balance = c.ledger.balance(account, asset)
            if balance == 0:
                continue
            c.ledger.post(ts, account, asset, -balance, "insurance", reference)
            if asset == valuation:
                c.fund_post(ts, asset, balance, "insurance", reference, "collateral_takeover", liquidation_id)
                continue
            c.ledger.post(ts, FUND, asset, balance, "insurance", reference)
            price = c.price_of(asset)
            if balance > 0 and price is not None:
                got = c.convert(ts, FUND, asset, balance, valuation, 0, reference)
                c.fund_record(ts, valuation, got, "collateral_takeover", liquidation_id)
            elif balance < 0 and price is not None:
                pay = needed_to_convert(-balance, per_unit[valuation], per_unit[valuation], price,
                                        per_unit[asset], 0)
                got = c.convert(ts, FUND, valuation, pay, asset, 0, reference)
                c.fund_record(ts, valuation, -pay, "collateral_takeover", liquidation_id)
                if got + balance:
                    c.fund_record(ts, asset, got + balance, "collateral_takeover", liquidation_id)
            c.accrued.pop((account, asset), None)
        c.accrued.pop((account, valuation), None)
