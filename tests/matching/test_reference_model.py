"""The matcher against the naive reference model (tests/reference/naive.py), driven by
random instruction sequences over several accounts and symbols.

After every instruction: identical rows from both; every book passes its invariant check
(never crossed, cached totals right, FIFO intact); the resting books agree level by level;
and for every order, original qty (plus amend changes) = filled + cancelled/expired + open.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from matching import Matcher
from matching.records import expand
from tests.matching.helpers import RULES, apply
from tests.reference.naive import NaiveMatcher

ACCOUNTS = ("a", "b", "c")
SYMBOLS = ("X", "Y")
prices = st.one_of(st.integers(95, 106), st.sampled_from([0, -5]))
qtys = st.one_of(st.integers(1, 12), st.sampled_from([0, -1]))
stps = st.sampled_from(["cancel_taker", "cancel_maker", "cancel_both", "none"])


class OrderAccounting:
    """Per order: original (adjusted by amends), filled, closed (cancelled/expired), open."""

    def __init__(self) -> None:
        self.orig: dict[int, int] = {}
        self.filled: dict[int, int] = {}
        self.closed: dict[int, int] = {}
        self.open: dict[int, int] = {}

    def apply(self, rows: list[tuple]) -> None:
        for row in rows:
            kind = row[0]
            if kind == "fill":
                qty, taker, maker = row[4], row[6], row[7]
                for oid in (taker, maker):
                    self.filled[oid] += qty
                    self.open[oid] -= qty
                continue
            oid, remaining = row[4], row[6]
            if kind == "accepted":
                # An id may be reused once its order is finished, never while it is open.
                assert self.open.get(oid, 0) == 0, oid
                self.orig[oid] = self.orig.get(oid, 0) + remaining
                self.filled.setdefault(oid, 0)
                self.closed.setdefault(oid, 0)
                self.open[oid] = remaining
            elif kind == "filled":
                assert self.open[oid] == remaining, (oid, self.open[oid], remaining)
            elif kind in ("cancelled", "expired"):
                self.closed[oid] += self.open[oid]
                self.open[oid] = 0
            elif kind == "amended":
                self.orig[oid] += remaining - self.open[oid]
                self.open[oid] = remaining

    def check(self, resting: dict[int, int]) -> None:
        for oid, orig in self.orig.items():
            assert orig == self.filled[oid] + self.closed[oid] + self.open[oid], oid
            assert self.open[oid] == resting.get(oid, 0), (oid, self.open[oid], resting.get(oid))


class MatcherVsReference(RuleBasedStateMachine):
    @initialize()
    def setup(self) -> None:
        self.fast = Matcher(RULES)
        self.ref = NaiveMatcher(RULES)
        self.accounting = OrderAccounting()
        self.next_id = 1
        self.ts = 0
        self.used_ids: list[int] = []

    def _step(self, instr: tuple) -> None:
        self.ts += 1
        apply(self.fast, instr, ts=self.ts)
        action, acct, symbol, oid, side, typ, tif, price, qty, stp = instr
        codes = {"buy": 0, "sell": 1, "limit": 0, "market": 1, "gtc": 0, "ioc": 1, "fok": 2,
                 "post_only": 3, "none": 0, "cancel_taker": 1, "cancel_maker": 2, "cancel_both": 3}
        if action == "new":
            self.ref.new_order(self.ts, acct, symbol, oid, codes[side], codes[typ], codes[tif], price,
                               qty, codes[stp])
        elif action == "cancel":
            self.ref.cancel(self.ts, acct, symbol, oid)
        else:
            self.ref.amend(self.ts, acct, symbol, oid, price, qty)
        got = list(expand(self.fast.out))
        self.fast.out.clear()
        want = self.ref.rows[:]
        self.ref.rows.clear()
        assert got == want, f"after {instr}:\nmatcher   {got}\nreference {want}"
        self.accounting.apply(got)

    def _known_id(self, data) -> int:
        if self.used_ids and data.draw(st.booleans()):
            return data.draw(st.sampled_from(self.used_ids))
        return data.draw(st.integers(1, self.next_id + 2))

    @rule(data=st.data(), acct=st.sampled_from(ACCOUNTS), symbol=st.sampled_from(SYMBOLS),
          side=st.sampled_from(["buy", "sell"]), price=prices, qty=qtys, stp=stps,
          tif=st.sampled_from(["gtc", "gtc", "ioc", "fok", "post_only"]), reuse=st.integers(0, 19))
    def new_limit(self, data, acct, symbol, side, price, qty, stp, tif, reuse):
        if reuse == 0 and self.used_ids:
            oid = data.draw(st.sampled_from(self.used_ids))  # a duplicate id, live or not
        else:
            oid = self.next_id
            self.next_id += 1
        self.used_ids.append(oid)
        self._step(("new", acct, symbol, oid, side, "limit", tif, price, qty, stp))

    @rule(acct=st.sampled_from(ACCOUNTS), symbol=st.sampled_from(SYMBOLS),
          side=st.sampled_from(["buy", "sell"]), qty=qtys, stp=stps,
          tif=st.sampled_from(["ioc", "fok"]))
    def new_market(self, acct, symbol, side, qty, stp, tif):
        oid = self.next_id
        self.next_id += 1
        self.used_ids.append(oid)
        self._step(("new", acct, symbol, oid, side, "market", tif, None, qty, stp))

    @rule(data=st.data(), acct=st.sampled_from(ACCOUNTS), symbol=st.sampled_from(SYMBOLS))
    def cancel(self, data, acct, symbol):
        self._step(("cancel", acct, symbol, self._known_id(data), "buy", "limit", "gtc", None, None,
                    "cancel_taker"))

    @rule(data=st.data(), acct=st.sampled_from(ACCOUNTS), symbol=st.sampled_from(SYMBOLS),
          price=st.one_of(st.none(), prices), qty=st.one_of(st.none(), qtys))
    def amend(self, data, acct, symbol, price, qty):
        oid = self._known_id(data)
        live = self.fast.orders.get(oid)
        if live is not None and data.draw(st.booleans()):
            acct, symbol = live.account, live.book.symbol  # mostly amend real orders
        self._step(("amend", acct, symbol, oid, "buy", "limit", "gtc", price, qty, "cancel_taker"))

    @invariant()
    def books_agree_and_hold_their_invariants(self) -> None:
        if not hasattr(self, "fast"):
            return
        rows = []
        for symbol in sorted(self.fast.books):
            book = self.fast.books[symbol]
            book.check_invariants()
            for side in (0, 1):
                for level in book.levels_in_priority(side):
                    rows.append((symbol, side, level.price, level.qty, len(level.orders)))
        assert rows == self.ref.book_levels()
        self.accounting.check({oid: o.qty for oid, o in self.fast.orders.items()})


MatcherVsReference.TestCase.settings = settings(
    max_examples=300, stateful_step_count=60, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestMatcherVsReference = MatcherVsReference.TestCase
