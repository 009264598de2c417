"""`backtest run`: a dataset's orders, marks, funding and transfers through the matcher and
clearing, into a run folder (DESIGN.md's Outputs; docs/run.md lists the tables).

A dataset with `depth` is a market-data replay (DESIGN.md "Two kinds of replay"; its
`trades`, if any, move our queues and fill our resting orders; recorded trades without
depth are for checking and are not replayed): the recorded book is the `market` account's
liquidity in a
`matching.market.MarketMatcher`, and the `market` account takes the opposite of each
symbol's loaded net position at that symbol's first mark.

Everything is checked before the replay starts (manifest, rules, every table), so bad
input is an error naming file, row and column and leaves no run folder.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from backtest.match import Laps, _event_counts, gc_paused
from backtest.outputs import MatchOutputWriter, write_book_final, write_summary
from backtest.report import write_report
from backtest.replay import (RANK_ASSET_PRICES, RANK_FUNDING, RANK_INTEREST, RANK_MARKS, RANK_TRANSFERS,
                             LiquidationRules, Replay)
from clearing.collateral import Collateral, CollateralTiers
from clearing.funding import premium_index_rate, rate_at_scale
from clearing.liquidation import display_price
from clearing.money import SCALE, div_ceil, div_floor
from clearing.ledger import EXCHANGE_ACCOUNTS
from clearing.settlement import FUND, Clearing, SymbolSpec
from datasets.folders import file_sha256, staged_folder
from datasets.manifest import Manifest, load_manifest
from datasets.orders import MAX_FAULTS, check_orders, iter_order_batches
from datasets.rules import RuleSet, dump_rules, load_rules, merge_rules, read_rule_file
from matching.types import STP_NAMES
from datasets.market_stream import iter_market_batches, market_rows
from datasets.tables import (ACCOUNTS, ASSET_PRICES, DEPTH, FUNDING, MARKS, POSITIONS, PREMIUM_INDEX, TRADES,
                             TRANSFERS, check_table, load_table, write_table)
from matching import Matcher
from matching.market import MARKET_ACCOUNT, MarketMatcher
from matching.errors import InputError

NS = 1_000_000_000

ACCOUNTS_FINAL_SCHEMA = pa.schema([
    ("account", pa.string()), ("asset", pa.string()), ("balance", pa.int64()),
    ("opening_balance", pa.int64()),
])
POSITIONS_FINAL_SCHEMA = pa.schema([
    ("account", pa.string()), ("symbol", pa.string()), ("qty", pa.int64()), ("entry_cost", pa.int64()),
    ("liquidation_id", pa.int64()),
])


def _optional(dataset: Path, name: str) -> Path | None:
    path = dataset / f"{name}.parquet"
    return path if path.exists() else None


def _collateral(manifest: Manifest, rules: RuleSet, *, strict: bool) -> Collateral | None:
    """Per asset: minor units per whole unit and collateral tiers (stable: None, 100% and
    uncapped; a non-stable asset without rules.collateral_tiers counts nothing). A fault is
    an InputError when `strict` (multi-asset accounts or rules present), else None: the
    dataset simply has no multi-asset mode."""
    per_unit, tiers = {}, {}
    problems = []
    for name, asset in sorted(manifest.assets.items()):
        unit = 1 / asset.minor_unit
        if unit != unit.to_integral_value():
            problems.append(f"assets.{name}.minor_unit: {asset.minor_unit} is not 1 / a whole number")
            continue
        per_unit[name] = int(unit)
        rows = rules.collateral_tiers.get(name)
        if asset.stable:
            tiers[name] = None
        else:
            bounds = [upper * per_unit[name] for upper, _ in rows or ()]
            if any(b != b.to_integral_value() for b in bounds):
                problems.append(f"rules.collateral_tiers.{name}: an upper bound finer than the "
                                f"asset's minor unit {asset.minor_unit}")
                continue
            tiers[name] = CollateralTiers(tuple(int(b) for b in bounds), tuple(r for _, r in rows or ()))
    if rules.fund_asset not in per_unit:
        problems.append(f"assets.{rules.fund_asset}: the valuation asset must be an asset")
    if problems:
        if strict:
            raise InputError(str(manifest.path), problems)
        return None
    return Collateral(per_unit, tiers)


def _load_clearing(dataset: Path, manifest: Manifest, rules: RuleSet,
                   first_marks: dict[str, int] | None = None) -> tuple[Clearing, dict[tuple[str, str], int]]:
    """Clearing with the opening balances, fee tiers and positions; also the openings.
    `first_marks` (symbol -> its first mark) makes it a market-data replay's: `market`
    takes the opposite of each symbol's net loaded position at that mark."""
    symbols = {s: SymbolSpec(i.settle, i.notional_factor, rules.margin_tiers[s], i.kind)
               for s, i in manifest.instruments.items()}
    clearing = Clearing(symbols, rules.fees)
    clearing.valuation = rules.fund_asset
    openings: dict[tuple[str, str], int] = {}
    if rules.fund_opening:
        openings[(FUND, rules.fund_asset)] = rules.fund_opening
        clearing.ledger.open_balance(FUND, rules.fund_asset, rules.fund_opening)
    path = _optional(dataset, "accounts")
    if path is not None:
        frame = load_table(path, ACCOUNTS, known={"asset": set(manifest.assets)})
        faults = []
        tiers = len(rules.fees.tiers)
        for row, (account, asset, balance, mode, tier) in enumerate(frame.iter_rows(), start=1):
            if mode == "multi_asset":
                clearing.multi.add(account)
            if tier is not None and tier >= tiers:
                faults.append(f"row {row}, column fee_tier: {tier} but the rules define tiers "
                              f"0..{tiers - 1} (rules.fees, rules.fee_tiers)")
            if account in EXCHANGE_ACCOUNTS:
                faults.append(f"row {row}, column account: {account!r} is an exchange account; "
                              "the insurance fund's opening comes from rules.insurance_fund.opening")
            openings[(account, asset)] = balance
            clearing.ledger.open_balance(account, asset, balance)
            if tier is not None and clearing.fee_tier.get(account, tier or 0) != (tier or 0):
                faults.append(f"row {row}, column fee_tier: {tier} but an earlier row of "
                              f"{account!r} gave {clearing.fee_tier[account]}")
            if tier is not None:
                clearing.fee_tier[account] = tier
        if faults:
            raise InputError(str(path), faults)
    clearing.collateral = _collateral(manifest, rules, strict=bool(
        clearing.multi or rules.collateral_tiers or rules.interest_rates))
    path = _optional(dataset, "positions")
    if path is not None:
        frame = load_table(path, POSITIONS, known={"symbol": set(manifest.instruments)})
        exchange = [f"row {row}, column account: {account!r} is an exchange account; it holds no "
                    "opening position" for row, account in enumerate(frame["account"], start=1)
                    if account in EXCHANGE_ACCOUNTS]
        if exchange:
            raise InputError(str(path), exchange[:MAX_FAULTS])
        last_row: dict[str, int] = {}
        for row, (account, symbol, qty, entry_price) in enumerate(frame.iter_rows(), start=1):
            clearing.load_position(account, symbol, qty, entry_price)
            last_row[symbol] = row
        if first_marks is not None:
            _market_opposite(clearing, first_marks, path, last_row)
        try:
            clearing.check_opening()
        except ValueError as exc:
            raise InputError(str(path), [str(exc)]) from None
        bad = [f"account {a}: a multi_asset account holds {s} ({symbols[s].kind} settling in "
               f"{symbols[s].settle}); multi-asset mode serves linear perpetuals settling in a "
               "stable asset (USDT-M, USDC-M)"
               for a in sorted(clearing.multi) for s in sorted(clearing.positions.get(a, ()))
               if not clearing.serves_multi(s)]
        if bad:
            raise InputError(str(path), bad)
    return clearing, openings


