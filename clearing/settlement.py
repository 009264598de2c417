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

from dataclasses import dataclass
from fractions import Fraction

from clearing.collateral import (Collateral, converted, effective_margin, from_valuation, interest_due,
                                 repayment_split, to_valuation)
from clearing.ledger import EXCHANGE_ACCOUNTS, Ledger
from clearing.liquidation import Parcel, bankruptcy_notional, display_price, takeover_shares
from clearing.margin import AccountMargin, MarginTiers
from clearing.money import (SCALE, div_ceil, fee, funding_amounts_over, funding_lots_fitting,
                            funding_payment_fitting, notional)
from clearing.positions import Position, apply_fill
from matching.types import BUY, SELL

FEES = "fees"
ROUNDING = "rounding"
FUND = "insurance_fund"
MARKET = "market"  # the recorded liquidity of a market-data replay: pays no fees
FUNDING = "funding"  # first field of a funding payment record
FILL_ROW = "fill_row"  # a fills row with no order events: takeover and adl fills
INSURANCE = "insurance"  # an insurance_fund output row: the fund's balance changed
INTEREST = "interest"  # the exchange account paid interest on debt, and an interest row
CONVERSION = "conversion"  # the exchange account on the other side of every conversion
REPAYMENT = "repayment"  # a repayments output row
MULTI_ASSET = "multi_asset"
LINEAR_PERPETUAL = "linear_perpetual"


@dataclass(frozen=True)
class FeeSchedule:
    """Maker and taker rates over 1e8 per fee tier; tier 0 is the base."""

    tiers: tuple[tuple[int, int], ...] = ((20_000, 50_000),)  # (maker, taker)

    def rates(self, tier: int) -> tuple[int, int]:
        return self.tiers[tier]


class SymbolSpec:
    """What clearing needs of one instrument. An immutable value (compared and hashed by its
    fields), a plain class so that, compiled, it is an extension type (settlement.pxd)."""

    __slots__ = ("settle", "k", "tiers", "kind")

    def __init__(self, settle: str, k: int, tiers: MarginTiers | None = None,
                 kind: str = LINEAR_PERPETUAL) -> None:
        self.settle = settle  # settlement asset
        self.k = k  # minor units per tick x lot
        self.tiers = tiers  # margin tiers; None: no margin figures for the symbol
        self.kind = kind  # the manifest's instrument kind (multi-asset mode serves linear only)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SymbolSpec):
            return NotImplemented
        return (self.settle, self.k, self.tiers, self.kind) == (other.settle, other.k, other.tiers, other.kind)

    def __hash__(self) -> int:
        return hash((self.settle, self.k, self.tiers, self.kind))

    def __repr__(self) -> str:
        return f"SymbolSpec(settle={self.settle!r}, k={self.k}, tiers={self.tiers!r}, kind={self.kind!r})"


