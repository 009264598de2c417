"""`backtest generate population OUT`: accounts and positions sized from open interest.

A market-data replay (DESIGN.md: recorded depth, trades and marks) needs a population of
accounts holding the positions whose liquidations the day will show. This module draws one
from a symbol's open interest and long/short ratio at a time, and a leverage distribution,
into an existing dataset folder OUT (its `dataset.toml` names the instrument; an importer
wrote it), as `accounts.parquet` and `positions.parquet` (datasets/tables.py ACCOUNTS and
POSITIONS). Any earlier accounts and positions of OUT are replaced; every other file is kept.
OUT is rewritten through a staging folder, so it is never left half written.

Inputs: a Binance `metrics` file (the public archive's daily CSV, or the .zip holding it:
`create_time,symbol,sum_open_interest,sum_open_interest_value,
count_toptrader_long_short_ratio,sum_toptrader_long_short_ratio,count_long_short_ratio,
sum_taker_long_short_vol_ratio`, one row per 5 minutes) and a time; or explicit
`--open-interest` and `--long-short-ratio`; or, with neither, OUT's own `metrics` table
(the binance importer writes one from those files: open interest in lots, ratios as
decimal strings).

Choices (docs/population.md says the same for users):
- Time. `--at` (default: the dataset's `start_ns`). The metrics row used is the last one of
  the symbol at or before it. The entry price is `--entry-price`, else the mark of the
  dataset's `marks` table at that time: the last mark at or before it, or the first mark
  when none is that early (an importer's first mark often lands just after the first
  depth row; DESIGN.md prices the `market` account's opposite at the first mark too).
- Open interest is in base units (BTC for BTCUSDT), converted to lots rounding down (an
  aggregate statistic, not an order: the dropped remainder, under one lot, is reported).
- The long/short ratio has two meanings, as Binance publishes two kinds:
  * `accounts` (count_long_short_ratio, count_toptrader_long_short_ratio; the default):
    long accounts / short accounts. Longs hold the whole open interest and so do shorts,
    so the positions net to zero per symbol, as every dataset's positions must; the ratio
    only splits the accounts.
  * `quantity` (sum_toptrader_long_short_ratio): long size / short size. The population
    holds the market's gross open interest, 2 x OI, split r : 1 between longs and shorts;
    the positions do not net to zero, and in a market-data replay the exchange's `market`
    account takes the opposite of the net at the first mark (DESIGN.md Conservation).
    `backtest validate` accepts a non-zero net only when depth or trades are present.
  The accounts split between the sides in the ratio's proportion in both modes.
- Sizes. Each side's total is shared among its accounts in proportion to integer weights
  drawn log-uniformly over 2^0..2^12 (a few large holders, many small ones), every account
  holding at least the instrument's min_qty; the shares are exact integers (largest
  remainder, ties to the lower account number), so each side sums to its total exactly.
- Leverage. Each account draws one leverage from a discrete table of (leverage, weight)
  pairs, integers; the default below is a stated assumption (most retail positions at
  5x-25x, a tail to 125x), overridable with `--leverage 1:5,10:3,...`. When the manifest
  has `rules.margin_tiers.SYMBOL`, a draw above the max leverage of the position's tier is
  capped at it (counted in the summary), so no account opens already liquidatable: the
  initial margin 1/leverage is then at least the tier's maintenance rate. Without tiers
  the summary says that `backtest validate` and `backtest run` will need them.
- Balance = entry price x |qty| x K / leverage, rounded up to the minor unit (the initial
  margin: the account holds no more than it needs, so the leverage is real). Accounts are
  `single_asset`, fee tier 0, in the instrument's settlement asset.
- Determinism: one random.Random(seed) drives everything, in one fixed order, with integer
  arithmetic only; same inputs and seed, byte-identical tables.
"""

from __future__ import annotations

import argparse
import bisect
import calendar
import csv
import io
import random
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path

