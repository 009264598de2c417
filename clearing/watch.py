"""Which accounts a mark update can have made liquidatable, without checking them all.

CLEARING.md section 7: a mark update touches every account with a position in the symbol,
and each must be checked (equity <= maintenance margin liquidates). Checking thousands of
accounts per mark is the replay's slowest path, so each account carries a *safe range* per
symbol: while every mark stays inside its ranges, the account provably cannot have become
liquidatable, and only accounts whose range a mark leaves are checked exactly. The result
is the same set of liquidatable accounts as checking every holder (a property test holds
the two to it).

Why a range is safe. After an exact check of a pool (the account's positions settling in
one asset) with slack = equity - maintenance > 0 over n positions: a mark move of d ticks in
a symbol where the account holds q lots changes equity by at most |q| x d x K and the
position's maintenance by at most |q| x d x K x mmr_max / 1e8 + 1 (continuous tiers of
slope <= mmr_max, plus the per-position round-up). Giving each of the n symbols an equal
share of slack - n - 1, the pool stays strictly above maintenance while every symbol's move
d_s satisfies |q_s| x K_s x (1e8 + mmr_max_s) x d_s <= (slack - n - 1) x 1e8 / n.
A symbol without a mark yet, or a pool with too little slack, gets an empty range: the
next mark of the symbol checks it.

In a multi-asset pool, a position settling in another asset (USDC-M) moves the pool's
figures by its own amounts times r = price / per_unit of that asset, and the conversion
rounds once per asset for the PnL and once for the maintenance (Clearing.pool): its
per-position round-up then costs ceil(r) instead of 1, each such asset 2 more, and its
range is the budget over r: |q_s| x K_s x (1e8 + mmr_max_s) x d_s x r <= budget / n, with
budget = (slack - sum of the per-position round-ups - 2 x converted assets - 1) x 1e8.
A price change of the asset re-checks every multi-asset account holding a position.

Ranges are kept in two heaps per symbol (lower bounds as a max-heap, upper bounds as a
min-heap) with lazy deletion: each exact check bumps the account's version, so its older
entries are skipped when popped; a heap is rebuilt when stale entries dominate.
"""

from __future__ import annotations

from heapq import heapify, heappop, heappush

from clearing.margin import AccountMargin
from clearing.money import SCALE
from clearing.positions import Position
from clearing.settlement import Clearing, is_exchange_account

EMPTY_LOW = 1 << 62  # a lower bound above any mark: the range is empty


class MarginWatch:
    def __init__(self, clearing: Clearing) -> None:
        self.clearing = clearing
        self.low: dict[str, list[tuple[int, str, int]]] = {s: [] for s in clearing.symbols}
        self.high: dict[str, list[tuple[int, str, int]]] = {s: [] for s in clearing.symbols}
        self.version: dict[str, int] = {}
        # (pool asset, equity, initial margin) of each pool the last `check` computed, or
        # None when it computed none (the replay keeps them for its pre-trade check).
        self.last: list[tuple[str, int, int]] | None = None
        # Per symbol: K x (1e8 + mmr_max), mmr_max the largest mmr of its tiers (the slope
        # bound; 0 without tiers): a lot's bound on equity plus maintenance per tick x 1e8.
        self._per_lot_tick = {s: spec.k * (SCALE + (max(spec.tiers.mmr) if spec.tiers is not None else 0))
                              for s, spec in clearing.symbols.items()}

    def check(self, account: str) -> list[tuple[str, AccountMargin]]:
        """Check `account` exactly at the current marks; re-arm its safe ranges; return the
        pools (asset, figures) at or under maintenance margin, assets in name order
        (`last` keeps every pool's figures). Exchange accounts and accounts without
        positions are never liquidatable."""
        version = self.version.get(account, 0) + 1
        self.version[account] = version
        self.last = None
        if is_exchange_account(account):
            return []
        c = self.clearing
        held = c.positions.get(account)
        if not held:
            return []
        due = []
        last = self.last = []
        multi = account in c.multi
        if len(held) == 1 and not multi:  # the common case: one position, one pool
            for only in held:
                spec = c.symbols[only]
                self._check_pool(account, version, held, spec.settle, [only], False, due, last)
        else:  # pools in name order, each with its symbols in holding order
            for asset in c.pools(account):
                symbols = [s for s in held if c.pool_asset(account, s) == asset]
                self._check_pool(account, version, held, asset, symbols, multi, due, last)
        return due

    def _check_pool(self, account: str, version: int, held: dict[str, Position], asset: str,
                    symbols: list[str], multi: bool, due: list[tuple[str, AccountMargin]],
                    last: list[tuple[str, int, int]]) -> None:
        """`check` of the account's pool `asset` (its positions `held`, of which `symbols`
        settle in the pool): the figures to `last`, and to `due` when at or under
        maintenance margin; then each symbol's safe range re-armed at `version`."""
        c = self.clearing
        equity, maintenance, initial = c.pool_figures(account, asset)
        last.append((asset, equity, initial))
        slack = equity - maintenance
        if slack <= 0:
            due.append((asset, AccountMargin(equity, maintenance, initial)))
        n = len(symbols)
        rates = None  # symbol -> (price, per_unit) where the pool converts (multi-asset)
        reserve = n + 1
        if multi:
            converted = set()
            for symbol in symbols:
                rate = c.pool_rate(account, symbol)
                if rate is not None:
                    if rates is None:
                        rates = {}
                    rates[symbol] = rate
                    converted.add(c.symbols[symbol].settle)
                    reserve += -(-rate[0] // rate[1]) - 1
            reserve += 2 * len(converted)
        budget = (slack - reserve) * SCALE
        for symbol in symbols:
            mark = c.marks.get(symbol)
            if mark is None or budget < 0:
                lo, hi = EMPTY_LOW, -1
            else:
                pos = held[symbol]
                per_tick = n * abs(pos.qty) * self._per_lot_tick[symbol]
                rate = None if rates is None else rates.get(symbol)
                d = budget // per_tick if rate is None else budget * rate[1] // (per_tick * rate[0])
                lo, hi = mark - d, mark + d
            low, high = self.low[symbol], self.high[symbol]
            heappush(low, (-lo, account, version))
            heappush(high, (hi, account, version))
            if len(low) > 4 * len(c.holders[symbol]) + 64:
                self._rebuild(symbol)

    def leaving(self, symbol: str, mark: int) -> list[str]:
        """Accounts holding `symbol` whose safe range `mark` leaves, in id order. Their
        heap entries are consumed: the caller must `check` each of them."""
        version = self.version
        holders = self.clearing.holders[symbol]
        found = set()
        low = self.low[symbol]
        while low and -low[0][0] > mark:
            _, account, v = heappop(low)
            if version.get(account) == v and account in holders:
                found.add(account)
        high = self.high[symbol]
        while high and high[0][0] < mark:
            _, account, v = heappop(high)
            if version.get(account) == v and account in holders:
                found.add(account)
        return sorted(found)

    def _rebuild(self, symbol: str) -> None:
        version = self.version
        holders = self.clearing.holders[symbol]
        for heap in (self.low[symbol], self.high[symbol]):
            heap[:] = [e for e in heap if version.get(e[1]) == e[2] and e[1] in holders]
            heapify(heap)
