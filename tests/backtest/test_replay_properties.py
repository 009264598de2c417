"""The clearing replay under random streams: random accounts, orders, marks, funding
times and transfers, fed one event at a time through `Replay`, under each liquidation
execution mode and ADL ranking, with a random insurance fund.

After every event: for every asset, DESIGN.md's conservation identity holds exactly (the
fund's parcels counted as positions); positions net to zero per symbol; the book is never
crossed; no user account is left liquidatable (a brute-force check of every account, so
the safe-range shortcut of clearing/watch.py can never miss one: whatever an event made
liquidatable was liquidated); and no user account has negative equity.
"""

from __future__ import annotations

from fractions import Fraction

from hypothesis import event as note_event, given, settings
from hypothesis import strategies as st

from backtest.replay import (MARGIN_CALL, RANK_FUNDING, RANK_MARKS, RANK_TRANSFERS,
                             LiquidationRules, Replay)
from clearing.liquidation import ADL_RANKINGS, EXECUTIONS
from clearing.margin import MarginTiers
from clearing.pretrade import OrderIntent, check_order
from clearing.ledger import LEDGER
from clearing.settlement import FUND, INSURANCE, Clearing, FeeSchedule, SymbolSpec
from matching import Matcher, SymbolRules
from matching.types import AMEND, BUY, CANCEL, GTC, IOC, LIMIT, MARKET, NEW, SELL, STP_CANCEL_TAKER

TIERS = MarginTiers.from_rows([[0, 400_000, 0], [5_000_000, 1_000_000, 30_000]], max_leverage=20)
SYMBOLS = {"BTCUSDT": SymbolSpec("USDT", 100, TIERS), "ETHUSDC": SymbolSpec("USDC", 10, TIERS)}
ACCOUNTS = ["a", "b", "c", "d", "e"]

orders = st.tuples(st.just("order"), st.sampled_from(ACCOUNTS), st.sampled_from(sorted(SYMBOLS)),
                   st.sampled_from([BUY, SELL]), st.sampled_from(["limit", "ioc", "market", "cancel", "amend"]),
                   st.integers(95, 105), st.integers(1, 40),
                   st.sampled_from([False, False, False, True]))  # reduce-only: one in four
marks = st.tuples(st.just("mark"), st.sampled_from(sorted(SYMBOLS)), st.integers(80, 120))
fundings = st.tuples(st.just("funding"), st.sampled_from(sorted(SYMBOLS)),
                     st.one_of(st.integers(-300_000, 300_000),
                               st.fractions(-300_000, 300_000, max_denominator=97)))
transfers = st.tuples(st.just("transfer"), st.sampled_from(ACCOUNTS), st.sampled_from(["deposit", "withdraw"]),
                      st.sampled_from(["USDT", "USDC"]), st.integers(0, 60_000))
# A trade between two accounts: a resting limit, then an IOC of another account against it at
# its price (two order events; independent orders rarely cross).
pairs = st.tuples(st.permutations(ACCOUNTS), st.sampled_from(sorted(SYMBOLS)), st.sampled_from([BUY, SELL]),
                  st.integers(95, 105), st.integers(1, 40)).map(
    lambda t: ("pair", ("order", t[0][0], t[1], t[2], "limit", t[3], t[4], False),
               ("order", t[0][1], t[1], SELL if t[2] == BUY else BUY, "ioc", t[3], t[4], False)))
streams = st.lists(st.one_of(orders, orders, orders, pairs, marks, fundings, transfers), min_size=20, max_size=60)


def unpaired(stream: list[tuple]) -> list[tuple]:
    """`stream` with each pair as its two order events."""
    return [e for item in stream for e in (item[1:] if item[0] == "pair" else (item,))]


def _brute_force_liquidatable(clearing: Clearing) -> set[tuple[str, str]]:
    """Pools at or under maintenance among those whose symbols all have a mark (a pool
    liquidatable at load is first checked at its symbol's first mark)."""
    due = set()
    for account in clearing.positions:
        for asset in clearing.pools(account):
            if any(s not in clearing.marks for s in clearing.positions[account]
                   if SYMBOLS[s].settle == asset):
                continue
            figures = clearing.pool(account, asset)
            if figures.equity <= figures.maintenance:
                due.add((account, asset))
    return due


