"""Positions with an integer cost basis, and realised PnL (CLEARING.md section 2).

A position is (signed qty in lots, entry cost as an unsigned integer notional); the entry
price is derived, never stored. Opening or adding adds the fill's notional to the cost.
Closing k of q lots removes cost x k / q rounded against the user: up for a long (less
profit), down for a short; a full close removes all of it. Realised PnL: long = exit
notional - removed cost; short = removed cost - exit notional. A fill through zero is a
close of the old side, then an open of the new one; its notional is split between the two
parts in proportion to lots, the closing part rounded against the user (down when a long
sells, up when a short buys) and the opening part taking the rest, so the parts sum to the
fill's notional and conservation stays exact (DESIGN.md's Conservation).
"""

from __future__ import annotations

from clearing.money import div_ceil, div_floor


class Position:
    """One account's position in one symbol. A plain class, not a dataclass: compiled, it
    is an extension type with a C qty field (positions.pxd), which a dataclass cannot be."""

    __slots__ = ("qty", "cost")

    def __init__(self, qty: int = 0, cost: int = 0) -> None:
        self.qty = qty  # signed lots: long > 0, short < 0, flat 0
        self.cost = cost  # unsigned entry notional, minor units; 0 when flat

    def __repr__(self) -> str:
        return f"Position(qty={self.qty}, cost={self.cost})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Position):
            return NotImplemented
        return self.qty == other.qty and self.cost == other.cost

    __hash__ = None  # mutable, like the dataclass it replaces

    def signed_cost(self) -> int:
        """Entry cost with the position's sign (long +, short -): the conservation term."""
        return self.cost if self.qty >= 0 else -self.cost

    def unrealised(self, mark_ticks: int, k: int) -> int:
        """Long: qty x mark x K - cost; short: cost - |qty| x mark x K."""
        at_mark = abs(self.qty) * mark_ticks * k
        return at_mark - self.cost if self.qty > 0 else self.cost - at_mark


def apply_fill(pos: Position, qty_signed: int, fill_notional: int) -> int:
    """Book a fill of `qty_signed` lots (buy > 0) with exact notional into `pos`; return
    the realised PnL (minor units, signed) of the part that closed."""
    assert qty_signed != 0 and fill_notional >= 0
    if pos.qty == 0 or (pos.qty > 0) == (qty_signed > 0):
        pos.qty += qty_signed
        pos.cost += fill_notional
        return 0
    held = abs(pos.qty)
    traded = abs(qty_signed)
    closing = min(held, traded)
    long_before = pos.qty > 0
    # The fill's notional for the closing lots (all of it unless the fill flips).
    if closing == traded:
        exit_notional = fill_notional
    elif long_before:
        exit_notional = div_floor(fill_notional * closing, traded)
    else:
        exit_notional = div_ceil(fill_notional * closing, traded)
    if closing == held:
        removed = pos.cost
    elif long_before:
        removed = div_ceil(pos.cost * closing, held)
    else:
        removed = div_floor(pos.cost * closing, held)
    realised = exit_notional - removed if long_before else removed - exit_notional
    pos.qty += qty_signed
    if closing == traded:  # reduced or closed
        pos.cost -= removed
    else:  # flipped: the rest of the fill opens the other side
        pos.cost = fill_notional - exit_notional
    return realised