class Clearing:
    """Positions, balances and marks of every account; settles fills and funding.

    Records (ledger entries and funding payments) go to `out` (the ledger's list), in
    posting order; the run's writer numbers them with the matcher's records.

    A plain class (it was a dataclass; the constructor takes the same arguments) so that,
    compiled, it is an extension type (settlement.pxd): the replay reads its fields and
    calls its methods in C, many times per instruction.
    """

    def __init__(self, symbols: dict[str, SymbolSpec], fee_schedule: FeeSchedule | None = None,
                 ledger: Ledger | None = None, fee_tier: dict[str, int] | None = None,
                 positions: dict[str, dict[str, Position]] | None = None,
                 holders: dict[str, dict[str, Position]] | None = None,
                 marks: dict[str, int] | None = None, opening_cost: dict[str, int] | None = None,
                 parcels: list[Parcel] | None = None, live_parcels: dict[str, list[Parcel]] | None = None,
                 funding_withheld: dict[str, int] | None = None, multi: set[str] | None = None,
                 collateral: Collateral | None = None, valuation: str = "USDT",
                 asset_prices: dict[str, int] | None = None,
                 accrued: dict[tuple[str, str], int] | None = None) -> None:
        self.symbols = symbols
        self.fee_schedule = FeeSchedule() if fee_schedule is None else fee_schedule
        self.ledger = Ledger() if ledger is None else ledger
        self.fee_tier = {} if fee_tier is None else fee_tier  # account -> tier (default 0)
        # account -> symbol -> position, and the same objects as symbol -> account ->
        # position; flat positions are removed from both.
        self.positions = {} if positions is None else positions
        self.holders = {} if holders is None else holders
        self.marks = {} if marks is None else marks  # symbol -> latest mark, ticks
        # Per asset: signed entry cost of the positions loaded at the start (conservation term).
        self.opening_cost = {} if opening_cost is None else opening_cost
        # The insurance fund's parcels in takeover order (closed ones stay, qty 0), and the
        # open ones per symbol, also in takeover order.
        self.parcels = [] if parcels is None else parcels
        self.live_parcels = {} if live_parcels is None else live_parcels
        # Per asset: funding the fund could not pay above its floor, withheld from receivers.
        self.funding_withheld = {} if funding_withheld is None else funding_withheld
        # Multi-asset mode (CLEARING.md section 6): the accounts in it (one pool each, valued
        # in `valuation`), the collateral rules, the latest asset prices (valuation minor
        # units per whole unit) and accrued interest per (account, asset) (the part of a
        # debt a repayment clears first).
        self.multi = set() if multi is None else multi
        self.collateral = collateral
        self.valuation = valuation
        self.asset_prices = {} if asset_prices is None else asset_prices
        self.accrued = {} if accrued is None else accrued
        for symbol in self.symbols:
            self.holders.setdefault(symbol, {})
            self.live_parcels.setdefault(symbol, [])
        self.out = self.ledger.out

    def position(self, account: str, symbol: str) -> Position | None:
        held = self.positions.get(account)
        return None if held is None else held.get(symbol)

    def load_position(self, account: str, symbol: str, qty: int, entry_price: int) -> None:
        """A position held when the replay starts: cost = entry price x |qty| x K.
        Call `check_opening` once every position is loaded."""
        if qty == 0:
            return
        spec = self.symbols[symbol]
        if self.position(account, symbol) is not None:
            raise ValueError(f"position loaded twice: account={account}, symbol={symbol}")
        pos = self._open(account, symbol)
        pos.qty, pos.cost = qty, notional(entry_price, qty, spec.k)
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
        n = price * qty * spec.k
        schedule = self.fee_schedule.tiers
        maker_rate = 0 if maker == MARKET else schedule[self.fee_tier.get(maker, 0)][0]
        taker_rate = 0 if taker == MARKET else schedule[self.fee_tier.get(taker, 0)][1]
        taker_fee = fee(n, taker_rate)
        maker_fee = fee(n, maker_rate)
        signed = qty if taker_side_buy else -qty
        self._clear_side(ts, taker, symbol, signed, n, taker_fee, spec.settle, reference)
        self._clear_side(ts, maker, symbol, -signed, n, maker_fee, spec.settle, reference)
        return taker_fee, maker_fee

    def _clear_side(self, ts: int, account: str, symbol: str, lots: int, n: int, paid: int,
                    settle: str, reference: str) -> None:
        """One side of settle_fill: book `lots` (signed) of notional `n` into the account's
        position, then its realised PnL and its fee (paid to `fees`; negative: a rebate)."""
        ledger = self.ledger
        realised = self._apply(account, symbol, lots, n)
        if realised:
            ledger.post(ts, account, settle, realised, "realised_pnl", reference)
        if paid:
            ledger.post(ts, account, settle, -paid, "fee", reference)
            ledger.post(ts, FEES, settle, paid, "fee", reference)

    def _open(self, account: str, symbol: str) -> Position:
        pos = Position()
        held = self.positions.get(account)
        if held is None:
            held = self.positions[account] = {}
        held[symbol] = pos
        self.holders[symbol][account] = pos
        return pos

    def _apply(self, account: str, symbol: str, lots: int, n: int) -> int:
        self.ledger.changed.append(account)
        held = self.positions.get(account)
        pos = None if held is None else held.get(symbol)
        if pos is None:
            pos = self._open(account, symbol)
        realised = apply_fill(pos, lots, n)
        if pos.qty == 0:
            del self.holders[symbol][account]
            held = self.positions[account]
            del held[symbol]
            if not held:
                del self.positions[account]
        return realised

    def settle_funding(self, ts: int, symbol: str, mark: int, rate: int | Fraction,
                       reference: str, source: str = "table", fund_floor: int | None = None) -> list[str]:
        """Every open position in `symbol` pays or receives funding (rate > 0: longs pay),
        accounts in id order: a funding record and a `funding` ledger entry each; then
        `rounding` gets the residue (sum paid, rounded up, minus sum received, rounded down;
        never negative because positions net to zero) as one more pair. Returns the
        accounts that paid or received, in id order.

        The fund's parcels are positions and pay like any other, but with `fund_floor` the
        fund never pays below it (CLEARING.md section 5.4: the floor binds every payment
        but a collateral takeover): its receipts count first, then its parcels pay in id
        order while the balance stays at or above the floor (or at the balance, if already
        below). What it cannot pay, D, is withheld from the holders who receive (users;
        `market` too in a market-data replay), pro rata to their receipts (and added to
        `funding_withheld`): each one's cut is ceil(D x receipt / sum of receipts) (credits
        round down), at most the receipt; the excess of the cuts over D goes to `rounding`
        with the residue, which stays >= 0. Money in equals money out, exactly.

        A funding record is (FUNDING, ts, symbol, account, qty, mark, rate numerator, rate
        denominator (the rate over 1e8 as an exact fraction), signed amount, source)."""
        rate = Fraction(rate)  # a zero rate still writes its rows (amount 0, the source named)
        if self.live_parcels[symbol]:
            return self._settle_funding_with_fund(ts, symbol, mark, rate, reference, source, fund_floor)
        # No parcel of the fund's: every payer is a user (or `market`), one position each,
        # so the rows are in account order and the fund's floor has nothing to limit.
        holders = self.holders[symbol]
        accounts = sorted(holders)
        if not accounts:
            return []
        spec = self.symbols[symbol]
        out = self.out
        ledger = self.ledger
        settle = spec.settle
        k = spec.k
        num, den = rate.numerator, rate.denominator
        num_abs, per, longs_pay = abs(num), den * SCALE, rate > 0
        # A holder of at most `fits` lots takes the C path (funding_payment_fitting).
        unit = mark * k * num_abs
        fits = funding_lots_fitting(mark, k, num_abs, per)
        residue = 0
        for account in accounts:
            pos = holders[account]
            qty = pos.qty
            amount = _funding_amount(qty, (qty > 0) == longs_pay, mark, k, num_abs, per, unit, fits)
            residue -= amount
            out.append((FUNDING, ts, symbol, account, qty, mark, num, den, amount, source))
            ledger.post(ts, account, settle, amount, "funding", reference)
        out.append((FUNDING, ts, symbol, ROUNDING, 0, mark, num, den, residue, source))
        ledger.post(ts, ROUNDING, settle, residue, "rounding", reference)
        return accounts

    def _settle_funding_with_fund(self, ts: int, symbol: str, mark: int, rate: Fraction,
                                  reference: str, source: str, fund_floor: int | None) -> list[str]:
        """settle_funding when the fund holds parcels in `symbol`: they pay and receive
        among the users, in (account, parcel) order, under the fund's floor."""
        spec = self.symbols[symbol]
        out = self.out
        num, den = rate.numerator, rate.denominator
        holders = self.holders[symbol]
        payers: list[tuple[str, int, object]] = [(a, -1, holders[a]) for a in holders]
        payers += [(FUND, i, p) for i, p in enumerate(self.live_parcels[symbol])]
        if not payers:
            return []
        payers.sort(key=lambda e: (e[0], e[1]))
        amounts = []
        # funding_amounts per holder, with the rate split once (_funding_amount).
        num_abs, per, longs_pay = abs(num), den * SCALE, rate > 0
        unit = mark * spec.k * num_abs
        fits = funding_lots_fitting(mark, spec.k, num_abs, per)
        for _, _, pos in payers:
            amounts.append(_funding_amount(pos.qty, (pos.qty > 0) == longs_pay, mark, spec.k, num_abs, per,
                                           unit, fits))
        if fund_floor is not None:
            self._limit_fund_funding(payers, amounts, spec.settle, fund_floor)
        # The fund's receipts are booked before its payments, so its balance after every
        # row stays at or above the floor.
        rows = sorted(zip(payers, amounts), key=lambda r: (r[0][0], r[0][1] >= 0 and r[1] < 0, r[0][1]))
        residue = 0
        for (account, index, pos), amount in rows:
            residue -= amount
            out.append((FUNDING, ts, symbol, account, pos.qty, mark, num, den, amount, source))
            if index < 0:
                self.ledger.post(ts, account, spec.settle, amount, "funding", reference)
            else:
                self.fund_post(ts, spec.settle, amount, "funding", reference, "funding",
                               pos.liquidation_id)
        out.append((FUNDING, ts, symbol, ROUNDING, 0, mark, num, den, residue, source))
        self.ledger.post(ts, ROUNDING, spec.settle, residue, "rounding", reference)
        return sorted({a for a, i, _ in payers if i < 0})

    def _limit_fund_funding(self, payers: list[tuple[str, int, object]], amounts: list[int],
                            asset: str, floor: int) -> None:
        """Cut the fund's funding payments to what it holds above `floor` and the users'
        receipts by what it could not pay (settle_funding's rule), in place."""
        balance = self.ledger.balance(FUND, asset)
        room = balance - min(floor, balance)
        room += sum(a for (acct, i, _), a in zip(payers, amounts) if i >= 0 and a > 0)
        unpaid = 0
        for j, ((_, index, _), amount) in enumerate(zip(payers, amounts)):
            if index >= 0 and amount < 0:
                pays = min(-amount, room)
                room -= pays
                unpaid += -amount - pays
                amounts[j] = -pays
        if unpaid == 0:
            return
        self.funding_withheld[asset] = self.funding_withheld.get(asset, 0) + unpaid
        receivers = [j for j, ((_, index, _), a) in enumerate(zip(payers, amounts)) if index < 0 and a > 0]
        total = sum(amounts[j] for j in receivers)
        # The users are owed at least the unpaid amount but for the rounding of the rows;
        # should their receipts fall short of it, each loses all it was owed (and the
        # residue, users' round-ups plus the fund's room, stays >= 0).
        for j in receivers:
            amounts[j] -= min(amounts[j], div_ceil(unpaid * amounts[j], total))

    def fund_post(self, ts: int, asset: str, amount: int, kind: str, reference: str, cause: str,
                  liquidation_id: int | None) -> None:
        """Move `amount` into the insurance fund's balance and record the change with its
        cause in the `insurance_fund` output (INSURANCE, ts, asset, change, balance after,
        cause, liquidation id)."""
        if amount == 0:
            return
        self.ledger.post(ts, FUND, asset, amount, kind, reference)
        self.fund_record(ts, asset, amount, cause, liquidation_id)

    def fund_record(self, ts: int, asset: str, change: int, cause: str, liquidation_id: int | None) -> None:
        """The `insurance_fund` row of a change already booked to the fund's balance."""
        self.out.append((INSURANCE, ts, asset, change, self.ledger.balance(FUND, asset), cause,
                         liquidation_id))

    # ------------------------------------------------------------------ liquidation

    def takeover(self, ts: int, account: str, asset: str, first_id: int, execution: str) -> list[Parcel]:
        """Take every position of `account` settling in `asset` into the insurance fund at
        its bankruptcy notional (CLEARING.md section 5.2): the pool's equity at the marks is
        shared over the positions by mark notional; each position becomes a parcel with
        liquidation id first_id, first_id + 1, ... (symbols in name order) and a `takeover`
        fills row; the account realises exit at B, which leaves its equity at exactly 0.

        In a multi-asset pool a position settling in another asset (USDC-M) enters the
        sharing at its mark notional in pool units (rounded down), its share converts back
        at the same price toward minus infinity (section 5.2), and its realised PnL and its
        parcel are in its own settlement asset; the pool's equity may then stay a few minor
        units above 0, which the collateral takeover passes to the fund."""
        held = self.positions.get(account, {})
        symbols = sorted(s for s in held if self.pool_asset(account, s) == asset)
        equity = self.pool(account, asset).equity
        notionals = []
        at_marks = []
        for symbol in symbols:
            pos = held[symbol]
            mark = self.marks.get(symbol)
            at_mark = pos.cost if mark is None else abs(pos.qty) * mark * self.symbols[symbol].k
            at_marks.append(at_mark)
            notionals.append((symbol, pos.qty, self.in_pool(account, symbol, at_mark)))
        shares = takeover_shares(equity, notionals)
        parcels = []
        for i, (symbol, _, _) in enumerate(notionals):
            spec = self.symbols[symbol]
            qty = held[symbol].qty
            b = bankruptcy_notional(qty, at_marks[i], self.from_pool(account, symbol, shares[symbol]))
            liquidation_id = first_id + i
            reference = f"liquidation:{liquidation_id}"
            realised = self._apply(account, symbol, -qty, b)
            self.ledger.post(ts, account, spec.settle, realised, "realised_pnl", reference)
            parcel = Parcel(liquidation_id, account, symbol, spec.settle, ts,
                            self.marks.get(symbol), qty, b, qty, b, execution)
            self.parcels.append(parcel)
            self.live_parcels[symbol].append(parcel)
            parcels.append(parcel)
            self.out.append((FILL_ROW, ts, symbol, display_price(b, qty, spec.k), abs(qty),
                             SELL if qty > 0 else BUY, None, None, account, FUND, 0, 0,
                             "takeover", b))
        return parcels

    def settle_parcel_fill(self, ts: int, parcel: Parcel, price: int, qty: int, maker: str,
                           reference: str) -> int:
        """Clear a book fill of the fund's liquidation order working `parcel`: the parcel
        closes `qty` lots (section 2's rounding: its removed cost is the bankruptcy notional
        of those lots), the fund realises surplus (+) or shortfall (-), and pays no fee; the
        maker is cleared as usual and pays its maker fee. Returns the maker fee."""
        spec = self.symbols[parcel.symbol]
        n = price * qty * spec.k
        maker_fee = 0 if maker == MARKET else fee(n, self.fee_schedule.tiers[self.fee_tier.get(maker, 0)][0])
        long_parcel = parcel.qty > 0
        realised = self._apply(maker, parcel.symbol, qty if long_parcel else -qty, n)
        if realised:
            self.ledger.post(ts, maker, spec.settle, realised, "realised_pnl", reference)
        if maker_fee:
            self.ledger.post(ts, maker, spec.settle, -maker_fee, "fee", reference)
            self.ledger.post(ts, FEES, spec.settle, maker_fee, "fee", reference)
        removed = parcel.removal(qty)
        result = n - removed if long_parcel else removed - n
        parcel.qty += -qty if long_parcel else qty
        parcel.cost -= removed
        parcel.filled_qty += qty
        parcel.exit_notional += n
        parcel.removed_cost += removed
        parcel.fund_result += result
        self._forget_if_closed(parcel)
        self.fund_post(ts, spec.settle, result, "insurance", reference,
                       "surplus" if result > 0 else "shortfall", parcel.liquidation_id)
        return maker_fee

    def _forget_if_closed(self, parcel: Parcel) -> None:
        if parcel.qty == 0:
            self.live_parcels[parcel.symbol].remove(parcel)

    def adl_fill(self, ts: int, parcel: Parcel, account: str, qty: int, reference: str) -> int:
        """Close `qty` lots of `parcel` against `account`'s opposite position at the
        parcel's removed cost for those lots (so the fund realises exactly 0); the account
        realises its PnL at that notional. No fee. Returns the notional."""
        spec = self.symbols[parcel.symbol]
        n = parcel.removal(qty)
        long_parcel = parcel.qty > 0
        realised = self._apply(account, parcel.symbol, qty if long_parcel else -qty, n)
        self.ledger.post(ts, account, spec.settle, realised, "realised_pnl", reference)
        parcel.qty += -qty if long_parcel else qty
        parcel.cost -= n
        parcel.adl_qty += qty
        parcel.adl_notional += n
        self._forget_if_closed(parcel)
        return n

    def parcel_cross(self, ts: int, parcel: Parcel, other: Parcel, qty: int, reference: str) -> int:
        """Close `qty` lots of `parcel` against the fund's own opposite `other` parcel, each
        at its own removed cost; the difference is the fund's surplus or shortfall.
        Returns the notional shown (the parcel's removed cost)."""
        spec = self.symbols[parcel.symbol]
        n = parcel.removal(qty)
        m = other.removal(qty)
        result = m - n if parcel.qty > 0 else n - m
        for p, removed in ((parcel, n), (other, m)):
            p.qty += -qty if p.qty > 0 else qty
            p.cost -= removed
            self._forget_if_closed(p)
        parcel.adl_qty += qty
        parcel.adl_notional += n
        other.adl_qty += qty
        other.adl_notional += m
        parcel.fund_result += result
        self.fund_post(ts, spec.settle, result, "insurance", reference,
                       "surplus" if result > 0 else "shortfall", parcel.liquidation_id)
        return n

    # ------------------------------------------------------------------ margin

    def pool_asset(self, account: str, symbol: str) -> str:
        """The pool a position of `account` in `symbol` belongs to: its settlement asset,
        or for a multi-asset account its one pool, named by the valuation asset."""
        return self.valuation if account in self.multi else self.symbols[symbol].settle

    def price_of(self, asset: str) -> int | None:
        """Latest price of `asset` in valuation minor units per whole unit (the valuation
        asset is exactly 1). A stable asset with no `asset_prices` row yet counts at par
        (1 valuation unit; our reading, docs/run.md): a USDC balance or USDC-M PnL always has
        a value, and a USDC debt can always be valued."""
        collateral = self.collateral
        if asset == self.valuation and collateral is not None:
            return collateral.per_unit[asset]
        price = self.asset_prices.get(asset)
        if price is None and collateral is not None and asset in collateral.per_unit \
                and collateral.tiers.get(asset) is None:
            return collateral.per_unit[self.valuation]
        return price

    def serves_multi(self, symbol: str) -> bool:
        """Whether a multi-asset account may trade `symbol`: a linear perpetual settling in
        a stable asset (USDT-M, USDC-M; CLEARING.md section 6), nothing coin-margined."""
        spec = self.symbols[symbol]
        collateral = self.collateral
        return (spec.kind == LINEAR_PERPETUAL and collateral is not None
                and spec.settle in collateral.per_unit and collateral.tiers.get(spec.settle) is None)

    def pool_rate(self, account: str, symbol: str) -> tuple[int, int] | None:
        """(price, minor units per whole unit) of the settlement asset of `account`'s
        position in `symbol` when its pool is valued in another asset (a multi-asset
        account's USDC-M position in the USDT pool), else None (no conversion)."""
        if account not in self.multi:
            return None
        settle = self.symbols[symbol].settle
        if settle == self.valuation:
            return None
        price = self.price_of(settle)
        assert price is not None and self.collateral is not None, f"no price for {settle}"
        return price, self.collateral.per_unit[settle]

    def in_pool(self, account: str, symbol: str, amount: int, *, up: bool = False) -> int:
        """`amount` in `symbol`'s settlement asset, in the units of `account`'s pool:
        unchanged unless pool_rate converts it (rounded up with `up`, else down)."""
        rate = self.pool_rate(account, symbol)
        return amount if rate is None else to_valuation(amount, rate[0], rate[1], up=up)

    def from_pool(self, account: str, symbol: str, value: int) -> int:
        """`value` in `account`'s pool units back in `symbol`'s settlement asset, rounded
        toward minus infinity (an equity share; CLEARING.md section 5.2)."""
        rate = self.pool_rate(account, symbol)
        return value if rate is None else from_valuation(value, rate[0], rate[1])

    def effective_margin(self, account: str) -> int:
        """CLEARING.md section 6: the account's balances at their collateral value."""
        collateral = self.collateral
        assert collateral is not None, "multi-asset accounts need the collateral rules"
        balances = {a: self.ledger.balances.get((account, a), 0) for a in collateral.per_unit}
        prices = {a: p for a in collateral.per_unit if (p := self.price_of(a)) is not None}
        return effective_margin(balances, prices, collateral)

    def pool(self, account: str, asset: str) -> AccountMargin:
        """`pool_figures` as an AccountMargin."""
        equity, maintenance, initial = self.pool_figures(account, asset)
        return AccountMargin(equity, maintenance, initial)

    def pool_figures(self, account: str, asset: str) -> tuple[int, int, int]:
        """(equity, maintenance, initial margin) of `account`'s positions in pool `asset`
        at the latest marks: a single-asset cross pool (the positions settling in `asset`,
        equity from that balance) or a multi-asset account's one pool (equity from the
        effective margin of every balance). A symbol with no mark yet is valued at its
        entry cost (unrealised 0). In a multi-asset pool, positions settling in another
        asset than the valuation asset (USDC-M) sum their unrealised PnL, maintenance and
        initial margin per settlement asset, converted once per asset at its price: the PnL
        rounded down, the margins up (to_valuation). O(the account's positions and assets)."""
        multi = account in self.multi
        equity = self.effective_margin(account) if multi else self.ledger.balance(account, asset)
        maintenance = initial = 0
        symbols = self.symbols
        marks = self.marks
        other = None  # multi-asset: settle asset -> [unrealised, maintenance, initial] to convert
        held = self.positions.get(account)
        if held is None:
            return equity, 0, 0
        for symbol, pos in held.items():
            spec = symbols[symbol]
            if spec.settle != asset:
                if not multi:
                    continue
                if other is None:
                    other = {}
                sums = other.get(spec.settle)
                if sums is None:
                    sums = other[spec.settle] = [0, 0, 0]
                mark = marks.get(symbol)
                at_mark = pos.cost if mark is None else abs(pos.qty) * mark * spec.k
                sums[0] += at_mark - pos.cost if pos.qty > 0 else pos.cost - at_mark
                if spec.tiers is not None:
                    m, i = spec.tiers.both(at_mark)
                    sums[1] += m
                    sums[2] += i
                continue
            mark = marks.get(symbol)
            at_mark = pos.cost if mark is None else abs(pos.qty) * mark * spec.k
            equity += at_mark - pos.cost if pos.qty > 0 else pos.cost - at_mark
            if spec.tiers is not None:
                m, i = spec.tiers.both(at_mark)
                maintenance += m
                initial += i
        if other is not None:
            for settle in sorted(other):
                price = self.price_of(settle)
                assert price is not None and self.collateral is not None, f"no price for {settle}"
                per_unit = self.collateral.per_unit[settle]
                unrealised, m, i = other[settle]
                equity += to_valuation(unrealised, price, per_unit, up=False)
                maintenance += to_valuation(m, price, per_unit, up=True)
                initial += to_valuation(i, price, per_unit, up=True)
        # A plain tuple: the replay asks for these figures before every new order and after
        # every fill, and building the frozen dataclass cost as much as computing them.
        return equity, maintenance, initial

    def pools(self, account: str) -> list[str]:
        """Pools of the account's open positions (settlement assets, or the valuation asset
        for a multi-asset account), sorted."""
        return sorted({self.pool_asset(account, s) for s in self.positions.get(account, ())})

    # ------------------------------------------------------------------ debt (section 6)

    def charge_interest(self, ts: int, rates: dict[str, int], reference: str) -> list[str]:
        """An interest time: every multi-asset account's negative balance in an asset with
        a rate pays interest_due on the whole debt (compounding, rounded up) to `interest`,
        accounts and assets in name order; an interest record each (INTEREST, ts, account,
        asset, debt before, rate, amount). Returns the accounts charged."""
        charged = []
        for (account, asset), balance in sorted(self.ledger.balances.items()):
            rate = rates.get(asset)
            if balance >= 0 or not rate or account not in self.multi:
                continue
            amount = interest_due(-balance, rate)
            self.ledger.post(ts, account, asset, -amount, "interest", reference)
            self.ledger.post(ts, INTEREST, asset, amount, "interest", reference)
            key = (account, asset)
            self.accrued[key] = self.accrued.get(key, 0) + amount
            self.out.append((INTEREST, ts, account, asset, -balance, rate, amount))
            charged.append(account)
        return sorted(set(charged))

    def record_repayment(self, ts: int, account: str, asset: str, debt_before: int, credited: int,
                         via: str, from_asset: str | None, from_amount: int | None) -> None:
        """`credited` minor units of `asset` just reached an account that owed `debt_before`:
        they repay accrued interest first, then principal (repayment_split); a REPAYMENT
        record (ts, account, asset, repaid, interest part, principal part, via, from
        asset, from amount) when anything was owed."""
        repaid = min(credited, debt_before)
        if repaid <= 0:
            return
        key = (account, asset)
        interest, principal = repayment_split(repaid, self.accrued.get(key, 0))
        left = self.accrued.get(key, 0) - interest
        if left:
            self.accrued[key] = left
        else:
            self.accrued.pop(key, None)
        self.out.append((REPAYMENT, ts, account, asset, repaid, interest, principal, via,
                         from_asset, from_amount))

    def convert(self, ts: int, account: str, from_asset: str, qty: int, to_asset: str, spread: int,
                reference: str) -> int:
        """Convert `qty` minor units of `from_asset` of `account` into `to_asset` at the
        latest prices less `spread` (over 1e8): two ledger pairs against `conversion`, so
        each asset is conserved on its own; returns what the account received (rounded
        down)."""
        collateral = self.collateral
        assert collateral is not None
        price_from, price_to = self.price_of(from_asset), self.price_of(to_asset)
        assert price_from is not None and price_to is not None
        paid = converted(qty, price_from, collateral.per_unit[from_asset], price_to,
                         collateral.per_unit[to_asset], spread)
        self.ledger.transfer(ts, account, CONVERSION, from_asset, qty, "conversion", reference)
        self.ledger.transfer(ts, CONVERSION, account, to_asset, paid, "conversion", reference)
        return paid

    # ------------------------------------------------------------------ conservation

    def conservation_gap(self, asset: str) -> int:
        """Sum of balances - sum of signed entry costs - (opening balances - opening signed
        costs + deposits - withdrawals) for `asset`; 0 whenever the books are right."""
        costs = sum(p.signed_cost() for s, held in self.holders.items()
                    if self.symbols[s].settle == asset for p in held.values())
        costs += sum(p.signed_cost() for held in self.live_parcels.values() for p in held
                     if p.asset == asset)
        opening = self.ledger.external[asset] - self.opening_cost.get(asset, 0)
        return self.ledger.total(asset) - costs - opening

    def net_qty(self, symbol: str) -> int:
        """Net lots of every position in `symbol`, the fund's parcels included."""
        return (sum(p.qty for p in self.holders[symbol].values())
                + sum(p.qty for p in self.live_parcels[symbol]))


def _funding_amount(qty: int, pays: bool, mark: int, k: int, num_abs: int, per: int, unit: int,
                    fits: int) -> int:
    """One position's signed funding (negative: it pays) at a funding time whose rate is
    split into |numerator| and per (funding_amounts_over), with unit = mark x K x
    |numerator| and fits = funding_lots_fitting(mark, K, |numerator|, per): C arithmetic
    when |qty| <= fits, funding_amounts_over otherwise."""
    if -fits <= qty <= fits:
        return funding_payment_fitting(qty, unit, per, pays)
    paid, received = funding_amounts_over(qty, mark, k, num_abs, per)
    return -paid if pays else received


_EXCHANGE_ACCOUNTS = frozenset(EXCHANGE_ACCOUNTS)  # a hash lookup, not six string compares


def is_exchange_account(account: str) -> bool:
    return account in _EXCHANGE_ACCOUNTS
