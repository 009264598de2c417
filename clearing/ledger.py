"""The ledger: every balance movement is one entry; balances are the sums of entries.

Exchange accounts (`insurance_fund`, `fees`, `interest`, `rounding`, `conversion`,
`market`) are accounts like any other and may go negative. Entries are appended to `out`
as records ("ledger", ts, account, asset, amount, kind, reference) in posting order; the
run's writer gives them their sequence numbers, like the matcher's records.
"""

from __future__ import annotations

from collections import defaultdict

EXCHANGE_ACCOUNTS = ("conversion", "fees", "insurance_fund", "interest", "market", "rounding")
LEDGER_KINDS = ("fee", "realised_pnl", "funding", "interest", "repayment", "liquidation_fee",
                "insurance", "deposit", "withdraw", "conversion", "rounding", "opening")
LEDGER = "ledger"


class Ledger:
    def __init__(self) -> None:
        self.balances: dict[tuple[str, str], int] = defaultdict(int)  # (account, asset) -> minor
        self.out: list[tuple] = []
        # Per asset: opening balances + deposits - withdrawals (the conservation target).
        self.external: dict[str, int] = defaultdict(int)
        # Accounts whose balance (or, via Clearing, position) changed, in order; the owner
        # reads and clears it (the replay's ADL rank cache re-ranks exactly these).
        self.changed: list[str] = []

    def open_balance(self, account: str, asset: str, amount: int) -> None:
        """A balance present when the replay starts (not an entry of the run)."""
        self.balances[(account, asset)] += amount
        self.external[asset] += amount

    def post(self, ts: int, account: str, asset: str, amount: int, kind: str, reference: str) -> None:
        """Move `amount` (signed minor units) into `account`'s `asset` balance."""
        if amount == 0:
            return
        self.balances[(account, asset)] += amount
        self.changed.append(account)
        self.out.append((LEDGER, ts, account, asset, amount, kind, reference))
        if kind == "deposit" or kind == "withdraw":
            self.external[asset] += amount

    def transfer(self, ts: int, payer: str, payee: str, asset: str, amount: int, kind: str,
                 reference: str) -> None:
        """Two entries: `payer` pays `amount` to `payee` (one booked movement each way)."""
        self.post(ts, payer, asset, -amount, kind, reference)
        self.post(ts, payee, asset, amount, kind, reference)

    def balance(self, account: str, asset: str) -> int:
        # dict.get rather than self.balances.get: the same lookup (a defaultdict's get
        # never inserts), and compiled it is one C lookup instead of a method call on an
        # untyped attribute (the margin check asks for a balance every time).
        return dict.get(self.balances, (account, asset), 0)

    def total(self, asset: str) -> int:
        """Sum of every account's balance in `asset`. O(accounts)."""
        return sum(v for (_, a), v in self.balances.items() if a == asset)
