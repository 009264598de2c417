"""`backtest validate DATASET`: every check a replay makes before it starts, and nothing
replayed. Every fault is one line naming the file, the row (1-based, as a person counts)
and the column, e.g. `orders.parquet: row 12, column price: ... (value: -5)`; for
`dataset.toml` the line and the key (`dataset.toml: line 14: instruments.BTCUSDT: ...`).

What is checked (docs/validate.md lists every fault with an example):
- `dataset.toml`: load_manifest's checks (assets, instruments, tick_size x lot_size a whole
  number of the settlement asset's minor units, rules.stp) and load_rules' (fees, margin
  tiers, funding, liquidation, insurance fund, ADL), both collected, never stopping at the
  first; plus the span (start_ns < end_ns, both integers) and the ranges of the rule
  values load_rules accepts unread (funding cap and floor, interest, collateral tiers).
- Every table of DESIGN.md's data contracts that is present: `orders` (datasets.orders
  check_orders, then the checks below), and the specs of datasets/tables.py (accounts,
  positions, marks, funding, premium_index, transfers, trades, depth, asset_prices).
- Across tables: symbols and assets known to the manifest; `ts` inside the manifest's
  span [start_ns, end_ns] when both are given; accounts of `orders` and `positions` known
  to `accounts` when that table is present (an order or a position of an account with no
  balance row is a mistake, not a venue outcome); opening positions netting to zero per
  symbol unless the dataset is a market-data replay (`depth` present, where the `market`
  account takes the opposite at the symbol's first mark, DESIGN.md's Conservation: such a
  symbol then needs a mark), and no position of an exchange account; the checks `backtest
  run` makes on `accounts` against the rules (fee tier defined, no exchange account, one
  fee tier per account, single_asset margin only, as the replay supports no other yet).
- Any other `*.parquet` (an importer's extras: expected_book, recorded_book_ticker,
  recorded_liquidations, depth_gaps, ...) only has to be readable Parquet: a note, not a
  fault.

What "off the grid" means here. Prices and quantities are integers (ticks, lots): the
decimal-to-grid conversion happens in the importers, which refuse an off-grid decimal, so
in a table the grid faults left are a non-integer column (a type fault), a price <= 0 (no
tick below the first), a qty <= 0 in an order `new` or a trade, and a qty < 0 in an amend
or a depth level (0 cancels the order, removes the level). A price that is not a multiple
of the instrument's `price_step`, or a qty below `min_qty` or off `qty_step`, is a venue
rule that a rule set may change over the same data: the matcher rejects such an order
(off_tick, invalid_qty, below_min_qty) as a real venue would, so it is not a fault here.

Rules are checked in full only for a clearing dataset (`accounts` or `positions`
present): a matcher-only dataset (`backtest match`) needs no margin tiers, so their
absence is no fault there; every rule value that is given is still range-checked.

Each file lists at most datasets.orders.MAX_FAULTS faults. A file with a schema fault
(missing, unknown or mistyped column) is not read row by row. Every check is a polars
expression over a lazy scan (no Python loop per row): one streaming pass counts the rows
each check rejects, and only failing checks fetch their first rows.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from clearing.ledger import EXCHANGE_ACCOUNTS
from datasets.manifest import load_manifest
from datasets.orders import MAX_FAULTS, check_orders
from datasets.rules import RuleSet, load_rules
from datasets.tables import ACCOUNTS, SPECS, RowCheck, TableSpec, run_checks, table_faults
from matching.errors import InputError

SCALE = 100_000_000  # rates, ratios over 1e8
MANIFEST = "dataset.toml"
SYMBOL_TABLES = ("orders", "positions", "marks", "funding", "premium_index", "trades", "depth")
ASSET_COLUMNS = {"accounts": ("asset",), "transfers": ("asset", "repay_with"),
                 "asset_prices": ("asset",)}
MARKET_DATA = "depth"  # present: a market-data replay (recorded trades alone are for checking)


@dataclass
class Report:
    """What validate found: faults (exit 2 if any) and notes (tables read but not checked)."""
    faults: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class _Context:
    """What the manifest gives the table checks (None: not known, check skipped)."""
    symbols: set[str] | None = None
    assets: set[str] | None = None
    start_ns: int | None = None
    end_ns: int | None = None
    rules: RuleSet | None = None
    accounts: set[str] | None = None


def validate_dataset(path: Path) -> list[str]:
    """Every fault of dataset folder `path`, one line each naming file, row and column;
    empty when the dataset is valid."""
    return check_dataset(path).faults


def check_dataset(path: Path) -> Report:
    """Faults and notes of dataset folder `path` (module doc)."""
    report = Report()
    if not path.is_dir():
        report.faults.append(f"{path}: not a dataset folder (a folder holding {MANIFEST} "
                             "and Parquet tables)")
        return report
    tables = {p.name[: -len(".parquet")]: p for p in sorted(path.glob("*.parquet"))
              if p.is_file() and not p.name.startswith(".")}
    clearing = "accounts" in tables or "positions" in tables
    ctx = _check_manifest(path, report, clearing=clearing, premium="premium_index" in tables)
    if "accounts" in tables:
        faults = _check_accounts(tables["accounts"], ctx)
        _add(report, tables["accounts"].name, faults)
        if not faults:
            ctx.accounts = set(pl.scan_parquet(tables["accounts"]).select(
                pl.col("account").cast(pl.String).unique()).collect()["account"].to_list())
    for name, table in tables.items():
        if name == "accounts":
            continue
        if name == "orders":
            _add(report, table.name, _check_orders(table, ctx))
        elif name in SPECS:
            extra = _account_check(ctx) if name == "positions" else []
            faults = _table(table, SPECS[name], ctx, extra)
            if name == "positions" and not faults:
                faults = _netting_faults(table, MARKET_DATA in tables, tables.get("marks"))
            _add(report, table.name, faults)
        else:
            _check_readable(table, report)
    return report


def _add(report: Report, file: str, faults: list[str]) -> None:
    report.faults.extend(f"{file}: {f}" for f in faults)
    if len(faults) >= MAX_FAULTS:
        report.faults.append(f"{file}: stopped at {MAX_FAULTS} faults (the cap per file); "
                             "fix these and validate again")


def _check_readable(path: Path, report: Report) -> None:
    try:
        rows = pq.ParquetFile(path).metadata.num_rows
    except (pa.ArrowInvalid, OSError) as exc:
        report.faults.append(f"{path.name}: not a readable Parquet file: {exc}")
        return
    report.notes.append(f"{path.name}: {rows:,} rows of readable Parquet; not a table of the "
                        "data contracts, so not checked further")


# --- dataset.toml ---------------------------------------------------------------------


def _check_manifest(dataset: Path, report: Report, *, clearing: bool, premium: bool) -> _Context:
    """Add every fault of dataset.toml to `report`; return what the table checks can use
    (from the raw TOML where the manifest as a whole does not load)."""
    path = dataset / MANIFEST
    ctx = _Context()
    if not path.is_file():
        report.faults.append(f"{MANIFEST}: file not found: a dataset folder holds {MANIFEST}")
        return ctx
    try:
        text = path.read_text(encoding="utf-8")
        doc = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        report.faults.append(f"{MANIFEST}: not valid TOML: {exc}")
        return ctx
    problems: list[str] = []
    try:
        load_manifest(dataset)
    except InputError as exc:
        problems += exc.problems
    instruments = {k: v for k, v in _section(doc, "instruments").items() if isinstance(v, dict)}
    assets = {k: v for k, v in _section(doc, "assets").items() if isinstance(v, dict)}
    ctx.symbols, ctx.assets = set(instruments), set(assets)
    problems += _span_problems(_section(doc, "dataset"), ctx, premium=premium)
    rules = _section(doc, "rules")
    settle = sorted({s["settle"] for s in instruments.values() if isinstance(s.get("settle"), str)})
    try:
        ctx.rules = load_rules(rules, sorted(instruments), str(path), settle or None, assets=sorted(assets))
    except InputError as exc:
        problems += [p for p in exc.problems
                     if clearing or not re.match(r"rules\.margin_tiers\.[^:]*: missing", p)]
    except (TypeError, AttributeError, KeyError):
        # load_rules assumes each rule's shape (a list of tier rows, ...): find which.
        problems += _shape_of_rules(rules, sorted(instruments), settle or None)
    problems += _rule_range_problems(rules, ctx.assets)
    lines = _toml_key_lines(text)
    for problem in problems:
        line = _problem_line(problem, lines)
        report.faults.append(f"{MANIFEST}: line {line}: {problem}" if line else f"{MANIFEST}: {problem}")
    return ctx


def _section(doc: dict, name: str) -> dict:
    value = doc.get(name, {})
    return value if isinstance(value, dict) else {}


def _shape_of_rules(rules: dict, symbols: list[str], settle: list[str] | None) -> list[str]:
    """The rule keys load_rules cannot read at all (a value of the wrong shape), found by
    reading each key alone."""
    bad = []
    for key in sorted(rules):
        try:
            load_rules({key: rules[key]}, [], MANIFEST, settle)
        except InputError:
            pass
        except (TypeError, AttributeError, KeyError) as exc:
            bad.append(f"rules.{key}: a value of the wrong shape ({type(exc).__name__}: {exc}); "
                       "docs/manifest.md shows each rule's shape")
    return bad or [f"rules: a value of the wrong shape for {', '.join(symbols)}; docs/manifest.md "
                   "shows each rule's shape"]


def _span_problems(meta: dict, ctx: _Context, *, premium: bool) -> list[str]:
    problems = []
    for key in ("start_ns", "end_ns"):
        value = meta.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            problems.append(f"dataset.{key}: an integer of ns since the epoch, got {value!r}")
        elif value is not None:
            setattr(ctx, key, value)
    if ctx.start_ns is not None and ctx.end_ns is not None and ctx.start_ns >= ctx.end_ns:
        problems.append(f"dataset.end_ns: {ctx.end_ns} is not after start_ns {ctx.start_ns}")
        ctx.start_ns = ctx.end_ns = None
    elif premium and (meta.get("start_ns") is None or meta.get("end_ns") is None):
        problems.append("dataset: start_ns and end_ns are required to compute funding from "
                        "premium_index.parquet")
    return problems


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _rule_range_problems(rules: dict, assets: set[str]) -> list[str]:
    """Ranges of rule values load_rules accepts without reading (DESIGN.md's example)."""
    problems = []
    funding = rules.get("funding", {})
    if isinstance(funding, dict):
        for key in ("cap", "floor"):
            value = funding.get(key)
            if _is_int(value) and not -SCALE <= value <= SCALE:
                problems.append(f"rules.funding.{key}: a rate over 1e8 in -100%..100% "
                                f"(-100,000,000..100,000,000), got {value:,}")
    fund = rules.get("insurance_fund", {})
    if isinstance(fund, dict) and _is_int(fund.get("opening")) and fund["opening"] < 0:
        problems.append(f"rules.insurance_fund.opening: must be >= 0 (minor units), got {fund['opening']}")
    return problems


_HEADER = re.compile(r"^\s*\[\[?\s*([^\[\]]+?)\s*\]\]?\s*$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-.\"' ]+?)\s*=")
_STRING = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'[^']*'")