def _market_opposite(clearing: Clearing, first_marks: dict[str, int], path: Path,
                     last_row: dict[str, int]) -> None:
    """DESIGN.md's Conservation for a market-data replay: `market` holds the opposite of
    each symbol's net loaded quantity, its entry cost that quantity at the first mark.
    A fault names the symbol's last row in `path`."""
    faults = []
    for symbol in sorted(clearing.symbols):
        net = clearing.net_qty(symbol)
        if not net:
            continue
        if symbol not in first_marks:
            faults.append(f"row {last_row[symbol]}, column symbol: positions in {symbol} net {net:+,} "
                          f"lots and there is no mark of {symbol} to price the market account's "
                          f"opposite position at (DESIGN.md Conservation) (value: {symbol!r})")
            continue
        clearing.load_position(MARKET_ACCOUNT, symbol, -net, first_marks[symbol])
    if faults:
        raise InputError(str(path), faults)


def _load_events(dataset: Path, manifest: Manifest, rules: RuleSet) -> tuple[list[tuple], dict]:
    """Every non-order input as one list sorted by (ts, rank, seq); and input counts."""
    symbols = set(manifest.instruments)
    events: list[tuple] = []
    counts = {}
    path = _optional(dataset, "marks")
    if path is not None:
        frame = load_table(path, MARKS, known={"symbol": symbols})
        counts["marks"] = frame.height
        for row, (ts, symbol, mark, _) in enumerate(frame.iter_rows(), start=1):
            events.append((ts, RANK_MARKS, row, "mark", symbol, mark))
    table_times: set[tuple[int, str]] = set()
    path = _optional(dataset, "funding")
    if path is not None:
        frame = load_table(path, FUNDING, known={"symbol": symbols})
        counts["funding"] = frame.height
        for row, (ts, symbol, rate, scale) in enumerate(frame.iter_rows(), start=1):
            table_times.add((ts, symbol))
            events.append((ts, RANK_FUNDING, row, "funding", symbol,
                           rate_at_scale(rate, scale or SCALE), "table"))
    path = _optional(dataset, "premium_index")
    if path is not None:
        frame = load_table(path, PREMIUM_INDEX, known={"symbol": symbols})
        counts["premium_index"] = frame.height
        events += _premium_funding(path, frame, manifest, rules, table_times)
    path = _optional(dataset, "transfers")
    if path is not None:
        frame = load_table(path, TRANSFERS, known={"asset": set(manifest.assets),
                                                    "repay_with": set(manifest.assets)})
        counts["transfers"] = frame.height
        for ts, seq, account, kind, asset, amount, repay_with in frame.iter_rows():
            events.append((ts, RANK_TRANSFERS, seq, "transfer", seq, account, kind, asset, amount,
                           repay_with))
    path = _optional(dataset, "asset_prices")
    if path is not None:
        frame = load_table(path, ASSET_PRICES, known={"asset": set(manifest.assets)})
        counts["asset_prices"] = frame.height
        for row, (ts, asset, price) in enumerate(frame.iter_rows(), start=1):
            events.append((ts, RANK_ASSET_PRICES, row, "asset_price", asset, price))
    if rules.interest_rates:
        if manifest.start_ns is None or manifest.end_ns is None:
            raise InputError(str(manifest.path), ["rules.interest.rates: interest times need "
                                                  "dataset.start_ns and dataset.end_ns"])
        step = rules.interest_interval_s * 1_000_000_000
        times = range(manifest.start_ns + step, manifest.end_ns + 1, step)
        counts["interest_times"] = len(times)
        events += [(t, RANK_INTEREST, i, "interest") for i, t in enumerate(times, start=1)]
    events.sort(key=lambda e: e[:3])
    return events, counts