import polars as pl

from clearing.margin import MarginTiers, TierError
from datasets.folders import rewritten_folder
from datasets.manifest import Instrument, Manifest, load_manifest
from datasets.orders import MAX_FAULTS
from datasets.tables import write_table
from matching.errors import InputError

HELP = "accounts and positions sized from open interest and a long/short ratio"
DESCRIPTION = """\
Write accounts.parquet and positions.parquet into the dataset folder OUT (an importer's
output: its dataset.toml names the instrument) for a market-data replay: --accounts
accounts whose positions add up to the symbol's open interest, split between longs and
shorts by the long/short ratio, each with a leverage drawn from a discrete distribution
and a balance of exactly the initial margin at the entry price (the mark at the time).
Open interest and ratio come from a Binance metrics file (--metrics, at --at) or are
given (--open-interest, --long-short-ratio). Same inputs and --seed, same bytes.
docs/population.md has every rule."""
EPILOG = ("example:\n  backtest generate population data/btc-tardis --metrics "
          "BTCUSDT-metrics-2024-08-01.zip --at 2024-08-01T00:00:00Z --accounts 5000 --seed 7")

METRICS_HEADER = ("create_time", "symbol", "sum_open_interest", "sum_open_interest_value",
                  "count_toptrader_long_short_ratio", "sum_toptrader_long_short_ratio",
                  "count_long_short_ratio", "sum_taker_long_short_vol_ratio")
RATIO_COLUMNS = {"count_long_short_ratio": "accounts",
                 "count_toptrader_long_short_ratio": "accounts",
                 "sum_toptrader_long_short_ratio": "quantity"}
# (leverage, weight): the default leverage distribution, weights in percent. An assumption
# stated here and in docs/population.md, not a measured one: venues do not publish it.
DEFAULT_LEVERAGE = ((1, 4), (2, 6), (3, 8), (5, 16), (10, 24), (20, 18), (25, 8), (50, 9),
                    (75, 4), (100, 2), (125, 1))
SIZE_OCTAVES = 12  # weights log-uniform over 2^0 .. 2^12
ACCOUNT_PREFIX = "pop"
INT64_MAX = 2**63 - 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_argument_group("open interest and long/short ratio (a metrics file, or both values)")
    src.add_argument("--metrics", type=Path, metavar="FILE",
                     help="a Binance metrics CSV (or the .zip of the public archive holding one)")
    src.add_argument("--ratio-column", choices=tuple(RATIO_COLUMNS), default="count_long_short_ratio",
                     metavar="COLUMN",
                     help="which ratio of the metrics file: count_long_short_ratio (default) or "
                          "count_toptrader_long_short_ratio (long/short accounts), "
                          "sum_toptrader_long_short_ratio (long/short size)")
    src.add_argument("--open-interest", metavar="DECIMAL",
                     help="open interest in base units (e.g. BTC), instead of --metrics")
    src.add_argument("--long-short-ratio", metavar="DECIMAL", help="long/short ratio, instead of --metrics")
    src.add_argument("--ratio-kind", choices=("accounts", "quantity"), default="accounts",
                     help="what --long-short-ratio divides: accounts (default) or quantity")
    parser.add_argument("--at", metavar="TIME",
                        help="the time: ISO 8601 UTC (2024-08-01T00:00:00Z) or integer ns since "
                             "the epoch (default: the dataset's start_ns)")
    parser.add_argument("--symbol", help="the instrument (default: the dataset's only one)")
    parser.add_argument("--accounts", type=int, default=2_000, help="accounts (default 2000)")
    parser.add_argument("--leverage", metavar="L:W,...",
                        help="leverage distribution as leverage:weight pairs, integers "
                             "(default " + ",".join(f"{lev}:{w}" for lev, w in DEFAULT_LEVERAGE) + ")")
    parser.add_argument("--entry-price", metavar="DECIMAL",
                        help="entry price of every position (default: the mark at --at from marks.parquet)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")


