"""Build matcher scenarios from short instruction tuples and read results compactly."""

from __future__ import annotations

from matching import Matcher, SymbolRules
from matching.records import expand
from matching.types import (
    ACTION_NAMES, SIDE_NAMES, STP_NAMES, TIF_NAMES, TYPE_NAMES,
)

# Symbols of the unit tests: X has the plain 1-tick/1-lot grid; Y trades on every 5th tick,
# in steps of 2 lots, at least 4 lots.
RULES = {"X": SymbolRules(), "Y": SymbolRules(price_step=5, qty_step=2, min_qty=4)}


def new(oid, acct, side, price, qty, *, tif="gtc", type="limit", stp="cancel_taker", symbol="X"):
    return ("new", acct, symbol, oid, side, type, tif, price, qty, stp)


def market(oid, acct, side, qty, *, tif="ioc", stp="cancel_taker", symbol="X"):
    return ("new", acct, symbol, oid, side, "market", tif, None, qty, stp)


def cancel(oid, acct, *, symbol="X"):
    return ("cancel", acct, symbol, oid, "buy", "limit", "gtc", None, None, "cancel_taker")


def amend(oid, acct, *, price=None, qty=None, symbol="X"):
    return ("amend", acct, symbol, oid, "buy", "limit", "gtc", price, qty, "cancel_taker")


def apply(matcher, instr, ts: int = 1) -> None:
    action, acct, symbol, oid, side, typ, tif, price, qty, stp = instr
    matcher.apply_columns(
        [ts], [ACTION_NAMES.index(action)], [acct], [symbol], [oid], [SIDE_NAMES.index(side)],
        [TYPE_NAMES.index(typ)], [TIF_NAMES.index(tif)], [price], [qty], [STP_NAMES.index(stp)],
    )


def compact(row: tuple) -> tuple:
    """("fill", price, qty, taker_id, maker_id) or (event, account, order_id, reason, remaining)."""
    if row[0] == "fill":
        return ("fill", row[3], row[4], row[6], row[7])
    event, _ts, account, _symbol, order_id, reason, remaining = row
    return (event, account, order_id, reason, remaining)


def run(state: list[tuple], action: tuple, rules=RULES) -> tuple[Matcher, list[tuple]]:
    """Apply `state`, discard its output, apply `action`; return the matcher and the
    action's rows in compact form."""
    m = Matcher(rules)
    for i, instr in enumerate(state):
        apply(m, instr, ts=i + 1)
    m.out.clear()
    apply(m, action, ts=len(state) + 1)
    rows = [compact(r) for r in expand(m.out)]
    for book in m.books.values():
        book.check_invariants()
    return m, rows


def levels(m: Matcher, symbol: str = "X") -> list[tuple]:
    """(side, price, [order ids in priority]) for every level, bids then asks, best first."""
    book = m.books[symbol]
    out = []
    for side in (0, 1):
        for level in book.levels_in_priority(side):
            out.append((SIDE_NAMES[side], level.price, list(level.orders)))
    return out