def _premium_funding(path: Path, frame: pl.DataFrame, manifest: Manifest, rules: RuleSet,
                     table_times: set[tuple[int, str]]) -> list[tuple]:
    """Funding events at each interval boundary T in (start_ns, end_ns] (boundaries are
    multiples of interval_s from the epoch, so 00:00 UTC for 8 h) that have premium samples
    in (T - interval, T] and no `funding` row: rate from the samples (exact)."""
    if manifest.start_ns is None or manifest.end_ns is None:
        raise InputError(str(manifest.path), ["dataset.start_ns and dataset.end_ns are required "
                                              f"to compute funding from {path.name}"])
    step = rules.funding_interval_s * NS
    samples: dict[tuple[int, str], list[int]] = {}
    for ts, symbol, premium in frame.iter_rows():
        boundary = -(-ts // step) * step  # the first boundary at or after the sample
        samples.setdefault((boundary, symbol), []).append(premium)
    events = []
    for rank, ((boundary, symbol), values) in enumerate(sorted(samples.items())):
        if not manifest.start_ns < boundary <= manifest.end_ns or (boundary, symbol) in table_times:
            continue
        rate = premium_index_rate(values, interval_s=rules.funding_interval_s,
                                  cap=rules.funding_cap, floor=rules.funding_floor)
        events.append((boundary, RANK_FUNDING, -1 - rank, "funding", symbol, rate, "premium_index"))
    return events


BOOK_DEPTH_SCHEMA = {"ts": pl.Int64, "symbol": pl.String, "mark_price": pl.Int64, "best_bid": pl.Int64,
                     "best_ask": pl.Int64, "bid_qty": pl.Int64, "ask_qty": pl.Int64}
DEPTH_SAMPLES = 2_000  # about this many book_depth rows per symbol, whatever the day's length


def dataset_sha256(dataset: Path) -> str:
    """One hash of the dataset's input tables (name and content of every Parquet file,
    in name order; dataset.toml is left out, its rules being what a rule file overrides):
    `backtest diff` refuses runs whose inputs differ."""
    digest = hashlib.sha256()
    for path in sorted(dataset.glob("*.parquet")):
        digest.update(f"{path.name}:{file_sha256(path)}\n".encode())
    return digest.hexdigest()


def _depth_interval(events: list[tuple]) -> int:
    """Whole seconds between book_depth samples: the marks' span over DEPTH_SAMPLES, at
    least one second."""
    times = [e[0] for e in events if e[3] == "mark"]
    if not times:
        return 0
    second = 1_000_000_000
    return max(1, (times[-1] - times[0]) // DEPTH_SAMPLES // second) * second


def liquidation_rules(manifest: Manifest, rules: RuleSet) -> LiquidationRules:
    """The replay's liquidation settings from the effective rules and the instruments."""
    return LiquidationRules(
        execution=rules.execution, band=rules.band, fee=rules.liquidation_fee,
        fund_floor=rules.fund_floor, ranking=rules.adl_ranking,
        max_takeover=rules.max_takeover, adl_fees=rules.adl_fees,
        price_step={s: i.price_step for s, i in manifest.instruments.items()},
        one_unit={a: int(1 / x.minor_unit) for a, x in manifest.assets.items()})


def run_replay(dataset: Path, out: Path, *, rules_file: Path | None = None,
               progress: Callable[[int, int, int], None] | None = None, adl_cache: bool = True,
               laps: Laps | None = None) -> dict:
    """Replay `dataset` into run folder `out`; return the summary. `rules_file` overrides
    keys of the manifest's [rules] (merge_rules); the effective rules are written to
    RUN/rules.toml. Raises InputError (nothing written) on bad input. `progress(done,
    total, ts)` after each order batch (ts: its last instruction's). `adl_cache=False` ranks every holder at every ADL (a
    test holds the cache to it). `laps` gets the wall time of the stages: check (every
    table checked and loaded, the opening state), read (order batches), replay (pre-trade,
    match, clear, fund, margin checks; in a market-data replay also the writing between
    market batches), write (the main thread's share, and the wait for the writer thread at
    the end), finish (the final tables, summary and report)."""
    laps = Laps() if laps is None else laps
    manifest = load_manifest(dataset)
    effective = manifest.rules
    source = str(manifest.path)
    if rules_file is not None:
        effective = merge_rules(manifest.rules, read_rule_file(rules_file))
        source = f"{rules_file} (over {manifest.path})"
        stp = effective.get("stp", "cancel_taker")
        if stp not in STP_NAMES:
            raise InputError(str(rules_file), [f"stp: unknown value {stp!r}; one of {', '.join(STP_NAMES)}"])
        manifest = replace(manifest, rules=effective, default_stp=STP_NAMES.index(stp))
    rules = load_rules(effective, sorted(manifest.instruments), source,
                       sorted({i.settle for i in manifest.instruments.values()}),
                       assets=sorted(manifest.assets))
    orders_path = _optional(dataset, "orders")
    total = check_orders(orders_path) if orders_path is not None else 0
    depth_path = _optional(dataset, "depth")
    market_mode = depth_path is not None
    trades_path = _optional(dataset, "trades") if market_mode else None
    for path, spec in ((depth_path, DEPTH), (trades_path, TRADES)):
        if path is not None:
            check_table(path, spec, known={"symbol": set(manifest.instruments)})
    events, input_counts = _load_events(dataset, manifest, rules)
    first_marks: dict[str, int] = {}
    for event in events:
        if event[3] == "mark":
            first_marks.setdefault(event[4], event[5])
    clearing, openings = _load_clearing(dataset, manifest, rules, first_marks if market_mode else None)
    opening_positions = {(a, s): (p.qty, p.cost) for a, held in clearing.positions.items()
                         for s, p in held.items()}
    if market_mode:
        matcher = MarketMatcher(manifest.matcher_rules(), queue_model=rules.queue_model)
        rows = market_rows(depth_path, trades_path)
        input_counts["market_rows"] = rows
        total += rows
    else:
        matcher = Matcher(manifest.matcher_rules())
    liquidation = liquidation_rules(manifest, rules)
    factors = {s: i.notional_factor for s, i in manifest.instruments.items()}
    with staged_folder(out) as stage:
        writer = MatchOutputWriter(stage, factors, clearing=True)
        done = 0

        def market_batch(rows: int, ts: int) -> None:
            """Between two batches of market rows: drain the output, report progress."""
            writer.write_records(replay.out)
            replay.out.clear()
            if progress is not None:
                progress(done + rows, total, ts)

        replay = Replay(matcher, clearing, events, liquidation, adl_cache=adl_cache,
                        depth_every_ns=_depth_interval(events), interest_rates=rules.interest_rates,
                        conversion_spread=rules.conversion_spread,
                        market=iter_market_batches(depth_path, trades_path) if market_mode else None,
                        market_batch=market_batch)
        for account in sorted(clearing.positions):
            replay.watch.check(account)  # arm the safe ranges (empty until the first mark)
        laps.lap("check")
        with gc_paused():
            if orders_path is not None:
                for batch in iter_order_batches(orders_path, default_stp=manifest.default_stp,
                                                reduce_only=True):
                    laps.lap("read")
                    replay.orders(batch)
                    laps.lap("replay")
                    writer.write_records(replay.out)
                    replay.out.clear()
                    laps.lap("write")
                    done += len(batch[0])
                    if progress is not None:
                        progress(done + replay.market_rows, total, batch[0][-1])
            replay.until(None)
            laps.lap("replay")
            writer.write_records(replay.out)
            replay.out.clear()
        writer.close()
        laps.lap("write")
        assert writer.seq == replay.seq, (writer.seq, replay.seq)
        levels = write_book_final(matcher, stage / "book_final.parquet")
        (stage / "rules.toml").write_text(dump_rules(effective))
        _write_accounts_final(clearing, openings, stage / "accounts_final.parquet")
        _write_positions_final(clearing, stage / "positions_final.parquet")
        liquidations = write_liquidations(replay, stage / "liquidations.parquet")
        write_table(pl.DataFrame(replay.depth, schema=BOOK_DEPTH_SCHEMA, orient="row"),
                    stage / "book_depth.parquet")
        summary = {
            "command": "run",
            "dataset": manifest.name,
            "dataset_sha256": dataset_sha256(dataset),
            "instructions": total - replay.market_rows,
            "replay": "market_data" if market_mode else "order_flow",
            "inputs": input_counts,
            "fills": writer.fill_rows,
            "order_events": writer.event_rows,
            "book_levels": levels,
            "resting_orders": len(matcher.orders),
            "margin_calls": writer.rows["margin_calls"],
            "margin_checks": replay.margin_checks,
            "funding_skipped_no_mark": replay.funding_skipped,
            "funding_withheld": dict(sorted(clearing.funding_withheld.items())),
            "multi_asset_accounts": len(clearing.multi),
            "fees_collected": {asset: bal for (acct, asset), bal in sorted(clearing.ledger.balances.items())
                               if acct == "fees"},
            "conservation": conservation(clearing, openings, opening_positions, replay),
            "liquidation": headline(stage, liquidations, rules.fund_asset, rules.fund_opening),
            "rules": {"execution": rules.execution, "band": rules.band,
                      "fund_opening": rules.fund_opening, "fund_floor": rules.fund_floor,
                      "adl_ranking": rules.adl_ranking,
                      **({"queue_model": rules.queue_model} if market_mode else {})},
        }
        summary.update(_event_counts(stage))
        summary = write_summary(stage, summary)  # with every table's rows and hash
        write_report(stage, dataset)
    laps.lap("finish")
    return summary


def conservation(clearing: Clearing, openings: dict[tuple[str, str], int],
                 opening_positions: dict[tuple[str, str], tuple[int, int]], replay: Replay) -> dict:
    """DESIGN.md's identity per asset, in both forms: at the last marks (balances +
    unrealised = openings + opening unrealised + deposits - withdrawals) and mark-free
    (balances - signed entry costs = openings - opening signed costs + deposits -
    withdrawals). Both gaps are 0 when money was neither created nor lost."""
    assets = sorted({a for _, a in clearing.ledger.balances} | {a for _, a in openings})
    result = {}
    for asset in assets:
        def at_marks(positions: dict[tuple[str, str], tuple[int, int]]) -> tuple[int, int]:
            unrealised = signed_cost = 0
            for (_, symbol), (qty, cost) in positions.items():
                spec = clearing.symbols[symbol]
                if spec.settle != asset:
                    continue
                # A symbol never marked counts at mark 0 (the identity holds at any mark).
                at_mark = abs(qty) * clearing.marks.get(symbol, 0) * spec.k
                unrealised += at_mark - cost if qty > 0 else cost - at_mark
                signed_cost += cost if qty > 0 else -cost
            return unrealised, signed_cost
        now = {(a, s): (p.qty, p.cost) for a, held in clearing.positions.items() for s, p in held.items()}
        for parcel in clearing.parcels:  # each parcel is a position of its own
            if parcel.qty:
                now[(f"{FUND}#{parcel.liquidation_id}", parcel.symbol)] = (parcel.qty, parcel.cost)
        unrealised, signed_cost = at_marks(now)
        opening_unrealised, opening_signed_cost = at_marks(opening_positions)
        balances = clearing.ledger.total(asset)
        opened = sum(v for (_, a), v in openings.items() if a == asset)
        deposits = replay.deposits.get(asset, 0)
        withdrawals = replay.withdrawals.get(asset, 0)
        result[asset] = {
            "balances": balances,
            "unrealised_at_last_marks": unrealised,
            "opening_balances": opened,
            "opening_unrealised_at_last_marks": opening_unrealised,
            "deposits": deposits,
            "withdrawals": withdrawals,
            "gap_at_last_marks": balances + unrealised - (opened + opening_unrealised + deposits - withdrawals),
            "gap_entry_cost": (balances - signed_cost) - (opened - opening_signed_cost + deposits - withdrawals),
        }
    return result


def _write_accounts_final(clearing: Clearing, openings: dict[tuple[str, str], int], path: Path) -> None:
    keys = sorted(set(clearing.ledger.balances) | set(openings))
    cols = [[k[0] for k in keys], [k[1] for k in keys],
            [clearing.ledger.balances.get(k, 0) for k in keys], [openings.get(k, 0) for k in keys]]
    pq.write_table(pa.table(cols, schema=ACCOUNTS_FINAL_SCHEMA), path, compression="zstd")


def _write_positions_final(clearing: Clearing, path: Path) -> None:
    """Every open position, then the insurance fund's open parcels (each its own row,
    with its liquidation id), sorted by account, symbol, liquidation id."""
    rows = [(a, s, p.qty, p.cost, None) for a, held in clearing.positions.items() for s, p in held.items()]
    rows += [(FUND, p.symbol, p.qty, p.cost, p.liquidation_id) for p in clearing.parcels if p.qty]
    rows.sort(key=lambda r: (r[0], r[1], r[4] or 0))
    cols = [list(c) for c in zip(*rows)] or [[], [], [], [], []]
    pq.write_table(pa.table(cols, schema=POSITIONS_FINAL_SCHEMA), path, compression="zstd")


LIQUIDATIONS_SCHEMA = pa.schema([
    ("liquidation_id", pa.int64()), ("ts", pa.int64()), ("seq", pa.int64()),
    ("account", pa.string()), ("symbol", pa.string()), ("asset", pa.string()),
    ("qty", pa.int64()), ("mark_price", pa.int64()), ("bankruptcy_notional", pa.int64()),
    ("bankruptcy_price", pa.int64()), ("filled_qty", pa.int64()), ("exit_notional", pa.int64()),
    ("avg_fill_price", pa.float64()), ("slippage", pa.int64()), ("slippage_bps", pa.float64()),
    ("fund_result", pa.int64()), ("adl_qty", pa.int64()), ("adl_notional", pa.int64()),
    ("remaining_qty", pa.int64()), ("execution", pa.string()),
])


def write_liquidations(replay: Replay, path: Path) -> pa.Table:
    """One row per liquidation (a parcel the fund took over, or a step of a `partial`
    liquidation), in liquidation-id order. `qty` is signed (the account's side);
    `seq` is the margin_call row that triggered it; a step's bankruptcy_notional is the
    position's B prorated to the lots the step filled (so the summary's sum counts each
    lot once). Slippage is measured on the lots closed
    in the book against their share of the bankruptcy notional: positive = worse than
    bankruptcy (a shortfall), in minor units and in basis points of that share."""
    clearing = replay.clearing
    rows = []
    for p in clearing.parcels:
        k = clearing.symbols[p.symbol].k
        slippage = p.removed_cost - p.exit_notional if p.taken_qty > 0 else p.exit_notional - p.removed_cost
        rows.append((p.liquidation_id, p.ts, replay.trigger_seq.get(p.liquidation_id), p.account,
                     p.symbol, p.asset, p.taken_qty, p.mark, p.bankruptcy_notional,
                     display_price(p.bankruptcy_notional, p.taken_qty, k), p.filled_qty,
                     p.exit_notional, p.exit_notional / (p.filled_qty * k) if p.filled_qty else None,
                     slippage, slippage * 10_000 / p.removed_cost if p.removed_cost else None,
                     p.fund_result, p.adl_qty, p.adl_notional, abs(p.qty), p.execution))
    for leg in replay.legs:
        k = clearing.symbols[leg.symbol].k
        lots = abs(leg.position_qty)
        share = (div_ceil if leg.position_qty > 0 else div_floor)(leg.bankruptcy_notional * leg.filled_qty, lots)
        slippage = share - leg.exit_notional if leg.position_qty > 0 else leg.exit_notional - share
        qty = leg.step_qty if leg.position_qty > 0 else -leg.step_qty
        rows.append((leg.liquidation_id, leg.ts, leg.trigger_seq, leg.account, leg.symbol, leg.asset,
                     qty, leg.mark, share,
                     display_price(leg.bankruptcy_notional, leg.position_qty, k), leg.filled_qty,
                     leg.exit_notional, leg.exit_notional / (leg.filled_qty * k) if leg.filled_qty else None,
                     slippage if leg.filled_qty else 0,
                     slippage * 10_000 / share if share else None, leg.fee_income, 0, 0,
                     leg.step_qty - leg.filled_qty, "partial"))
    rows.sort(key=lambda r: r[0])
    cols = [list(c) for c in zip(*rows)] or [[] for _ in LIQUIDATIONS_SCHEMA]
    table = pa.table(cols, schema=LIQUIDATIONS_SCHEMA)
    pq.write_table(table, path, compression="zstd")
    return table


def headline(folder: Path, liquidations: pa.Table, asset: str, opening: int) -> dict:
    """The figures a risk engineer reads first: liquidations (count, notional at
    bankruptcy, worst slippage), the fund's path (low, close, when it was lowest) and ADL
    (count and notional)."""
    frame = pl.from_arrow(liquidations)
    fund = pl.read_parquet(folder / "insurance_fund.parquet").with_columns(pl.col("asset").cast(pl.String))
    fund = fund.filter(pl.col("asset") == asset)
    adl = pl.read_parquet(folder / "adl.parquet")
    low_row = fund.sort("balance", "seq").head(1)
    return {
        "count": frame.height,
        "accounts": frame["account"].n_unique() if frame.height else 0,
        "bankruptcy_notional": int(frame["bankruptcy_notional"].sum() or 0) if frame.height else 0,
        "worst_slippage": int(frame["slippage"].max() or 0) if frame.height else 0,
        "worst_slippage_bps": float(frame["slippage_bps"].max() or 0) if frame.height else 0.0,
        "fund_asset": asset,
        "fund_opening": opening,
        "fund_low": min(opening, int(fund["balance"].min())) if fund.height else opening,
        "fund_low_ts": int(low_row["ts"][0]) if fund.height and low_row["balance"][0] < opening else None,
        "fund_close": int(fund["balance"][-1]) if fund.height else opening,
        "adl_count": adl.height,
        "adl_notional": int(adl["notional"].sum() or 0) if adl.height else 0,
    }