# ---------------------------------------------------------------------------------------
# Inputs


@dataclass(frozen=True)
class Market:
    """Open interest and ratio at a time, with where they came from."""

    open_interest: Decimal  # base units
    ratio: Fraction  # long / short
    kind: str  # "accounts" | "quantity"
    source: str


def parse_time(text: str, option: str = "--at") -> int:
    """Integer ns since the epoch from ISO 8601 (UTC unless an offset is given) or an integer.

    >>> parse_time("2024-08-01T00:00:00Z")
    1722470400000000000
    """
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(option, [f"not a time: use ISO 8601 such as 2024-08-01T00:00:00Z or "
                                  f"integer ns (value: {text!r})"]) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    moment = moment.astimezone(timezone.utc)
    seconds = calendar.timegm(moment.timetuple())
    return seconds * 1_000_000_000 + moment.microsecond * 1_000


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns // 1_000_000_000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _positive_decimal(text: str, option: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        value = None
    if value is None or not value.is_finite() or value <= 0:
        raise InputError(option, [f"must be a positive decimal (value: {text!r})"])
    return value


def _metrics_text(path: Path) -> str:
    if not path.is_file():
        raise InputError(str(path), ["file not found"])
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                names = sorted(n for n in archive.namelist() if n.endswith(".csv"))
                if len(names) != 1:
                    raise InputError(str(path), [f"a metrics .zip holds one .csv file; this one holds "
                                                 f"{len(names)}"])
                return archive.read(names[0]).decode("utf-8")
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError, zipfile.BadZipFile) as exc:
        raise InputError(str(path), [f"unreadable: {exc}"]) from None


def read_metrics(path: Path, symbol: str, at_ns: int, ratio_column: str) -> Market:
    """Open interest and ratio of `symbol` from the last metrics row at or before `at_ns`.
    Faults name the row (the line in the file; the header is row 1) and column."""
    reader = csv.reader(io.StringIO(_metrics_text(path)))
    header = next(reader, None) or []
    missing = [c for c in ("create_time", "symbol", "sum_open_interest", ratio_column) if c not in header]
    if missing:
        raise InputError(str(path), [f"row 1, column {c}: missing from the header (Binance's metrics "
                                     f"layout: {','.join(METRICS_HEADER)})" for c in missing])
    col = {name: header.index(name) for name in header}
    faults: list[str] = []
    chosen: tuple[int, int, list[str]] | None = None  # (ts, line, fields)
    first: int | None = None
    for fields in reader:
        line = reader.line_num
        if not fields:
            continue
        if len(fields) != len(header):
            faults.append(f"row {line}, column -: {len(fields)} fields where the header has "
                          f"{len(header)} (value: {','.join(fields)!r})")
        elif fields[col["symbol"]] == symbol:
            text = fields[col["create_time"]]
            try:
                ts = parse_time(text.replace(" ", "T"), "create_time")
            except InputError:
                faults.append(f"row {line}, column create_time: not a time such as "
                              f"2024-08-01 00:05:00 (value: {text!r})")
                continue
            first = ts if first is None else min(first, ts)
            if ts <= at_ns and (chosen is None or ts >= chosen[0]):
                chosen = (ts, line, fields)
        if len(faults) >= MAX_FAULTS:
            break
    if faults:
        raise InputError(str(path), faults)
    if chosen is None:
        where = f"its first row is at {_iso(first)}" if first is not None else f"it has no row of {symbol}"
        raise InputError(str(path), [f"no row of {symbol} at or before {_iso(at_ns)} ({where}): "
                                     "give --at"])
    ts, line, fields = chosen
    values = []
    for name in ("sum_open_interest", ratio_column):
        text = fields[col[name]]
        try:
            value = Decimal(text)
        except InvalidOperation:
            value = None
        if value is None or not value.is_finite() or value <= 0:
            raise InputError(str(path), [f"row {line}, column {name}: must be a positive decimal "
                                         f"(value: {text!r})"])
        values.append(value)
    return Market(values[0], Fraction(values[1]), RATIO_COLUMNS[ratio_column],
                  f"{path.name} row {line} ({_iso(ts)}), {ratio_column}")


