"""Pre-trade checks a venue runs before an order reaches the matcher (CLEARING.md
section 3). Pure: the caller passes the account's current figures; nothing is mutated.

- A reduce-only order may only reduce: it is rejected `reduce_only_would_increase` when
  the account has no position against it or its qty exceeds the position (it would flip).
  Reduce-only orders are exempt from the margin check.
- Any other order is rejected `insufficient_margin` when equity minus the order's taker fee
  is below the total initial margin with the order included. An order's initial margin is
  |qty| x price x K / max_leverage(tier of that notional), rounded up, where price is the
  mark for a market order and max(mark, limit) for a limit order (the limit alone before
  the symbol's first mark); a market order before any mark cannot be priced and is
  rejected `no_mark_price`.
- In a multi-asset pool valued in another asset than the order's settlement asset (a
  USDC-M order in the USDT pool), the order's initial margin and taker fee are converted
  into the pool's units at the settlement asset's price, each rounded up (against the
  user), before they meet the pool's equity and margin in use.
"""

from __future__ import annotations

from dataclasses import dataclass

from clearing.collateral import to_valuation
from clearing.margin import MarginTiers
from clearing.money import fee

_WORD = 2**31  # the fast paths' factors and rates are below this in magnitude
_INT64_MAX = 2**63 - 1
_MONEY = 2**60  # headroom's amounts are below this in magnitude

R_INSUFFICIENT_MARGIN = "insufficient_margin"
R_REDUCE_ONLY_WOULD_INCREASE = "reduce_only_would_increase"
R_NO_MARK_PRICE = "no_mark_price"


@dataclass(frozen=True)
class OrderIntent:
    qty_signed: int  # lots, buy > 0
    limit: int | None  # ticks; None for a market order
    reduce_only: bool


def order_price(limit: int | None, mark: int | None) -> int | None:
    """The price an order's initial margin is taken at (see the module doc)."""
    if limit is None:
        return mark
    return limit if mark is None else max(mark, limit)


def order_initial_margin(intent: OrderIntent, mark: int | None, k: int, tiers: MarginTiers) -> int | None:
    """Initial margin of one open order, or None when it cannot be priced."""
    price = order_price(intent.limit, mark)
    if price is None:
        return None
    return tiers.initial(price * abs(intent.qty_signed) * k)


def check_order(intent: OrderIntent, *, position_qty: int, equity: int, initial_in_use: int,
                mark: int | None, k: int, tiers: MarginTiers, taker_rate: int,
                rate: tuple[int, int] | None = None) -> str | None:
    """None if the order may go to the matcher, else the reject reason.

    `initial_in_use` is the account's initial margin of positions and open orders before
    this order; `equity` is wallet plus unrealised PnL at the marks. `rate` is (price,
    minor units per whole unit) of the order's settlement asset in the units of `equity`
    when they differ (a USDC-M order in a multi-asset pool), else None.
    """
    return check_order_parts(intent.qty_signed, intent.limit, intent.reduce_only, position_qty, equity,
                             initial_in_use, mark, k, tiers, taker_rate, rate)


def check_order_parts(qty_signed: int, limit: int | None, reduce_only: bool, position_qty: int,
                      equity: int, initial_in_use: int, mark: int | None, k: int, tiers: MarginTiers,
                      taker_rate: int, rate: tuple[int, int] | None) -> str | None:
    """`check_order` with the intent's fields and every figure passed positionally, in
    check_order's order: the replay's per-order call, which would otherwise build an
    OrderIntent and parse keywords for each of the run's new orders."""
    if reduce_only:
        against = position_qty != 0 and (position_qty > 0) != (qty_signed > 0)
        if not against or abs(qty_signed) > abs(position_qty):
            return R_REDUCE_ONLY_WOULD_INCREASE
        return None
    needs = order_requirement(qty_signed, limit, mark, k, tiers, taker_rate, rate)
    if needs is None:
        return R_NO_MARK_PRICE
    initial, taker_fee = needs
    if equity - taker_fee < initial_in_use + initial:
        return R_INSUFFICIENT_MARGIN
    return None