def _dotted(key: str) -> str:
    return ".".join(part.strip().strip("\"'") for part in key.split("."))


def _toml_key_lines(text: str) -> dict[str, int]:
    """The 1-based line of every table header and key of a TOML text, as dotted keys
    (`instruments.BTCUSDT.tick_size`); lines inside a multi-line array are skipped."""
    lines: dict[str, int] = {}
    table, depth = "", 0
    for number, line in enumerate(text.splitlines(), start=1):
        code = _STRING.sub('""', line).split("#")[0]
        if depth == 0:
            header = _HEADER.match(code)
            if header:
                table = _dotted(header.group(1))
                lines.setdefault(table, number)
                continue
            key = _KEY.match(code)
            if key:
                lines.setdefault(f"{table}.{_dotted(key.group(1))}" if table else _dotted(key.group(1)), number)
        depth = max(0, depth + code.count("[") - code.count("]"))
    return lines


def _problem_line(problem: str, lines: dict[str, int]) -> int | None:
    """The line of the key a manifest problem names (the longest key of the file that is
    the problem's key or a table above it), or None."""
    tier = re.match(r"fee tier (\d+):", problem)
    if tier:
        key = "rules.fees" if tier.group(1) == "0" else "rules.fee_tiers"
    else:
        named = re.match(r"[A-Za-z0-9_\-.]+", problem)
        if not named:
            return None
        key = named.group(0)
    best = None
    for known, number in lines.items():
        if (key == known or key.startswith(known + ".")) and (best is None or len(known) > len(best[0])):
            best = (known, number)
    return best[1] if best else None