def parse_leverage(text: str | None) -> tuple[tuple[int, int], ...]:
    """`--leverage` as ((leverage, weight), ...) ascending by leverage.

    >>> parse_leverage("10:3,1:1")
    ((1, 1), (10, 3))
    """
    if text is None:
        return DEFAULT_LEVERAGE
    table: dict[int, int] = {}
    problems = []
    for item in text.split(","):
        lev, _, weight = item.strip().partition(":")
        if not (lev.isdigit() and weight.isdigit() and int(lev) > 0 and int(weight) > 0):
            problems.append(f"{item.strip()!r}: each pair is LEVERAGE:WEIGHT, both positive integers")
        elif int(lev) in table:
            problems.append(f"{item.strip()!r}: leverage {int(lev)} is listed twice")
        else:
            table[int(lev)] = int(weight)
    if problems:
        raise InputError("--leverage", problems)
    return tuple(sorted(table.items()))


# ---------------------------------------------------------------------------------------
# The draw


def apportion(total: int, weights: list[int]) -> list[int]:
    """Integer shares of `total` proportional to `weights`, summing to `total` exactly
    (largest remainder; ties to the earlier index).

    >>> apportion(10, [1, 1, 1])
    [4, 3, 3]
    """
    whole = sum(weights)
    shares = [total * w // whole for w in weights]
    rests = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % whole), i))
    for i in rests[: total - sum(shares)]:
        shares[i] += 1
    return shares


def split(n: int, ratio: Fraction) -> int:
    """How many of `n` are long for long/short = `ratio`: n x r / (1 + r), half up.

    >>> split(10, Fraction(3, 2))
    6
    """
    exact = n * ratio / (1 + ratio)
    return int(exact + Fraction(1, 2))


def draw_sizes(rng: random.Random, n: int, total: int, min_qty: int) -> list[int]:
    """`n` sizes in lots, each >= min_qty, summing to `total` (assumes total >= n x min_qty)."""
    weights = []
    for _ in range(n):
        octave = rng.randrange(SIZE_OCTAVES + 1)
        weights.append(rng.randrange(1 << octave, 1 << (octave + 1)))
    return [min_qty + share for share in apportion(total - n * min_qty, weights)]


@dataclass(frozen=True)
class Population:
    accounts: pl.DataFrame
    positions: pl.DataFrame
    long_lots: int
    short_lots: int
    longs: int
    shorts: int
    leverage_counts: dict[int, int]  # accounts per leverage, after tier caps
    capped: int  # accounts whose draw exceeded their margin tier's max leverage