def opened_clearing(data) -> Clearing:
    """Clearing for SYMBOLS with two fee tiers (a rebate in tier 0) and every account's
    drawn fee tier and USDT and USDC balances."""
    clearing = Clearing(dict(SYMBOLS), FeeSchedule(((-10_000, 50_000), (20_000, 40_000))))
    for account in ACCOUNTS:
        clearing.fee_tier[account] = data.draw(st.integers(0, 1))
        clearing.ledger.open_balance(account, "USDT", data.draw(st.integers(0, 50_000)))
        clearing.ledger.open_balance(account, "USDC", data.draw(st.integers(0, 50_000)))
    return clearing


def apply_event(replay: Replay, ts: int, event: tuple) -> None:
    """A drawn mark, funding time or transfer, scheduled at `ts` and applied."""
    if event[0] == "mark":
        replay.schedule([(ts, RANK_MARKS, ts, "mark", event[1], event[2])])
    elif event[0] == "funding":
        replay.schedule([(ts, RANK_FUNDING, ts, "funding", event[1], Fraction(event[2]), "table")])
    else:
        _, account, kind, asset, amount = event
        replay.schedule([(ts, RANK_TRANSFERS, ts, "transfer", ts, account, kind, asset, amount)])
    replay.until(ts)


def assert_conserved(clearing: Clearing, replay: Replay, external: dict[str, int], where: object) -> None:
    """DESIGN.md's conservation identity in both forms for USDT and USDC (the fund's
    parcels counted as positions), and the fund's floor, 0 here (assert_fund_floor)."""
    for asset in ("USDT", "USDC"):
        assert clearing.conservation_gap(asset) == 0, where
        deposits = replay.deposits.get(asset, 0) - replay.withdrawals.get(asset, 0)
        costs = sum(p.signed_cost() for s, held in clearing.holders.items()
                    if SYMBOLS[s].settle == asset for p in held.values())
        costs += sum(p.signed_cost() for p in clearing.parcels if p.asset == asset)
        assert clearing.ledger.total(asset) - costs == external[asset] + deposits, where
        assert_fund_floor(replay, asset, where)


def assert_fund_floor(replay: Replay, asset: str, where: object, floor: int = 0) -> None:
    """The fund's floor as docs/run.md reads CLEARING.md: every change of the fund's balance
    has its `insurance_fund` row (the rows' changes sum to the fund's ledger entries, and
    each row's balance follows from the one before), and no row takes the balance below the
    floor, or lower once below it, except a `bankruptcy` cover: a user left flat with a
    negative balance by a close at a loss larger than its wallet (a market order sweeping
    a thin book far from the mark, a reduce-only close), whom the fund makes whole even
    past its floor, since CLEARING.md's other property (no user below zero equity in
    single-asset mode) and money's conservation leave no one else to pay (nothing is left
    to deleverage). tests/backtest/test_replay_rules.py pins one such cover exactly."""
    rows = [r for r in replay.out if r[0] == INSURANCE and r[2] == asset]
    entries = sum(r[4] for r in replay.out if r[0] == LEDGER and r[2] == FUND and r[3] == asset)
    assert sum(r[3] for r in rows) == entries, (where, asset)
    for before, row in zip(rows, rows[1:]):
        assert row[4] == before[4] + row[3], (where, row)
    for row in rows:
        _, _, _, change, after, cause, _ = row
        if change < 0 and after < floor:
            assert cause == "bankruptcy", (where, row)