# --- tables ---------------------------------------------------------------------------


def _known(name: str, ctx: _Context) -> dict[str, set[str]]:
    known = {}
    if name in SYMBOL_TABLES and ctx.symbols is not None:
        known["symbol"] = ctx.symbols
    if ctx.assets is not None:
        for col in ASSET_COLUMNS.get(name, ()):
            known[col] = ctx.assets
    return known


def _span_check(ctx: _Context) -> list[RowCheck]:
    if ctx.start_ns is None or ctx.end_ns is None:
        return []
    ts = pl.col("ts")
    return [RowCheck(ts.is_not_null() & ((ts < ctx.start_ns) | (ts > ctx.end_ns)), "ts",
                     f"outside the manifest's span (dataset.start_ns {ctx.start_ns} .. "
                     f"dataset.end_ns {ctx.end_ns})")]


def _account_check(ctx: _Context) -> list[RowCheck]:
    if ctx.accounts is None:
        return []
    account = pl.col("account")
    exchange = account.is_in(sorted(EXCHANGE_ACCOUNTS))
    return [RowCheck(exchange, "account", "an exchange account; it holds no opening position or "
                     "order (`market` takes the opposite of the net in a market-data replay)"),
            RowCheck(account.is_not_null() & ~exchange & ~account.is_in(sorted(ctx.accounts)), "account",
                     "not in accounts.parquet (the account has no balance row)")]


