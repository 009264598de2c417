"""Mark-price margin: tiers, maintenance and initial margin (CLEARING.md section 3).

A tier table is a list of (notional floor in minor units, MMR over 1e8, maintenance
amount in minor units, max leverage), floors ascending from 0; the last tier is
open-ended. Tables are checked at load: amount_i = amount_(i-1) + floor_i x
(MMR_i - MMR_(i-1)) / 1e8 exactly, which keeps the requirement continuous at the bounds.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

from clearing.money import SCALE, div_ceil


_INT64_MAX = (1 << 63) - 1  # the largest signed 64-bit integer (MarginTiers._fits)
_FIRST_CAP = 2**62  # MarginTiers.first_below when the first tier is open-ended


class TierError(ValueError):
    """A margin tier table that breaks a rule; the message names the tier."""


class MarginTiers:
    """One symbol's tier table. An immutable value (compared and hashed by its fields), kept
    a plain class rather than a frozen dataclass so that, compiled, it is an extension type
    (margin.pxd) whose lookups the replay calls in C."""

    __slots__ = ("floors", "mmr", "amounts", "max_leverage", "_fits", "first_below", "first_leverage")

    def __init__(self, floors: tuple[int, ...], mmr: tuple[int, ...], amounts: tuple[int, ...],
                 max_leverage: tuple[int, ...]) -> None:
        self.floors = floors  # minor units, ascending, floors[0] == 0
        self.mmr = mmr  # over SCALE
        self.amounts = amounts  # minor units
        self.max_leverage = max_leverage  # per tier, >= 1
        # Per tier: the largest notional for which `both` may use _both_fitting (notional x
        # mmr and the leverage fit in a signed 64-bit integer, the amount in half of one),
        # -1 for none. Derived from the fields above, so not part of the value (__eq__).
        self._fits = tuple(-1 if abs(a) > _INT64_MAX // 2 or abs(lev) > _INT64_MAX or abs(m) > _INT64_MAX
                           else _INT64_MAX // max(abs(m), 1)
                           for m, a, lev in zip(mmr, amounts, max_leverage))
        # The first tier's notional ceiling and max leverage, for clearing/pretrade.py's
        # 64-bit fast path (small_requirement). Compiled, these are C integers: when either
        # is 2**62 or more the ceiling is stored as 0 (no order's notional is below it, so
        # the fast path never applies and the Python-int path decides).
        below = floors[1] if len(floors) > 1 else _FIRST_CAP
        usable = floors[0] == 0 and 0 < below <= _FIRST_CAP and 1 <= max_leverage[0] < _FIRST_CAP
        self.first_below = below if usable else 0
        self.first_leverage = max_leverage[0] if usable else 1

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MarginTiers):
            return NotImplemented
        return (self.floors, self.mmr, self.amounts, self.max_leverage) == (
            other.floors, other.mmr, other.amounts, other.max_leverage)

    def __hash__(self) -> int:
        return hash((self.floors, self.mmr, self.amounts, self.max_leverage))

    def __repr__(self) -> str:
        return (f"MarginTiers(floors={self.floors}, mmr={self.mmr}, amounts={self.amounts}, "
                f"max_leverage={self.max_leverage})")

    @classmethod
    def from_rows(cls, rows: list[list[int]], *, max_leverage: int | None = None) -> MarginTiers:
        """Build from manifest rows [floor, mmr, amount] or [floor, mmr, amount, leverage];
        `max_leverage` applies to rows without a fourth column. Raises TierError."""
        if not rows:
            raise TierError("no tiers: give at least [0, mmr, 0]")
        floors, mmrs, amounts, levs = [], [], [], []
        for i, row in enumerate(rows):
            if len(row) not in (3, 4) or not all(isinstance(v, int) for v in row):
                raise TierError(f"tier {i}: expected [floor, mmr, amount(, max_leverage)] of integers, got {row!r}")
            lev = row[3] if len(row) == 4 else max_leverage
            if lev is None or lev < 1:
                raise TierError(f"tier {i}: max leverage missing or below 1")
            floors.append(row[0])
            mmrs.append(row[1])
            amounts.append(row[2])
            levs.append(lev)
        if floors[0] != 0:
            raise TierError(f"tier 0: floor must be 0, got {floors[0]}")
        if amounts[0] != 0:
            raise TierError(f"tier 0: maintenance amount must be 0, got {amounts[0]} "
                            "(a positive one makes small positions' maintenance negative)")
        for i in range(1, len(rows)):
            if floors[i] <= floors[i - 1]:
                raise TierError(f"tier {i}: floors must ascend ({floors[i - 1]} then {floors[i]})")
            step = floors[i] * (mmrs[i] - mmrs[i - 1])
            if step % SCALE or amounts[i] != amounts[i - 1] + step // SCALE:
                want = amounts[i - 1] + step / SCALE
                raise TierError(f"tier {i}: maintenance amount {amounts[i]} breaks continuity; "
                                f"amount_(i-1) + floor x (mmr_i - mmr_(i-1)) / 1e8 = {want}")
        for i, m in enumerate(mmrs):
            if not 0 <= m <= SCALE:
                raise TierError(f"tier {i}: mmr {m} outside 0..1e8")
            if m * levs[i] > SCALE:
                raise TierError(f"tier {i}: max leverage {levs[i]} needs less initial margin "
                                f"(1/{levs[i]}) than the maintenance rate {m} / 1e8: a position "
                                "could open already liquidatable")
        return cls(tuple(floors), tuple(mmrs), tuple(amounts), tuple(levs))

    def tier(self, notional_minor: int) -> int:
        """Index of the tier whose [floor, next floor) holds the notional. O(log tiers)."""
        return bisect_right(self.floors, notional_minor) - 1

    def maintenance(self, notional_minor: int) -> int:
        """notional x MMR(tier) / 1e8 - amount(tier), rounded up (one position)."""
        t = self.tier(notional_minor)
        return div_ceil(notional_minor * self.mmr[t] - self.amounts[t] * SCALE, SCALE)

    def initial(self, notional_minor: int) -> int:
        """notional / max_leverage(tier), rounded up (one position or open order)."""
        return div_ceil(notional_minor, self.max_leverage[self.tier(notional_minor)])

    def both(self, notional_minor: int) -> tuple[int, int]:
        """(maintenance, initial) of one position: one tier lookup for the two figures the
        replay needs after every fill and before every order."""
        t = bisect_right(self.floors, notional_minor) - 1
        if t < 0:  # below floors[0] (a negative notional): t is a C index, wraparound off
            return self.maintenance(notional_minor), self.initial(notional_minor)
        if 0 <= notional_minor <= self._fits[t]:
            return _both_fitting(notional_minor, self.mmr[t], self.amounts[t], self.max_leverage[t], SCALE)
        return (-((self.amounts[t] * SCALE - notional_minor * self.mmr[t]) // SCALE),
                -(-notional_minor // self.max_leverage[t]))


def _both_fitting(notional: int, mmr: int, amount: int, leverage: int, scale: int) -> tuple[int, int]:
    """MarginTiers.both in one tier when 0 <= notional <= the tier's _fits: notional x mmr
    and the leverage fit in a signed 64-bit integer, the amount in half of one (so the
    difference does too), and `scale` is SCALE. Compiled (margin.pxd), all of it is C
    arithmetic, with Python's floor division (cdivision off) and nothing that can overflow.
    The maintenance is ceil(notional x mmr / scale) - amount, which equals both's
    -floor((amount x scale - notional x mmr) / scale) (amount x scale is a multiple of
    scale) without the product amount x scale that may not fit."""
    return -(-(notional * mmr) // scale) - amount, -(-notional // leverage)


@dataclass(frozen=True)
class AccountMargin:
    """One single-asset cross account's figures at the marks, minor units."""

    equity: int  # wallet balance + unrealised PnL of every position
    maintenance: int  # sum of per-position maintenance margins
    initial: int  # sum of per-position initial margins

    @property
    def liquidatable(self) -> bool:
        """Equity at or below maintenance (equality liquidates; CLEARING.md section 3)."""
        return self.equity <= self.maintenance


def account_margin(wallet: int, positions: list[tuple[int, int, int, int, MarginTiers]]) -> AccountMargin:
    """Figures for a single-asset cross account.

    `positions` holds (qty signed lots, entry cost, mark ticks, K, tiers) per open
    position. O(positions); the replay calls it only for accounts an event touched.
    """
    equity = wallet
    maintenance = 0
    initial = 0
    for qty, cost, mark, k, tiers in positions:
        at_mark = abs(qty) * mark * k
        equity += at_mark - cost if qty > 0 else cost - at_mark
        maintenance += tiers.maintenance(at_mark)
        initial += tiers.initial(at_mark)
    return AccountMargin(equity, maintenance, initial)