def draw_population(*, n: int, long_lots: int, short_lots: int, longs: int, symbol: str,
                    instrument: Instrument, entry_ticks: int,
                    leverage: tuple[tuple[int, int], ...], seed: int,
                    tiers: MarginTiers | None = None,
                    progress: Callable[[int], None] | None = None) -> Population:
    """The accounts and positions: sides shuffled over account numbers, sizes per side,
    one leverage each (capped at the max leverage of the position's margin tier when
    `tiers` is given), balance = ceil(entry x |qty| x K / leverage). Pure, deterministic."""
    rng = random.Random(seed)
    sides = [1] * longs + [-1] * (n - longs)
    rng.shuffle(sides)
    long_sizes = iter(draw_sizes(rng, longs, long_lots, instrument.min_qty))
    short_sizes = iter(draw_sizes(rng, n - longs, short_lots, instrument.min_qty))
    cumulative, running = [], 0
    for _, weight in leverage:
        running += weight
        cumulative.append(running)
    k = instrument.notional_factor
    counts = {lev: 0 for lev, _ in leverage}
    capped = 0
    acct_rows, pos_rows = [], []
    width = max(6, len(str(n - 1)))
    for i, side in enumerate(sides):
        qty = next(long_sizes) if side > 0 else next(short_sizes)
        lev = leverage[bisect.bisect_right(cumulative, rng.randrange(running))][0]
        notional = entry_ticks * qty * k
        if tiers is not None:
            tier_max = tiers.max_leverage[tiers.tier(notional)]
            if lev > tier_max:
                lev, capped = tier_max, capped + 1
        counts[lev] = counts.get(lev, 0) + 1
        balance = -(-notional // lev)  # ceil: the account holds at least the initial margin
        account = f"{ACCOUNT_PREFIX}{i:0{width}d}"
        acct_rows.append((account, instrument.settle, balance, "single_asset", 0))
        pos_rows.append((account, symbol, side * qty, entry_ticks))
        if progress is not None and (i + 1) % 10_000 == 0:
            progress(i + 1)
    accounts = pl.DataFrame(acct_rows, orient="row", schema={
        "account": pl.String, "asset": pl.String, "balance": pl.Int64, "margin_mode": pl.String,
        "fee_tier": pl.Int64})
    positions = pl.DataFrame(pos_rows, orient="row", schema={
        "account": pl.String, "symbol": pl.String, "qty": pl.Int64, "entry_price": pl.Int64})
    return Population(accounts, positions, long_lots, short_lots, longs, n - longs,
                      dict(sorted(counts.items())), capped)


# ---------------------------------------------------------------------------------------
# The command


def _instrument(manifest: Manifest, wanted: str | None) -> Instrument:
    symbols = sorted(manifest.instruments)
    if wanted is not None:
        if wanted not in manifest.instruments:
            raise InputError("--symbol", [f"{wanted!r} is not an instrument of {manifest.path} "
                                          f"(one of {', '.join(symbols)})"])
        return manifest.instruments[wanted]
    if len(symbols) != 1:
        raise InputError("--symbol", [f"{manifest.path} has several instruments ({', '.join(symbols)}): "
                                      "give --symbol"])
    return manifest.instruments[symbols[0]]


def _entry_ticks(out: Path, options: argparse.Namespace, instrument: Instrument,
                 at_ns: int) -> tuple[int, str]:
    if options.entry_price is not None:
        price = _positive_decimal(options.entry_price, "--entry-price")
        ticks = price / instrument.tick_size
        if ticks != ticks.to_integral_value():
            raise InputError("--entry-price", [f"off the grid of {instrument.tick_size} "
                                               f"(value: {options.entry_price!r})"])
        return int(ticks), "--entry-price"
    path = out / "marks.parquet"
    if not path.is_file():
        raise InputError(str(path), ["file not found: give --entry-price, or import marks first"])
    marks = (pl.scan_parquet(path).filter(pl.col("symbol").cast(pl.String) == instrument.symbol)
             .select("ts", "mark_price").collect())
    if marks.height == 0:
        raise InputError(str(path), [f"no mark of {instrument.symbol}: give --entry-price"])
    before = marks.filter(pl.col("ts") <= at_ns)
    if before.height:
        ts, mark = before.row(before.height - 1)
        how = "the last mark at or before the time"
    else:
        ts, mark = marks.row(0)
        how = "the first mark (none is earlier than the time)"
    if mark is None or mark <= 0:
        raise InputError(str(path), [f"column mark_price: the mark at ts {ts} is {mark!r}"])
    return int(mark), f"marks.parquet at ts {ts}: {how}"


def read_metrics_table(path: Path, instrument: Instrument, at_ns: int, ratio_column: str) -> Market:
    """The same from a dataset's `metrics` table (the binance importer's: ts, symbol,
    open_interest in lots, the ratios as decimal strings)."""
    frame = (pl.scan_parquet(path).with_row_index("row", offset=1)
             .filter((pl.col("symbol").cast(pl.String) == instrument.symbol) & (pl.col("ts") <= at_ns))
             .sort("ts", maintain_order=True).tail(1).collect())
    if frame.height == 0:
        raise InputError(str(path), [f"no row of {instrument.symbol} at or before {_iso(at_ns)}: give --at"])
    row, ts, lots, text = frame.select("row", "ts", "open_interest", ratio_column).row(0)
    if lots is None or lots <= 0:
        raise InputError(str(path), [f"row {row}, column open_interest: must be > 0 (value: {lots!r})"])
    try:
        ratio = Decimal(text) if text is not None else None
    except InvalidOperation:
        ratio = None
    if ratio is None or not ratio.is_finite() or ratio <= 0:
        raise InputError(str(path), [f"row {row}, column {ratio_column}: must be a positive decimal "
                                     f"(value: {text!r})"])
    return Market(lots * instrument.lot_size, Fraction(ratio), RATIO_COLUMNS[ratio_column],
                  f"{path.name} row {row} ({_iso(ts)}), {ratio_column}")


def _market(options: argparse.Namespace, out: Path, instrument: Instrument, at_ns: int) -> Market:
    given = options.open_interest is not None or options.long_short_ratio is not None
    if options.metrics is not None and given:
        raise InputError("--metrics", ["give either --metrics or --open-interest with "
                                       "--long-short-ratio, not both"])
    if options.metrics is not None:
        return read_metrics(options.metrics, instrument.symbol, at_ns, options.ratio_column)
    if not given and (out / "metrics.parquet").is_file():
        return read_metrics_table(out / "metrics.parquet", instrument, at_ns, options.ratio_column)
    if options.open_interest is None or options.long_short_ratio is None:
        raise InputError("--open-interest", ["give --metrics FILE, or both --open-interest and "
                                             "--long-short-ratio (OUT has no metrics.parquet either)"])
    oi = _positive_decimal(options.open_interest, "--open-interest")
    ratio = _positive_decimal(options.long_short_ratio, "--long-short-ratio")
    return Market(oi, Fraction(ratio), options.ratio_kind, "--open-interest, --long-short-ratio")


def _tiers(manifest: Manifest, symbol: str) -> MarginTiers | None:
    """The symbol's margin tiers from the manifest's rules, or None when it has none."""
    table = manifest.rules.get("margin_tiers")
    rows = table.get(symbol) if isinstance(table, dict) else None
    if rows is None:
        return None
    caps = manifest.rules.get("max_leverage")
    cap = caps.get(symbol) if isinstance(caps, dict) else None
    try:
        return MarginTiers.from_rows(rows, max_leverage=cap)
    except TierError as exc:
        raise InputError(str(manifest.path), [f"rules.margin_tiers.{symbol}: {exc}"]) from None


def run(out: Path, options: argparse.Namespace, progress: Callable[[int, int | None], None]) -> list[str]:
    """Write the population into dataset folder `out`; return the summary lines."""
    if not (out / "dataset.toml").is_file():
        raise InputError(str(out), ["not a dataset folder: dataset.toml is missing (write one with "
                                    "`backtest import ...` first; the population needs its instrument)"])
    manifest = load_manifest(out)
    instrument = _instrument(manifest, options.symbol)
    symbol = instrument.symbol
    if options.at is not None:
        at_ns = parse_time(options.at)
    elif manifest.start_ns is not None:
        at_ns = int(manifest.start_ns)
    else:
        raise InputError("--at", [f"{manifest.path} has no start_ns: give --at"])
    n = options.accounts
    if n < 2:
        raise InputError("--accounts", [f"at least 2 accounts, one long and one short (value: {n})"])
    leverage = parse_leverage(options.leverage)
    tiers = _tiers(manifest, symbol)
    market = _market(options, out, instrument, at_ns)
    entry_ticks, entry_from = _entry_ticks(out, options, instrument, at_ns)

    scaled = market.open_interest / instrument.lot_size
    oi_lots = int(scaled)  # round down: an aggregate statistic, the remainder is reported
    dropped = (scaled - oi_lots) * instrument.lot_size
    longs = min(max(split(n, market.ratio), 1), n - 1)
    if market.kind == "accounts":
        long_lots = short_lots = oi_lots
    else:
        long_lots = split(2 * oi_lots, market.ratio)
        short_lots = 2 * oi_lots - long_lots
    need = instrument.min_qty
    for side, count, lots in (("long", longs, long_lots), ("short", n - longs, short_lots)):
        if lots < count * need:
            raise InputError("--accounts", [f"{count:,} {side} accounts of at least {need} lot(s) each "
                                            f"need {count * need:,} lots; the {side} side has {lots:,} "
                                            "(open interest too small for this many accounts)"])
    largest = entry_ticks * max(long_lots, short_lots) * instrument.notional_factor
    if largest > INT64_MAX:
        raise InputError("--open-interest", [f"a position's notional could reach {largest:,} minor "
                                             "units, beyond int64: the open interest is implausibly large"])
    population = draw_population(n=n, long_lots=long_lots, short_lots=short_lots, longs=longs,
                                 symbol=symbol, instrument=instrument, entry_ticks=entry_ticks,
                                 leverage=leverage, seed=options.seed, tiers=tiers,
                                 progress=lambda done: progress(done, n))
    replaced = [name for name in ("accounts.parquet", "positions.parquet") if (out / name).exists()]
    with rewritten_folder(out, ("accounts.parquet", "positions.parquet")) as stage:
        write_table(population.accounts, stage / "accounts.parquet")
        write_table(population.positions, stage / "positions.parquet")
    progress(n, n)
    return _summary(out, symbol, instrument, at_ns, market, oi_lots, dropped, entry_ticks, entry_from,
                    population, options.seed, replaced, tiers is not None)


def _summary(out: Path, symbol: str, instrument: Instrument, at_ns: int, market: Market,
             oi_lots: int, dropped: Decimal, entry_ticks: int, entry_from: str,
             population: Population, seed: int, replaced: list[str], tiered: bool) -> list[str]:
    n = population.longs + population.shorts
    net = population.long_lots - population.short_lots
    lines = [
        f"population of {n:,} accounts in {symbol} at {_iso(at_ns)} (seed {seed})",
        f"open interest {market.open_interest.normalize():f} {instrument.base or 'base units'} = "
        f"{oi_lots:,} lots" + (f" ({dropped.normalize():f} under one lot dropped)" if dropped else "")
        + f"; long/short ratio {float(market.ratio):.4f} ({market.kind}) from {market.source}",
        f"longs: {population.longs:,} accounts, {population.long_lots:,} lots; shorts: "
        f"{population.shorts:,} accounts, {population.short_lots:,} lots; net {net:+,} lots"
        + (" (the market account takes the opposite in a market-data replay)" if net else ""),
        f"entry price {entry_ticks * instrument.tick_size} ({entry_ticks:,} ticks) from {entry_from}",
        "leverage: " + ", ".join(f"{lev}x {count:,}" for lev, count in population.leverage_counts.items())
        + (f" ({population.capped:,} capped at their margin tier's max leverage)" if tiered else
           f" (dataset.toml has no rules.margin_tiers.{symbol}: leverage not capped by tier; "
           "`backtest validate` and `run` need those tiers, in dataset.toml or --rules)"),
        f"balances: {int(population.accounts['balance'].sum()):,} {instrument.settle} minor units in all",
        f"wrote accounts.parquet and positions.parquet ({n:,} rows each) into {out}"
        + (f", replacing the earlier {' and '.join(replaced)}" if replaced else ""),
    ]
    return lines
