"""Clearing of fills and funding: fees, positions, realised PnL, conservation.

Fees (CLEARING.md section 1): each side pays notional x its rate / 1e8, a charge rounded
up; a negative maker rate is a rebate rounded down, paid by `fees`. Realised PnL of a
fill is booked between the account and its counterparty through the positions: each side's
realised amount goes to its balance; because both sides book the same notional, the sum of
balances minus signed entry costs stays constant (DESIGN.md's Conservation).

Funding (section 4): at a funding time every open position pays or receives
qty x mark x K x rate / 1e8; the payer rounds up, the receiver down, and the difference
goes to `rounding` (one entry per funding time and symbol).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

from clearing.ledger import Ledger
from clearing.money import fee, funding_amounts, notional
from clearing.positions import Position, apply_fill

FEES = "fees"
ROUNDING = "rounding"


@dataclass(frozen=True)
class FeeSchedule:
    """Maker and taker rates over 1e8 per fee tier; tier 0 is the base."""

    tiers: tuple[tuple[int, int], ...] = ((20_000, 50_000),)  # (maker, taker)

    def rates(self, tier: int) -> tuple[int, int]:
        return self.tiers[tier]


@dataclass(frozen=True)
class SymbolSpec:
    settle: str  # settlement asset
    k: int  # minor units per tick x lot


@dataclass
class Clearing:
    symbols: dict[str, SymbolSpec]
    fee_schedule: FeeSchedule = field(default_factory=FeeSchedule)
    ledger: Ledger = field(default_factory=Ledger)
    fee_tier: dict[str, int] = field(default_factory=dict)  # account -> tier (default 0)
    # (account, symbol) -> position; flat positions are removed.
    positions: dict[tuple[str, str], Position] = field(default_factory=dict)

    # Per asset: signed entry cost of the positions loaded at the start (conservation term).
    opening_cost: dict[str, int] = field(default_factory=dict)

    def load_position(self, account: str, symbol: str, qty: int, entry_price: int) -> None:
        """A position held when the replay starts: cost = entry price x |qty| x K.
        Call `check_opening` once every position is loaded."""
        if qty == 0:
            return
        spec = self.symbols[symbol]
        key = (account, symbol)
        if key in self.positions:
            raise ValueError(f"position loaded twice: account={account}, symbol={symbol}")
        pos = self.positions[key] = Position(qty, notional(entry_price, qty, spec.k))
        self.opening_cost[spec.settle] = self.opening_cost.get(spec.settle, 0) + pos.signed_cost()

    def check_opening(self) -> None:
        """Loaded positions must net to zero per symbol (DESIGN.md's Conservation); raise
        ValueError naming each symbol that does not."""
        bad = [f"{s}: net {self.net_qty(s)} lots" for s in sorted(self.symbols) if self.net_qty(s)]
        if bad:
            raise ValueError("opening positions do not net to zero: " + "; ".join(bad))

    def settle_fill(self, ts: int, symbol: str, price: int, qty: int, taker_side_buy: bool,
                    taker: str, maker: str, reference: str) -> tuple[int, int]:
        """Clear one book fill; return (taker_fee, maker_fee) as paid (negative = rebate)."""
        spec = self.symbols[symbol]
        n = notional(price, qty, spec.k)
        maker_rate = self.fee_schedule.rates(self.fee_tier.get(maker, 0))[0]
        taker_rate = self.fee_schedule.rates(self.fee_tier.get(taker, 0))[1]
        taker_fee = fee(n, taker_rate)
        maker_fee = fee(n, maker_rate)
        signed = qty if taker_side_buy else -qty
        for account, lots, paid in ((taker, signed, taker_fee), (maker, -signed, maker_fee)):
            realised = self._apply(account, symbol, lots, n)
            self.ledger.post(ts, account, spec.settle, realised, "realised_pnl", reference)
            if paid:
                self.ledger.transfer(ts, account, FEES, spec.settle, paid, "fee", reference)
        return taker_fee, maker_fee

    def _apply(self, account: str, symbol: str, lots: int, n: int) -> int:
        key = (account, symbol)
        pos = self.positions.get(key)
        if pos is None:
            pos = self.positions[key] = Position()
        realised = apply_fill(pos, lots, n)
        if pos.qty == 0:
            del self.positions[key]
        return realised

    def settle_funding(self, ts: int, symbol: str, mark: int, rate: int | Fraction,
                       reference: str) -> None:
        """Every open position in `symbol` pays or receives funding (rate > 0: longs pay),
        accounts in id order, one `funding` entry each; then one `rounding` entry books the
        residue (sum paid, rounded up, minus sum received, rounded down; never negative
        because positions net to zero)."""
        if rate == 0:
            return
        spec = self.symbols[symbol]
        residue = 0
        for (account, sym), pos in sorted(self.positions.items()):
            if sym != symbol:
                continue
            paid, received = funding_amounts(pos.qty, mark, spec.k, rate)
            if (pos.qty > 0) == (rate > 0):
                self.ledger.post(ts, account, spec.settle, -paid, "funding", reference)
                residue += paid
            else:
                self.ledger.post(ts, account, spec.settle, received, "funding", reference)
                residue -= received
        self.ledger.post(ts, ROUNDING, spec.settle, residue, "rounding", reference)

    def conservation_gap(self, asset: str) -> int:
        """Sum of balances - sum of signed entry costs - (opening balances - opening signed
        costs + deposits - withdrawals) for `asset`; 0 whenever the books are right."""
        costs = sum(p.signed_cost() for (_, s), p in self.positions.items()
                    if self.symbols[s].settle == asset)
        opening = self.ledger.external[asset] - self.opening_cost.get(asset, 0)
        return self.ledger.total(asset) - costs - opening

    def net_qty(self, symbol: str) -> int:
        return sum(p.qty for (_, s), p in self.positions.items() if s == symbol)
