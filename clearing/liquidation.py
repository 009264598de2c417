"""Liquidation arithmetic (CLEARING.md section 5): equity shares, bankruptcy notionals,
parcels, the sweep's floor-limited size, liquidation prices, and the ADL rankings.

Pure functions and one record type; the replay (backtest/replay.py) sequences them
against the matcher and the ledger (clearing/settlement.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

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
    mark: int  # mark at the trigger, ticks
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


def sweep_size(parcel: Parcel, levels: list[tuple[int, int]], k: int, fund: int, floor: int) -> tuple[int, int]:
    """(lots the book holds inside the band, the largest lots whose result keeps the fund
    at or above `floor`). `levels` are (price, qty) in the order a taker meets them, all
    inside the band. The fund after k lots is fund + exit(k) - removal(k) for a long
    parcel (removal(k) - exit(k) for a short); it rises over levels better than bankruptcy
    and falls over worse ones, so the lots it allows are a prefix, found by bisection."""
    held = abs(parcel.qty)
    prices: list[int] = []  # cumulative lots and notional at each level end
    cum_lots: list[int] = []
    cum_notional: list[int] = []
    lots = notional = 0
    for price, qty in levels:
        take = min(qty, held - lots)
        if take <= 0:
            break
        lots += take
        notional += price * take * k
        prices.append(price)
        cum_lots.append(lots)
        cum_notional.append(notional)
    available = lots

    def exit_notional(n: int) -> int:
        before_lots = before_notional = 0
        for price, end, cum in zip(prices, cum_lots, cum_notional):
            if n <= end:
                return before_notional + price * (n - before_lots) * k
            before_lots, before_notional = end, cum
        return before_notional

    def fund_after(n: int) -> int:
        result = exit_notional(n) - parcel.removal(n) if parcel.qty > 0 else parcel.removal(n) - exit_notional(n)
        return fund + result

    if available == 0 or fund_after(available) >= floor:
        return available, available
    # fund_after is unimodal: find its peak (the end of the last level better than
    # bankruptcy), then the last n past it with fund_after(n) >= floor by bisection.
    peak = 0
    for end in cum_lots:
        if fund_after(end) < fund_after(peak):
            break
        peak = end
    if fund_after(peak) < floor:
        return available, 0
    lo, hi = peak, available  # fund_after(lo) >= floor > fund_after(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fund_after(mid) >= floor:
            lo = mid
        else:
            hi = mid
    return available, lo


# ---------------------------------------------------------------------------- ADL ranks

def bitmex_rank(qty: int, cost: int, mark_notional: int, share: int) -> Fraction | None:
    """PnL% x effective leverage when PnL% > 0, PnL% / effective leverage otherwise;
    PnL% = (mark value - entry value) / |entry value| (values signed, shorts negative);
    effective leverage = |mark value| / (mark value - bankruptcy value) = N / share.
    None (ranks last) when the equity share is <= 0.

    >>> bitmex_rank(-800, 25_600, 22_400, 5_200)
    Fraction(7, 13)
    """
    if share <= 0 or cost == 0:
        return None
    sign = 1 if qty > 0 else -1
    pnl = Fraction(sign * (mark_notional - cost), cost)
    leverage = Fraction(mark_notional, share)
    if leverage == 0:
        return pnl
    return pnl * leverage if pnl > 0 else pnl / leverage


def binance_rank(unrealised: int, wallet: int, maintenance: int, equity: int, one_unit: int) -> Fraction:
    """max(0, unrealised PnL) / max(1 unit of the asset, wallet) x maintenance / equity
    (0 when equity <= 0)."""
    if equity <= 0:
        return Fraction(0)
    return Fraction(max(0, unrealised), max(one_unit, wallet)) * Fraction(maintenance, equity)