def _table(path: Path, spec: TableSpec, ctx: _Context, extra: list[RowCheck]) -> list[str]:
    has_ts = "ts" in spec.columns
    try:
        return table_faults(path, spec, known=_known(spec.name, ctx),
                            extra=(_span_check(ctx) if has_ts else []) + extra)
    except InputError as exc:
        return exc.problems


def _check_accounts(path: Path, ctx: _Context) -> list[str]:
    """ACCOUNTS' checks plus those `backtest run` makes against the rules."""
    account, tier = pl.col("account"), pl.col("fee_tier")
    extra = [
        RowCheck(account.is_in(sorted(EXCHANGE_ACCOUNTS)), "account",
                 "an exchange account; the insurance fund's opening comes from "
                 "rules.insurance_fund.opening"),
        RowCheck(tier.is_not_null() & (tier.min().over("account") != tier.max().over("account")),
                 "fee_tier", "the account's rows give different fee tiers"),
    ]
    if ctx.rules is not None:
        tiers = len(ctx.rules.fees.tiers)
        extra.append(RowCheck(tier >= tiers, "fee_tier",
                              f"the rules define fee tiers 0..{tiers - 1} (rules.fees, rules.fee_tiers)"))
    schema_names = set(_schema_names(path))
    extra = [c for c in extra if c.column in schema_names]
    return _table(path, ACCOUNTS, ctx, extra)