def reference_orders_margin(replay: Replay, account: str, asset: str) -> int:
    """The initial margin of the account's resting orders in `asset` the obvious way: every
    order of the account on the book (not the replay's own list of ids), each at max(mark,
    limit), the limit before the first mark. Reads nothing it could change: the replay's
    `_orders_margin` prunes its id lists and rebuilds the bound's aggregates, so a test
    calling it after every event would replay a different history from a real run.
    Single-asset accounts (this test has no others)."""
    c = replay.clearing
    total = 0
    for order in replay.matcher.orders.values():
        symbol = order.book.symbol
        spec = c.symbols[symbol]
        if order.account != account or spec.settle != asset:
            continue
        mark = c.marks.get(symbol)
        price = order.price if mark is None or mark < order.price else mark
        total += spec.tiers.initial(price * order.qty * spec.k)
    return total


def reference_pretrade(replay: Replay, account: str, symbol: str, side: int, price: int | None, qty: int,
                       reduce_only: bool) -> str | None:
    """The pre-trade decision the slow, obvious way: clearing/pretrade.py's check_order
    with the pool's figures and the open orders' exact margin computed afresh (no cached
    figures, no bound, no shortcut). Single-asset accounts (this test has no others)."""
    c = replay.clearing
    spec = c.symbols[symbol]
    intent = OrderIntent(qty if side == BUY else -qty, price, reduce_only)
    if reduce_only:
        pos = c.position(account, symbol)
        position = 0 if pos is None else pos.qty
        resting = replay._reduce_only_qty(account, symbol, side)
        if resting:
            left = position - resting if position > 0 else position + resting
            if position == 0 or left == 0 or (left > 0) != (position > 0):
                return "reduce_only_would_increase"
            position = left
        return check_order(intent, position_qty=position, equity=0, initial_in_use=0, mark=None,
                           k=spec.k, tiers=spec.tiers, taker_rate=0)
    figures = c.pool(account, spec.settle)
    return check_order(intent, position_qty=0, equity=figures.equity,
                       initial_in_use=figures.initial + reference_orders_margin(replay, account, spec.settle),
                       mark=c.marks.get(symbol), k=spec.k, tiers=spec.tiers,
                       taker_rate=c.fee_schedule.tiers[c.fee_tier.get(account, 0)][1])


def reference_amend(replay: Replay, account: str, symbol: str, oid: int, price: int | None,
                    qty: int | None) -> str | None:
    """The amend margin decision the slow, obvious way: an amend the matcher accepts that
    raises the qty or moves the price is check_order for an order of the amended size, with
    the pool's figures and the other open orders' exact margin computed afresh (the order's
    own margin at its current size taken out). Single-asset accounts."""
    matcher, c = replay.matcher, replay.clearing
    if matcher.amend_check(account, symbol, oid, price, qty) is not None:
        return None
    order = matcher.orders[oid]
    new_price = order.price if price is None else price
    new_qty = order.qty if qty is None else qty
    if new_qty == 0 or (new_qty <= order.qty and new_price == order.price):
        return None
    if oid in replay._reduce_only.get(account, ()):
        return replay._amend_margin(account, symbol, oid, price, qty)  # no margin: not what this checks
    spec = c.symbols[symbol]
    mark = c.marks.get(symbol)
    now = spec.tiers.initial(max(order.price, mark if mark is not None else order.price) * order.qty * spec.k)
    figures = c.pool(account, spec.settle)
    intent = OrderIntent(new_qty if order.side == BUY else -new_qty, new_price, False)
    return check_order(intent, position_qty=0, equity=figures.equity,
                       initial_in_use=figures.initial + reference_orders_margin(replay, account, spec.settle) - now,
                       mark=mark, k=spec.k, tiers=spec.tiers,
                       taker_rate=c.fee_schedule.tiers[c.fee_tier.get(account, 0)][1])


def assert_cached_figures_fresh(replay: Replay, where: object) -> None:
    """The pre-trade check's cached pool figures (Replay._pool_figures) and open-order
    bound (Replay._orders_margin_bound) equal the figures computed afresh, for every
    account and pool (reading them also stores them, so an entry a later event should have
    dropped is caught after that event)."""
    for account in ACCOUNTS:
        for asset in ("USDT", "USDC"):
            fresh = replay.clearing.pool_figures(account, asset)
            assert replay._pool_figures(account, asset) == (fresh[0], fresh[2]), (where, account, asset)
            aggregate = replay._bound.get(account)
            if aggregate is not None:  # the cached open-order bound, likewise
                assert (replay._orders_margin_bound(account, asset)
                        == replay._orders_margin_bound_of(account, asset, aggregate)), (where, account, asset)


