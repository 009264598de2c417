"""Liquidation arithmetic (CLEARING.md section 5): equity shares, bankruptcy notionals,
parcels, the sweep's floor-limited size, liquidation prices, and the ADL rankings.

Pure functions and one record type; the replay (backtest/replay.py) sequences them
against the matcher and the ledger (clearing/settlement.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import cmp_to_key

from clearing.money import SCALE, div_ceil, div_floor

EXECUTIONS = ("ioc_at_bankruptcy", "sweep", "partial")
ADL_RANKINGS = ("bitmex", "binance")


@dataclass(slots=True)
class Parcel:
    """A position the insurance fund took over from one liquidated account's position.

    Parcels are never netted against each other: each is worked on its own, pays funding
    on its own and counts as a position of its own for conservation."""

    liquidation_id: int
    account: str  # the liquidated account
    symbol: str
    asset: str
    ts: int  # takeover time
    mark: int | None  # mark at the trigger, ticks (None before the symbol's first mark)
    qty: int  # signed lots the fund holds now (the account's sign)
    cost: int  # unsigned entry cost left (the bankruptcy notional of what is left)
    taken_qty: int  # signed lots taken over
    bankruptcy_notional: int  # B of the whole takeover
    execution: str
    # Results, accumulated as the parcel is worked:
    filled_qty: int = 0  # lots closed in the book
    exit_notional: int = 0  # their notional
    removed_cost: int = 0  # the bankruptcy notional of those lots
    adl_qty: int = 0
    adl_notional: int = 0
    fund_result: int = 0  # surplus (+) / shortfall (-) realised by the fund

    def signed_cost(self) -> int:
        return self.cost if self.qty >= 0 else -self.cost

    def removal(self, k: int) -> int:
        """Entry cost removed by closing k of the parcel's lots: section 2's rounding
        against the holder (up for a long, down for a short); all of it on a full close."""
        held = abs(self.qty)
        if k == held:
            return self.cost
        if self.qty > 0:
            return div_ceil(self.cost * k, held)
        return div_floor(self.cost * k, held)


def equity_shares(equity: int, notionals: list[tuple[str, int]]) -> dict[str, int]:
    """Share the pool's equity over its positions in proportion to mark notional:
    share_i = floor(E x N_i / sum N) (toward minus infinity, also when E < 0); the rest
    E - sum of shares goes to the largest N_i, ties to the smallest symbol.

    >>> equity_shares(100, [("A", 1), ("B", 2)])
    {'A': 33, 'B': 67}
    >>> equity_shares(-100, [("A", 1), ("B", 1)])
    {'A': -50, 'B': -50}
    """
    total = sum(n for _, n in notionals)
    if total == 0:
        shares = {s: 0 for s, _ in notionals}
        if notionals:
            shares[min(s for s, _ in notionals)] = equity
        return shares
    shares = {s: div_floor(equity * n, total) for s, n in notionals}
    largest = min(notionals, key=lambda item: (-item[1], item[0]))[0]
    shares[largest] += equity - sum(shares.values())
    return shares


def takeover_shares(equity: int, positions: list[tuple[str, int, int]]) -> dict[str, int]:
    """`equity_shares` for a takeover, over (symbol, signed qty, mark notional): a short's
    bankruptcy notional N + share cannot be negative, so when the equity is so far below
    zero that a short's share would be under -N, it is held at -N (B = 0) and the excess
    goes to the largest long (ties: smallest symbol), whose B can grow without bound. With
    no long to carry it, the shares sum to more than the equity and the account is left
    with that deficit, which the insurance fund covers (docs/run.md).

    >>> takeover_shares(-900, [("X", 10, 10), ("Y", -1, 100)])
    {'X': -800, 'Y': -100}
    """
    shares = equity_shares(equity, [(s, n) for s, _, n in positions])
    excess = 0
    for symbol, qty, at_mark in positions:
        if qty < 0 and shares[symbol] < -at_mark:
            excess += shares[symbol] + at_mark
            shares[symbol] = -at_mark
    if excess:
        carrier = None  # the largest long by mark notional, ties to the smallest symbol
        for symbol, qty, at_mark in positions:
            if qty > 0 and (carrier is None or (-at_mark, symbol) < (-carrier[1], carrier[0])):
                carrier = (symbol, at_mark)
        if carrier is not None:
            shares[carrier[0]] += excess
    return shares


def bankruptcy_notional(qty: int, mark_notional: int, share: int) -> int:
    """B: the notional at which the position's close leaves its equity share at zero.
    A long's B = N - share, a short's B = N + share."""
    return mark_notional - share if qty > 0 else mark_notional + share


def display_price(notional: int, qty: int, k: int) -> int:
    """notional / (qty x K) rounded to the nearest tick, ties up (takeover fills).

    >>> display_price(25, 2, 5), display_price(26, 2, 5), display_price(24, 2, 5)
    (3, 3, 2)
    """
    unit = abs(qty) * k
    return div_floor(2 * notional + unit, 2 * unit)


def safe_price(notional: int, qty: int, k: int, *, selling: bool, step: int = 1) -> int:
    """notional / (qty x K) rounded to the price step on the seller's or buyer's safe side:
    up when selling, down when buying (an IOC at bankruptcy, the display of ADL fills)."""
    unit = abs(qty) * k * step
    return (div_ceil(notional, unit) if selling else div_floor(notional, unit)) * step


def band_limit(mark: int, band: int, *, selling: bool, step: int = 1) -> int:
    """The sweep's limit: sell at mark x (1e8 - band) / 1e8 rounded up to the tick, buy at
    mark x (1e8 + band) / 1e8 rounded down (to the instrument's price step).

    >>> band_limit(280_000, 5_000_000, selling=True), band_limit(944, 5_000_000, selling=True)
    (266000, 897)
    """
    if selling:
        return div_ceil(mark * (SCALE - band), SCALE * step) * step
    return max(step, div_floor(mark * (SCALE + band), SCALE * step) * step)


def sweep_size(parcel: Parcel, queue: list[tuple[int, int]], k: int, fund: int, floor: int) -> tuple[int, int]:
    """(lots the book holds inside the band, the largest lots a sweep may take so that the
    fund stays at or above `floor`, or above where it starts if that is lower).

    `queue` is the resting orders a taker would meet, (price, qty) in price-time order,
    all inside the band. The fills are simulated one maker order at a time exactly as
    `Clearing.settle_parcel_fill` will book them (each removes cost from what is left of
    the parcel with section 2's rounding), so the prediction is the outcome to the minor
    unit. Within one fill the fund moves monotonically (up while the fill price beats the
    parcel's average cost per lot, down otherwise); prices only worsen along the queue, so
    the lots allowed are everything up to the first fill that would cross the floor, plus
    the part of that fill found by bisection."""
    bar = min(floor, fund)
    held, cost, long_parcel = abs(parcel.qty), parcel.cost, parcel.qty > 0
    lots, balance, allowed, stopped = 0, fund, 0, False

    def after(price: int, part: int, left: int, cost_left: int) -> int:
        removed = cost_left if part == left else (
            div_ceil(cost_left * part, left) if long_parcel else div_floor(cost_left * part, left))
        exit_ = price * part * k
        return balance + (exit_ - removed if long_parcel else removed - exit_)

    for price, qty in queue:
        left = held - lots
        take = min(qty, left)
        if take <= 0:
            break
        full = after(price, take, left, cost)
        if not stopped:
            if full >= bar:
                allowed = lots + take
            else:
                lo, hi = 0, take  # after(lo) >= bar (balance >= bar), after(hi) < bar
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    if after(price, mid, left, cost) >= bar:
                        lo = mid
                    else:
                        hi = mid
                allowed = lots + lo
                stopped = True
        removed = cost if take == left else (
            div_ceil(cost * take, left) if long_parcel else div_floor(cost * take, left))
        cost -= removed
        lots += take
        balance = full
    return lots, allowed


# ---------------------------------------------------------------------------- ADL ranks
# A rank is an exact fraction kept as (numerator, denominator > 0): comparing two is one
# cross-multiplication, far cheaper than Fraction objects when a crash ranks thousands of
# positions per ADL. None ranks last.

def bitmex_rank(qty: int, cost: int, mark_notional: int, share: int) -> tuple[int, int] | None:
    """PnL% x effective leverage when PnL% > 0, PnL% / effective leverage otherwise;
    PnL% = (mark value - entry value) / |entry value| (values signed, shorts negative);
    effective leverage = |mark value| / (mark value - bankruptcy value) = N / share.
    None (ranks last) when the equity share is <= 0.

    >>> bitmex_rank(-800, 25_600, 22_400, 5_200)  # CLEARING.md Example 10: 7/13
    (71680000, 133120000)
    """
    if share <= 0 or cost == 0:
        return None
    gain = mark_notional - cost if qty > 0 else cost - mark_notional  # PnL% = gain / cost
    if mark_notional == 0:  # no exposure at the mark: effective leverage 0
        return (0, 1) if gain > 0 else None
    if gain > 0:
        return gain * mark_notional, cost * share  # (gain / cost) x (N / share)
    return gain * share, cost * mark_notional  # (gain / cost) / (N / share)


def binance_rank(unrealised: int, wallet: int, maintenance: int, equity: int,
                 one_unit: int) -> tuple[int, int]:
    """max(0, unrealised PnL) / max(1 unit of the asset, wallet) x maintenance / equity
    (0 when equity <= 0)."""
    if equity <= 0:
        return 0, 1
    return max(0, unrealised) * maintenance, max(one_unit, wallet) * equity


def better(a: tuple[int, int] | None, b: tuple[int, int] | None) -> bool:
    """True when rank `a` is strictly above rank `b` (None is below every rank)."""
    if a is None:
        return False
    if b is None:
        return True
    return a[0] * b[1] > b[0] * a[1]


def rank_text(rank: tuple[int, int] | None) -> str:
    """The rank as an exact reduced fraction for the `adl` output ("7/13"), or "last"."""
    if rank is None:
        return "last"
    return str(Fraction(*rank))


def _rank_key(item: tuple[str, tuple[int, int] | None]) -> tuple[bool, int, str]:
    """A C-sortable key: None ranks last; else floor(rank x 2^64), larger first; then the id."""
    rank = item[1]
    if rank is None:
        return True, 0, item[0]
    return False, -((rank[0] << 64) // rank[1]), item[0]


def _exact(x: tuple, y: tuple) -> int:
    if better(x[1], y[1]):
        return -1
    if better(y[1], x[1]):
        return 1
    return -1 if x[0] < y[0] else (1 if x[0] > y[0] else 0)


def rank_order(candidates: list[tuple[str, tuple[int, int] | None]]) -> list[tuple[str, tuple[int, int] | None]]:
    """(account, rank) pairs best first, ties by account id, exactly, with no floats: one
    C-level sort by an integer key, floor(rank x 2^64) (monotone in the rank, so unequal
    keys are already in the right order), then every run of equal keys re-sorted by
    exact cross-multiplication.

    >>> rank_order([("b", (1, 3)), ("a", None), ("c", (2, 6)), ("d", (1, 2))])
    [('d', (1, 2)), ('b', (1, 3)), ('c', (2, 6)), ('a', None)]
    >>> rank_order([("b", (2, 6)), ("a", (1, 3)), ("c", (10**30 + 1, 3 * 10**30))])
    [('c', (1000000000000000000000000000001, 3000000000000000000000000000000)), ('a', (1, 3)), ('b', (2, 6))]
    """
    keyed = [(_rank_key(item), item) for item in candidates]
    keyed.sort()
    ranked = [key[1] for key, _ in keyed if not key[0]]
    if len(set(ranked)) == len(ranked):  # no two ranks share a key (checked in C)
        return [item for _, item in keyed]
    result: list[tuple[str, tuple[int, int] | None]] = []
    i = 0
    while i < len(keyed):
        j = i + 1
        while j < len(keyed) and keyed[j][0][:2] == keyed[i][0][:2]:
            j += 1
        run = [item for _, item in keyed[i:j]]
        if len(run) > 1 and not keyed[i][0][0]:
            run.sort(key=cmp_to_key(_exact))
        result += run
        i = j
    return result