def order_requirement(qty_signed: int, limit: int | None, mark: int | None, k: int, tiers: MarginTiers,
                      taker_rate: int, rate: tuple[int, int] | None) -> tuple[int, int] | None:
    """(initial margin, taker fee) of one order that is not reduce-only, in the pool's
    units (check_order's figures: the order passes when equity - taker fee >= margin in use
    + initial margin), or None when it cannot be priced (no_mark_price)."""
    price = order_price(limit, mark)
    if price is None:
        return None
    qty = abs(qty_signed)
    needs = small_requirement(price, qty, k, tiers, taker_rate)  # in 64 bits when it can be
    if needs is None:
        order_notional = price * qty * k
        needs = (tiers.initial(order_notional), fee(order_notional, taker_rate))
    if rate is None:
        return needs
    return (to_valuation(needs[0], rate[0], rate[1], up=True),
            to_valuation(needs[1], rate[0], rate[1], up=True))


# The 64-bit fast paths. Compiled, the names pretrade.pxd types are C long longs and the
# arithmetic on them is C's; floor division keeps Python's rounding (cdivision is off), so
# each gives the integers of the Python-int formula it stands for, which
# tests/clearing/test_pretrade.py holds it to. Each factor is below 2**31 (headroom's
# amounts below 2**60) and each product is checked against 2**63 - 1 before it is taken;
# whatever does not fit takes the Python-int path. Uncompiled, they are the same formulas
# on Python ints.

def small_int(x: int) -> int:
    """x when -2**31 < x < 2**31, else 2**31 (compiled: a C integer, read without an
    OverflowError for an int 64 bits cannot hold)."""
    try:
        v = x  # compiled: a C long long, or OverflowError
    except OverflowError:
        return _WORD
    return v if -_WORD < v < _WORD else _WORD


def headroom(equity: int, taker_fee: int, in_use: int, initial: int) -> int:
    """equity - taker_fee - in_use - initial: what an order leaves the account's open
    orders (check_order passes it when that covers their margin). In C when each amount is
    below 2**60 in magnitude (the result is then below 2**62)."""
    try:
        e, f, u, m = equity, taker_fee, in_use, initial  # compiled: C long longs, or OverflowError
    except OverflowError:
        return equity - taker_fee - in_use - initial
    if -_MONEY < e < _MONEY and -_MONEY < f < _MONEY and -_MONEY < u < _MONEY and -_MONEY < m < _MONEY:
        return e - f - u - m
    return equity - taker_fee - in_use - initial


def small_notional(price: int, qty: int, k: int) -> int:
    """price x qty x K when each factor is in [1, 2**31) and the product fits in 64 bits,
    else -1."""
    try:
        # Compiled: C long longs, or OverflowError. One try for the three, not small_int for
        # each: setting up a try block costs more than the conversions it guards.
        p, q, kk = price, qty, k
    except OverflowError:
        return -1
    if not (0 < p < _WORD and 0 < q < _WORD and 0 < kk < _WORD):
        return -1
    n = p * q  # < 2**62
    return n * kk if n <= _INT64_MAX // kk else -1


def notional_margin(price: int, qty: int, k: int, tiers: MarginTiers) -> int:
    """tiers.initial(price x qty x K): the initial margin of an order or position."""
    n = small_notional(price, qty, k)
    if 0 < n < tiers.first_below:
        return -(-n // tiers.first_leverage)  # div_ceil in the first tier
    return tiers.initial(price * qty * k)


def ceil_notional(price: int, qty: int, k: int, divisor: int) -> int:
    """ceil(price x qty x K / divisor), divisor > 0."""
    n = small_notional(price, qty, k)
    d = small_int(divisor)
    if n > 0 and 0 < d < _WORD:
        return -(-n // d)
    return -(-(price * qty * k) // divisor)


def small_requirement(price: int, qty: int, k: int, tiers: MarginTiers, taker_rate: int) -> tuple[int, int] | None:
    """(tiers.initial(n), fee(n, taker_rate)) for the notional n = price x qty x K, when n
    fits in 64 bits and lies in the first tier: the initial margin in C, the fee by `fee`
    (which has its own 64-bit path, clearing/money.py); else None (the caller computes both
    with Python ints)."""
    n = small_notional(price, qty, k)
    if not 0 < n < tiers.first_below:
        return None
    return -(-n // tiers.first_leverage), fee(n, taker_rate)  # div_ceil; a charge rounds up
