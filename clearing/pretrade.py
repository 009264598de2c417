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
    order_notional = price * abs(qty_signed) * k
    initial = tiers.initial(order_notional)
    taker_fee = fee(order_notional, taker_rate)
    if rate is not None:
        initial = to_valuation(initial, rate[0], rate[1], up=True)
        taker_fee = to_valuation(taker_fee, rate[0], rate[1], up=True)
    return initial, taker_fee
