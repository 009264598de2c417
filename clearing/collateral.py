"""Multi-asset margin (CLEARING.md section 6): collateral value, debt interest, conversion.

Units: a balance is in its asset's minor units; `per_unit` is how many minor units make
one whole unit of the asset (1e8 for an asset whose minor unit is 0.00000001); a price is
in the valuation asset's (USDT's) minor units per whole unit of the asset; ratios and
rates are over SCALE (1e8). One rounding per figure, in the direction CLEARING.md gives:
collateral counts rounded down, a liability rounded up (against the user), interest
charged rounded up, conversion proceeds paid rounded down.

Formulas:
- collateral value of q > 0 = floor(sum over tiers of q_in_tier x ratio x price /
  (1e8 x per_unit)); nothing counts past the last tier; a stablecoin (no tiers) counts
  q x price / per_unit whole.
- a balance q < 0 counts -ceil(|q| x price / per_unit), no ratio.
- interest on a debt d > 0 at rate r: ceil(d x r / 1e8).
- converting q of X into Y: floor(q x price_X x (1e8 - spread) / (1e8 x per_unit_X) x
  per_unit_Y / price_Y), in one division.
- an amount a of a settlement asset in the pool's valuation units (a USDC-M position's
  unrealised PnL, margin or fee in a USDT-valued pool): a x price / per_unit, rounded down
  for what counts for the user (PnL: a loss so rounds up in size, like a liability),
  rounded up for what the user must hold (margin, fees); back from the pool's units (an
  equity share in a takeover): floor(v x per_unit / price), toward minus infinity.
"""

from __future__ import annotations

from dataclasses import dataclass

from clearing.money import SCALE, div_ceil


@dataclass(frozen=True)
class CollateralTiers:
    """An asset's tiered collateral ratios: `bounds[i]` is tier i's upper bound in the
    asset's minor units (cumulative, increasing), `ratios[i]` its ratio over 1e8."""

    bounds: tuple[int, ...]
    ratios: tuple[int, ...]

    def weighted(self, qty: int) -> int:
        """sum over tiers of qty_in_tier x ratio (minor units x 1e8), for qty >= 0.

        >>> CollateralTiers((100, 200), (90_000_000, 80_000_000)).weighted(150)
        13000000000
        """
        total = lower = 0
        for bound, ratio in zip(self.bounds, self.ratios):
            if qty <= lower:
                break
            total += (min(qty, bound) - lower) * ratio
            lower = bound
        return total


@dataclass(frozen=True)
class Collateral:
    """What valuing an account's balances needs: per asset its minor units per whole unit,
    its tiers (None: a stablecoin, 100% and uncapped) and its latest price."""

    per_unit: dict[str, int]
    tiers: dict[str, CollateralTiers | None]


def collateral_value(qty: int, price: int, per_unit: int, tiers: CollateralTiers | None) -> int:
    """One balance's contribution to effective margin, valuation minor units.

    >>> eth = CollateralTiers((100 * 10**8, 200 * 10**8, 300 * 10**8, 400 * 10**8),
    ...                       (90_000_000, 80_000_000, 70_000_000, 60_000_000))
    >>> collateral_value(350 * 10**8, 4_000 * 10**8, 10**8, eth) // 10**8  # Example 11
    1080000
    >>> collateral_value(-10_000 * 10**8, 10**8, 10**8, None) // 10**8
    -10000
    """
    if qty >= 0:
        weighted = qty * SCALE if tiers is None else tiers.weighted(qty)
        return weighted * price // (SCALE * per_unit)
    return -div_ceil(-qty * price, per_unit)


def effective_margin(balances: dict[str, int], prices: dict[str, int], collateral: Collateral) -> int:
    """Sum of collateral_value over an account's balances (asset -> minor units).

    An asset with no price yet counts 0 when positive and is an error when negative (a
    debt must be valued): the caller prices every settlement asset."""
    total = 0
    for asset in sorted(balances):
        qty = balances[asset]
        if qty == 0:
            continue
        price = prices.get(asset)
        if price is None:
            if qty < 0:
                raise ValueError(f"a debt in {asset} has no price to value it")
            continue
        total += collateral_value(qty, price, collateral.per_unit[asset], collateral.tiers.get(asset))
    return total


def to_valuation(amount: int, price: int, per_unit: int, *, up: bool) -> int:
    """`amount` minor units of an asset in valuation minor units at `price` (valuation
    minor units per whole unit): rounded up (`up`, a requirement) or down (a value).

    >>> to_valuation(-7, 99_990_000, 10**8, up=False), to_valuation(7, 99_990_000, 10**8, up=True)
    (-7, 7)
    >>> to_valuation(10**8, 99_990_000, 10**8, up=False)  # 1 USDC at 0.9999 USDT
    99990000
    """
    if up:
        return div_ceil(amount * price, per_unit)
    return amount * price // per_unit


def from_valuation(value: int, price: int, per_unit: int) -> int:
    """`value` valuation minor units in minor units of an asset at `price`, rounded toward
    minus infinity (a takeover's equity share, CLEARING.md section 5.2).

    >>> from_valuation(-99_990_000, 99_990_000, 10**8), from_valuation(-1, 99_990_000, 10**8)
    (-100000000, -2)
    """
    return value * per_unit // price


def interest_due(debt: int, rate: int) -> int:
    """Interest on a debt of `debt` minor units at `rate` over 1e8, rounded up.

    >>> interest_due(10_000 * 10**8, 500), interest_due(1_000_010_000_025, 500)
    (5000000, 5000051)
    """
    return div_ceil(debt * rate, SCALE)


def converted(qty: int, price_from: int, per_unit_from: int, price_to: int, per_unit_to: int,
              spread: int) -> int:
    """Minor units of Y paid for `qty` minor units of X at its price less `spread` (over
    1e8), rounded down.

    >>> converted(10**8, 4_000 * 10**8, 10**8, 10**8, 10**8, 100_000) // 10**8  # 1 ETH, 0.1%
    3996
    """
    return qty * price_from * (SCALE - spread) * per_unit_to // (SCALE * per_unit_from * price_to)


def needed_to_convert(target: int, price_from: int, per_unit_from: int, price_to: int, per_unit_to: int,
                      spread: int) -> int:
    """The least qty of X whose conversion pays at least `target` minor units of Y.

    >>> q = needed_to_convert(1_234_567, 4_000 * 10**8, 10**8, 10**8, 10**8, 100_000)
    >>> converted(q, 4_000 * 10**8, 10**8, 10**8, 10**8, 100_000) >= 1_234_567
    True
    >>> converted(q - 1, 4_000 * 10**8, 10**8, 10**8, 10**8, 100_000) < 1_234_567
    True
    """
    return div_ceil(target * SCALE * per_unit_from * price_to, price_from * (SCALE - spread) * per_unit_to)


def repayment_split(amount: int, accrued: int) -> tuple[int, int]:
    """(interest, principal) repaid by `amount` minor units of the indebted asset:
    accrued interest first (CLEARING.md section 6), the rest principal.

    >>> repayment_split(7, 5), repayment_split(3, 5)
    ((5, 2), (3, 0))
    """
    interest = min(amount, accrued)
    return interest, amount - interest
