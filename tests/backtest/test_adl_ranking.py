"""The replay's ADL order (Replay._ranked) built lazily from float approximations
(_approximate, _grow) is the exact order: every opposite holder ranked by exact fraction,
ties by account id (rank_order), as the no-cache path computes it for every ADL.

The positions are drawn to make the approximation's job hard: many equal ranks (identical
positions), ranks a few units apart in 10^30 (costs and balances near each other), some
that rank last (equity share <= 0), long and short, a second position or a multi-asset
account (ranked exactly, not approximated), and both ranking rules.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from backtest.replay import LiquidationRules, Replay
from clearing.margin import MarginTiers
from clearing.settlement import Clearing, FeeSchedule, SymbolSpec
from matching import Matcher, SymbolRules

TIERS = MarginTiers.from_rows([[0, 400_000, 0], [10**12, 500_000, 10**12 * 100_000 // 10**8]],
                              max_leverage=20)
SYMBOLS = {"X": SymbolSpec("USDT", 1_000_000, TIERS), "Y": SymbolSpec("USDT", 1_000, TIERS)}

holding = st.tuples(
    st.sampled_from([1, 3, 7]),  # lots (few values, so identical positions recur)
    st.sampled_from([9_000, 9_999, 10_000, 10_001, 10**9, 10**9 + 1]),  # entry price
    # Balance per lot: a position 3 or 7 times another with 3 or 7 times its balance has
    # the same exact rank, but its float may differ in the last bit (ties by id must hold).
    st.sampled_from([-10**15, -1, 0, 1, 10**6, 10**12, 10**12 + 1, 10**18 + 3, 10**18 + 7]),
    st.booleans(),  # a second position (in Y): ranked exactly
)


@settings(max_examples=300, deadline=None)
@given(longs=st.lists(holding, min_size=1, max_size=25), shorts=st.lists(holding, min_size=1, max_size=25),
       mark=st.sampled_from([9_500, 10_000, 10_500, 10**9 + 7]), ranking=st.sampled_from(["bitmex", "binance"]),
       long_parcel=st.booleans())
def test_the_lazy_adl_order_is_the_exact_order(longs, shorts, mark, ranking, long_parcel):
    def replay(cache: bool) -> Replay:
        clearing = Clearing(dict(SYMBOLS), FeeSchedule())
        net = {"X": 0, "Y": 0}
        for side, rows in ((1, longs), (-1, shorts)):
            for i, (lots, entry, per_lot, second) in enumerate(rows):
                account = f"{'l' if side > 0 else 's'}{i:02d}"
                clearing.ledger.open_balance(account, "USDT", per_lot * lots)
                clearing.load_position(account, "X", side * lots, entry)
                net["X"] += side * lots
                if second:
                    clearing.load_position(account, "Y", -side, entry)
                    net["Y"] -= side
        for symbol, qty in net.items():  # a counterparty nets each symbol to zero
            if qty:
                clearing.load_position("zz", symbol, -qty, 10_000)
        clearing.marks["X"] = mark
        clearing.marks["Y"] = 10_000
        return Replay(Matcher({s: SymbolRules() for s in SYMBOLS}), clearing, [],
                      LiquidationRules(ranking=ranking), adl_cache=cache)

    lazy = list(replay(True)._ranked("X", "USDT", long_parcel))
    exact = list(replay(False)._ranked("X", "USDT", long_parcel))
    assert lazy == exact
    assert {a for a, _ in exact} >= {f"{'s' if long_parcel else 'l'}{i:02d}"
                                     for i in range(len(shorts if long_parcel else longs))}
