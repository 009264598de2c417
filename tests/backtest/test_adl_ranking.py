"""The replay's ADL order (Replay._ranked) built lazily from float approximations
(_approximate, _grow) is the exact order: every opposite holder ranked by exact fraction,
ties by account id (rank_order), as the no-cache path computes it for every ADL.

The positions are drawn to make the approximation's job hard: many equal ranks (identical
positions, and positions 3 or 7 times another with 3 or 7 times its balance, whose floats
may differ in the last bit), ranks a few units apart in 10^30 (costs and balances near
each other), some that rank last (equity share <= 0), long and short, a second position
(ranked exactly, not approximated), and both ranking rules. Not drawn here: multi-asset
accounts (_approximate ranks them exactly, like a second position).
"""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from backtest.replay import LiquidationRules, Replay, _adl_candidate
from clearing.liquidation import rank_order
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


def opened(longs: list, shorts: list, mark: int) -> Clearing:
    """Longs l00.. and shorts s00.. in X (and one lot the other way in Y with `second`),
    netted by a counterparty `zz`; X marked at `mark`, Y at 10,000."""
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
    return clearing


def replay_of(clearing: Clearing, ranking: str, cache: bool) -> Replay:
    return Replay(Matcher({s: SymbolRules() for s in SYMBOLS}), clearing, [],
                  LiquidationRules(ranking=ranking), adl_cache=cache)


# l00 and l01 have the same exact rank (l01 is l00 three times over), but l01's float is
# the larger: only clustering near-equal keys puts l00 first, as ties by id require.
@example(longs=[(1, 10**9 + 1, 10**18 + 7, False), (3, 10**9 + 1, 10**18 + 7, False)],
         shorts=[(1, 10_000, 1, False)], mark=10**9 + 7, ranking="bitmex", long_parcel=False)
@settings(max_examples=300, deadline=None)
@given(longs=st.lists(holding, min_size=1, max_size=25), shorts=st.lists(holding, min_size=1, max_size=25),
       mark=st.sampled_from([9_500, 10_000, 10_500, 10**9 + 7]), ranking=st.sampled_from(["bitmex", "binance"]),
       long_parcel=st.booleans())
def test_the_lazy_adl_order_is_the_exact_order(longs, shorts, mark, ranking, long_parcel):
    lazy = list(replay_of(opened(longs, shorts, mark), ranking, True)._ranked("X", "USDT", long_parcel))
    exact = list(replay_of(opened(longs, shorts, mark), ranking, False)._ranked("X", "USDT", long_parcel))
    assert lazy == exact
    assert {a for a, _ in exact} >= {f"{'s' if long_parcel else 'l'}{i:02d}"
                                     for i in range(len(shorts if long_parcel else longs))}


step = st.one_of(
    st.tuples(st.just("walk"), st.integers(1, 6), st.none()),  # an ADL that stops after k picks
    st.tuples(st.just("post"), st.integers(0, 30), st.sampled_from([-10**12, -1, 1, 10**6, 10**18])),
    st.tuples(st.just("trade"), st.integers(0, 30), st.sampled_from([-3, -1, 1, 2])),
)


@settings(max_examples=300, deadline=None)
@given(longs=st.lists(holding, min_size=1, max_size=15), shorts=st.lists(holding, min_size=1, max_size=15),
       mark=st.sampled_from([9_500, 10_000, 10_500, 10**9 + 7]), ranking=st.sampled_from(["bitmex", "binance"]),
       steps=st.lists(step, min_size=1, max_size=12))
def test_walks_within_one_mark_follow_every_change_exactly(longs, shorts, mark, ranking, steps):
    # Within one mark, ADLs that stop early alternate with balance and position changes
    # (what liquidations and ADL fills do between two ADLs): every walk must see the exact
    # order of that moment, however much of the mark's lazy ranking earlier walks built.
    # (From the review of the lazy ranking: a stale account ranked by _grow, or a re-ranked
    # account dropped from the walk, fails here and nowhere else.)
    clearing = opened(longs, shorts, mark)
    replay = replay_of(clearing, ranking, True)
    accounts = sorted(a for a in clearing.positions if a != "zz")
    for kind, n, amount in steps:
        if kind == "walk":
            for long_parcel in (True, False):
                holders = clearing.holders["X"]
                exact = rank_order([(a, replay._rank(a, "USDT", "X")) for a in holders
                                    if _adl_candidate(holders, a, long_parcel)])
                walked = []
                for pick in replay._ranked("X", "USDT", long_parcel):
                    walked.append(pick)
                    if len(walked) == n:
                        break  # the generator is abandoned, as _adl does when the parcel is done
                assert walked == exact[:len(walked)]
        elif kind == "post":
            clearing.ledger.post(0, accounts[n % len(accounts)], "USDT", amount, "fee", "test")
        else:  # a fill against the counterparty: position and realised PnL change, both logged
            account = accounts[n % len(accounts)]
            notional = abs(amount) * mark * SYMBOLS["X"].k
            clearing.ledger.post(0, account, "USDT", clearing._apply(account, "X", amount, notional),
                                 "realised_pnl", "test")
            clearing.ledger.post(0, "zz", "USDT", clearing._apply("zz", "X", -amount, notional),
                                 "realised_pnl", "test")