def _schema_names(path: Path) -> list[str]:
    try:
        return pq.read_schema(path).names
    except (pa.ArrowInvalid, OSError):
        return []


def _netting_faults(path: Path, market_data: bool, marks: Path | None) -> list[str]:
    """Opening positions must net to zero per symbol (DESIGN.md's Conservation), except in
    a market-data replay, where `market` takes the opposite at the symbol's first mark
    (in `marks`), which must then exist; no exchange account holds one. Each fault names
    the symbol's last row."""
    rows = pl.scan_parquet(path).with_row_index("row", offset=1)
    faults = [f"row {row}, column account: {account!r} is an exchange account; it holds no "
              "opening position (`market` takes the opposite of the net in a market-data replay)"
              for row, account in rows.filter(pl.col("account").cast(pl.String).is_in(list(EXCHANGE_ACCOUNTS)))
              .select("row", pl.col("account").cast(pl.String)).head(MAX_FAULTS).collect().iter_rows()]
    net = (rows.group_by(pl.col("symbol").cast(pl.String))
           .agg(pl.col("qty").sum().alias("net"), pl.col("row").max().alias("last"))
           .filter(pl.col("net") != 0).sort("symbol").collect())
    if not market_data:
        faults += [f"row {last}, column qty: positions in {symbol} net to {total:+,} lots; they must "
                   "net to zero per symbol unless the dataset is a market-data replay (depth "
                   f"present) (value: {total})" for symbol, total, last in net.iter_rows()]
    else:
        marked = set()  # no marks table, or one whose own faults are reported with it
        if marks is not None and "symbol" in _schema_names(marks):
            marked = set(pl.scan_parquet(marks).select(pl.col("symbol").cast(pl.String).unique())
                         .collect()["symbol"].to_list())
        faults += [f"row {last}, column symbol: positions in {symbol} net to {total:+,} lots and "
                   f"marks.parquet has no mark of {symbol} to price the market account's opposite "
                   f"position at (value: {symbol!r})"
                   for symbol, total, last in net.iter_rows() if symbol not in marked]
    return faults[:MAX_FAULTS]


def _check_orders(path: Path, ctx: _Context) -> list[str]:
    """check_orders' faults, then what a replay needs beyond them (module doc)."""
    try:
        check_orders(path)
        faults: list[str] = []
    except InputError as exc:
        faults = list(exc.problems)
        if any(not f.startswith("row ") for f in faults):
            return faults  # missing, unknown or mistyped columns, or not Parquet
    # Dictionary-encoded strings stay categorical: comparing them with str literals needs
    # no cast (a cast to String of 10M rows doubled the peak memory).
    lf = pl.scan_parquet(path).with_row_index("row", offset=1)
    action, otype, price, qty = pl.col("action"), pl.col("type"), pl.col("price"), pl.col("qty")
    is_new = action == "new"
    checks = [
        RowCheck(is_new & (qty <= 0), "qty", "must be > 0 in a `new`"),
        RowCheck((action == "amend") & (qty < 0), "qty", "must be >= 0 in an amend (0 cancels the order)"),
        RowCheck((action != "cancel") & (price <= 0), "price",
                 "off the grid: a price is a whole number of ticks > 0"),
        RowCheck(is_new & (otype == "limit") & price.is_null(), "price",
                 "null in a limit `new` (a limit order needs a price)"),
        RowCheck(is_new & (otype == "market") & price.is_not_null(), "price",
                 "a market order carries no price (null)"),
    ]
    if ctx.symbols is not None:
        allowed = sorted(ctx.symbols)
        checks.append(RowCheck(pl.col("symbol").is_not_null() & ~pl.col("symbol").is_in(allowed),
                               "symbol", f"not in the manifest; one of {', '.join(allowed)}"))
    run_checks(lf, checks + _span_check(ctx) + _account_check(ctx), faults)
    return faults[:MAX_FAULTS]