@settings(max_examples=500, deadline=None)
@given(stream=streams, data=st.data())
def test_every_event_conserves_money_and_margin_calls_match_brute_force(stream, data):
    clearing = opened_clearing(data)
    for symbol in sorted(SYMBOLS):
        qty = data.draw(st.integers(0, 50))
        long_acct, short_acct = data.draw(st.permutations(ACCOUNTS))[:2]
        clearing.load_position(long_acct, symbol, qty, data.draw(st.integers(90, 110)))
        clearing.load_position(short_acct, symbol, -qty, data.draw(st.integers(90, 110)))
    for asset in ("USDT", "USDC"):
        clearing.ledger.open_balance("insurance_fund", asset, data.draw(st.integers(0, 20_000)))
    matcher = Matcher({s: SymbolRules() for s in SYMBOLS})
    rules = LiquidationRules(execution=data.draw(st.sampled_from(EXECUTIONS)),
                             band=data.draw(st.sampled_from([1_000_000, 5_000_000, 20_000_000])),
                             fee=data.draw(st.sampled_from([0, 500_000])),
                             ranking=data.draw(st.sampled_from(ADL_RANKINGS)),
                             max_takeover=data.draw(st.sampled_from([None, 30_000_000, 300_000_000])),
                             adl_fees=data.draw(st.booleans()),
                             one_unit={"USDT": 1_000, "USDC": 1_000})
    replay = Replay(matcher, clearing, [], rules)
    for account in sorted(clearing.positions):
        replay.watch.check(account)
    external = {a: clearing.ledger.external[a] - clearing.opening_cost.get(a, 0) for a in ("USDT", "USDC")}
    if data.draw(st.booleans()):  # a day that opens with marks: orders trade from the start
        for symbol in sorted(SYMBOLS):
            apply_event(replay, 0, ("mark", symbol, 100))
    order_id = 0
    for ts, event in enumerate(unpaired(stream), start=1):
        if event[0] == "order":
            _, account, symbol, side, kind, price, qty, reduce_only = event
            order_id += 1
            if kind == "cancel":
                row = (CANCEL, order_id - 1, BUY, LIMIT, GTC, None, None)
            elif kind == "amend":  # one of the last three orders: a new price, or a new qty
                target = max(1, order_id - 1 - price % 3)
                row = (AMEND, target, BUY, LIMIT, GTC, price if qty % 2 else None, qty)
            elif kind == "market":
                row = (NEW, order_id, side, MARKET, IOC, None, qty)
            else:
                row = (NEW, order_id, side, LIMIT, GTC if kind == "limit" else IOC, price, qty)
            action, oid, side, otype, tif, p, q = row
            if action == NEW and matcher.door_check(symbol, oid, otype, tif, p, q) is None:
                # The fast pre-trade check (cached figures, bound, lower-bound reject) decides
                # as the reference does. Neither changes state the decision depends on.
                assert (replay._pretrade(account, symbol, side, p, q, reduce_only)
                        == reference_pretrade(replay, account, symbol, side, p, q, reduce_only)), (ts, event)
            if action == AMEND:  # and so does the amend check (cached figures, bound first)
                assert (replay._amend_margin(account, symbol, oid, p, q)
                        == reference_amend(replay, account, symbol, oid, p, q)), (ts, event)
            replay.orders(([ts], [action], [account], [symbol], [oid], [side], [otype], [tif],
                           [p], [q], [STP_CANCEL_TAKER], [reduce_only]))
            # The open-order margin bound the pre-trade fast path trusts is never below the
            # exact figure.
            for acct in ACCOUNTS:
                for asset in ("USDT", "USDC"):
                    bound = replay._orders_margin_bound(acct, asset)
                    exact = reference_orders_margin(replay, acct, asset)
                    assert bound is None or bound >= exact, (acct, asset, bound, exact)
        else:
            apply_event(replay, ts, event)
        assert_conserved(clearing, replay, external, (ts, event))
        assert_cached_figures_fresh(replay, (ts, event))
        for symbol in SYMBOLS:
            assert clearing.net_qty(symbol) == 0
        # Whatever the event made liquidatable was liquidated; nobody's equity is negative.
        assert not _brute_force_liquidatable(clearing), (ts, event)
        for account in ACCOUNTS:
            for asset in ("USDT", "USDC"):
                assert clearing.pool(account, asset).equity >= 0, (ts, event, account, asset)
        for book in matcher.books.values():
            bid, ask = book.best_bid(), book.best_ask()
            assert bid is None or ask is None or bid < ask
    calls = [r for r in replay.out if r[0] == MARGIN_CALL]
    assert all(r[4] <= r[5] for r in calls)  # equity <= maintenance in every call
    note_event(f"margin calls: {min(len(calls), 2)}")
    note_event(f"adl: {any(r[0] == 'adl' for r in replay.out)}")
    note_event(f"parcels left open: {any(p.qty for p in clearing.parcels)}")
    note_event(f"insufficient_margin rejects: {min(2, sum(r[5] == 'insufficient_margin' for r in replay.out if r[0] == 'rejected'))}")
    # The replay's own sequence count agrees with the writer's rule (a fill is three rows).
    assert replay.seq == sum(3 if r[0] == "fill" else 1 for r in replay.out)


# Orders that rest (buys below 100, sells above) and amends of them by their owners, with
# marks and transfers between: the amend margin check (cached figures, the open-order
# bound first) decides as reference_amend does, and so does every new order's check.
rests = st.tuples(st.just("rest"), st.sampled_from(ACCOUNTS), st.sampled_from(sorted(SYMBOLS)),
                  st.sampled_from([BUY, SELL]), st.integers(1, 15), st.integers(1, 40))
amends = st.tuples(st.just("amend"), st.integers(0, 10**6), st.one_of(st.none(), st.integers(85, 115)),
                   st.one_of(st.none(), st.integers(1, 80)))
amend_streams = st.lists(st.one_of(rests, rests, amends, amends, amends, marks, transfers), min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(stream=amend_streams, data=st.data())
def test_amend_margin_check_matches_the_exact_one(stream, data):
    clearing = opened_clearing(data)
    matcher = Matcher({s: SymbolRules() for s in SYMBOLS})
    replay = Replay(matcher, clearing, [], LiquidationRules())
    placed: list[tuple[int, str, str]] = []  # (order id, account, symbol) of every new order
    outcomes = set()
    for ts, event in enumerate(stream, start=1):
        if event[0] == "rest":
            _, account, symbol, side, away, qty = event
            oid = len(placed) + 1
            price = 100 - away if side == BUY else 100 + away
            assert (replay._pretrade(account, symbol, side, price, qty, False)
                    == reference_pretrade(replay, account, symbol, side, price, qty, False)), (ts, event)
            placed.append((oid, account, symbol))
            row = (NEW, oid, side, price, qty)
        elif event[0] == "amend":
            if not placed:
                continue
            _, pick, price, qty = event
            oid, account, symbol = placed[pick % len(placed)]
            got = replay._amend_margin(account, symbol, oid, price, qty)
            assert got == reference_amend(replay, account, symbol, oid, price, qty), (ts, event)
            outcomes.add(got)
            row = (AMEND, oid, BUY, price, qty)
        else:
            apply_event(replay, ts, event)
            assert_cached_figures_fresh(replay, (ts, event))
            continue
        action, oid, side, price, qty = row
        replay.orders(([ts], [action], [account], [symbol], [oid], [side], [LIMIT], [GTC],
                       [price], [qty], [STP_CANCEL_TAKER], [False]))
        assert_cached_figures_fresh(replay, (ts, event))
    note_event(f"amend outcomes: {sorted(map(str, outcomes))}")
