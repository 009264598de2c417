"""The input tables of DESIGN.md's data contracts other than `orders`: check, then load.

Each table is checked the way `orders` is (datasets/orders.py): columns present with usable
types, no nulls where a value is required, enums known, amounts in range, `ts` never going
backwards, keys unique; every fault named by file, 1-based row and column (up to
MAX_FAULTS), all in one InputError. A file with a schema fault (missing, unknown or
mistyped column) is not read row by row: those faults come alone. The clearing replay's
tables are small beside `orders` (accounts, positions, marks, funding, premium samples,
transfers), so they are loaded whole, sorted as the replay consumes them. The market-data
tables (`trades`, `depth`) can be a day of a venue's feed: their checks are vectorised
polars queries over a lazy scan, one aggregate pass first (how many rows fail each check)
and a fetch of the first rows only for the checks that fail, so a valid table is read once.

Columns (beyond DESIGN.md, documented in docs/manifest.md):
- `funding`: ts, symbol, rate, and optional `scale` (the rate is rate / scale; default 1e8).
- `premium_index`: ts, symbol, premium (over 1e8): the samples a funding rate is computed
  from at each `rules.funding.interval_s` boundary that has no `funding` row.
- `transfers`: ts, seq, account, kind, asset, amount, optional repay_with.
- `trades`: ts, seq, symbol, price (ticks, > 0), qty (lots, > 0), aggressor (buy | sell),
  optional trade_id (the venue's id: integer or string), maker_order_id, taker_order_id.
- `depth`: ts, seq, symbol, side, price (ticks, > 0), qty (lots, absolute level size,
  >= 0; 0 removes the level), snapshot (bool: the row belongs to a snapshot that replaces
  the book). `side` is `bid` | `ask`; `buy` | `sell` are accepted as their synonyms (buy =
  bid, sell = ask) because venues' feeds use both. Rows of one update may share a `seq`
  (a venue message that moves several levels), so the unique key is (seq, side, price).
- `asset_prices`: ts, asset, price (> 0, minor units of the quote asset per whole unit).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from datasets.orders import MAX_FAULTS, duplicate_rows, fault_rows, read_schema
from matching.errors import InputError

INT, STR, BOOL, ID = "integer", "string", "boolean", "integer or string"
MARGIN_MODES = ("single_asset", "multi_asset")
TRANSFER_KINDS = ("deposit", "withdraw", "repay", "set_mode")
AGGRESSORS = ("buy", "sell")
DEPTH_SIDES = ("bid", "ask", "buy", "sell")  # buy = bid, sell = ask


@dataclass(frozen=True)
class TableSpec:
    name: str
    columns: dict[str, tuple[str, bool]]  # column -> (type, required)
    not_null: tuple[str, ...]
    enums: dict[str, tuple[str, ...]]
    positive: tuple[str, ...] = ()  # > 0
    non_negative: tuple[str, ...] = ()
    ordered_ts: bool = False  # ts never goes backwards from one row to the next
    unique: tuple[tuple[str, ...], ...] = ()
    ordered_seq: bool = False  # within one ts, seq never goes backwards


ACCOUNTS = TableSpec(
    "accounts",
    {"account": (STR, True), "asset": (STR, True), "balance": (INT, True),
     "margin_mode": (STR, False), "fee_tier": (INT, False)},
    not_null=("account", "asset", "balance"),
    enums={"margin_mode": MARGIN_MODES}, non_negative=("balance", "fee_tier"),
    unique=(("account", "asset"),))
POSITIONS = TableSpec(
    "positions",
    {"account": (STR, True), "symbol": (STR, True), "qty": (INT, True), "entry_price": (INT, True)},
    not_null=("account", "symbol", "qty", "entry_price"), enums={}, positive=("entry_price",),
    unique=(("account", "symbol"),))
MARKS = TableSpec(
    "marks",
    {"ts": (INT, True), "symbol": (STR, True), "mark_price": (INT, True), "index_price": (INT, False)},
    not_null=("ts", "symbol", "mark_price"), enums={}, positive=("mark_price", "index_price"),
    ordered_ts=True)
FUNDING = TableSpec(
    "funding",
    {"ts": (INT, True), "symbol": (STR, True), "rate": (INT, True), "scale": (INT, False)},
    not_null=("ts", "symbol", "rate"), enums={}, positive=("scale",), ordered_ts=True,
    unique=(("ts", "symbol"),))
PREMIUM_INDEX = TableSpec(
    "premium_index",
    {"ts": (INT, True), "symbol": (STR, True), "premium": (INT, True)},
    not_null=("ts", "symbol", "premium"), enums={}, ordered_ts=True, unique=(("ts", "symbol"),))
TRANSFERS = TableSpec(
    "transfers",
    {"ts": (INT, True), "seq": (INT, True), "account": (STR, True), "kind": (STR, True),
     "asset": (STR, True), "amount": (INT, True), "repay_with": (STR, False)},
    not_null=("ts", "seq", "account", "kind", "asset", "amount"),
    enums={"kind": TRANSFER_KINDS}, non_negative=("amount",), ordered_ts=True, unique=(("seq",),))

TRADES = TableSpec(
    "trades",
    {"ts": (INT, True), "seq": (INT, True), "symbol": (STR, True), "price": (INT, True),
     "qty": (INT, True), "aggressor": (STR, True), "trade_id": (ID, False),
     "maker_order_id": (INT, False), "taker_order_id": (INT, False)},
    not_null=("ts", "seq", "symbol", "price", "qty", "aggressor"),
    enums={"aggressor": AGGRESSORS}, positive=("price", "qty"), ordered_ts=True,
    ordered_seq=True, unique=(("seq",),))
DEPTH = TableSpec(
    "depth",
    {"ts": (INT, True), "seq": (INT, True), "symbol": (STR, True), "side": (STR, True),
     "price": (INT, True), "qty": (INT, True), "snapshot": (BOOL, True)},
    not_null=("ts", "seq", "symbol", "side", "price", "qty", "snapshot"),
    enums={"side": DEPTH_SIDES}, positive=("price",), non_negative=("qty",), ordered_ts=True,
    ordered_seq=True, unique=(("seq", "side", "price"),))
ASSET_PRICES = TableSpec(
    "asset_prices",
    {"ts": (INT, True), "asset": (STR, True), "price": (INT, True)},
    not_null=("ts", "asset", "price"), enums={}, positive=("price",), ordered_ts=True,
    unique=(("ts", "asset"),))

SPECS = {s.name: s for s in (ACCOUNTS, POSITIONS, MARKS, FUNDING, PREMIUM_INDEX, TRANSFERS,
                             TRADES, DEPTH, ASSET_PRICES)}


def _type_ok(kind: str, t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_null(t):
        return True
    is_str = pa.types.is_string(t) or pa.types.is_large_string(t)
    if kind == INT:
        return pa.types.is_integer(t)
    if kind == STR:
        return is_str
    if kind == ID:
        return is_str or pa.types.is_integer(t)
    return pa.types.is_boolean(t)


@dataclass(frozen=True)
class RowCheck:
    """One row-level check: rows where `bad` holds are faults in `column`."""
    bad: pl.Expr
    column: str
    message: str


def run_checks(lf: pl.LazyFrame, checks: list[RowCheck], faults: list[str]) -> None:
    """Add the faults of every check to `faults` (up to MAX_FAULTS in all): one streaming
    pass counts the rows each check rejects, then only failing checks fetch their first
    rows (fault_rows)."""
    if not checks or len(faults) >= MAX_FAULTS:
        return
    # Flags first, then one sum: half the peak memory of per-check sums in one select
    # (measured on 10M orders: 240 vs 570 MB).
    counts = lf.select(c.bad.fill_null(False).alias(f"c{i}")
                       for i, c in enumerate(checks)).sum().collect(engine="streaming").row(0)
    for check, count in zip(checks, counts):
        if count:
            fault_rows(lf, check.bad.fill_null(False), check.column, check.message, faults)


HASH_BATCH_ROWS = 1_000_000


def _key_hashes(path: Path, cols: tuple[str, ...], text: set[str]) -> pl.Series:
    """One 64-bit hash of the key `cols` per row of `path`, read in Parquet batches (the
    `text` columns as plain strings, as scan_table gives them)."""
    parts = []
    for batch in pq.ParquetFile(path).iter_batches(batch_size=HASH_BATCH_ROWS, columns=list(cols)):
        frame = pl.from_arrow(batch)
        assert isinstance(frame, pl.DataFrame)
        frame = frame.with_columns(pl.col(c).cast(pl.String) for c in cols if c in text)
        parts.append(frame.select(pl.struct(list(cols)).hash(seed=0).alias("h"))["h"])
    return pl.concat(parts) if parts else pl.Series("h", [], dtype=pl.UInt64)


def unique_faults(lf: pl.LazyFrame, cols: tuple[str, ...], faults: list[str], path: Path,
                  text: set[str]) -> None:
    """Rows whose key `cols` occurs more than once, by a sort and a neighbour compare
    (bounded memory beside a hash-based is_duplicated; see datasets.orders.duplicate_rows).
    `path` is the file `lf` scans; `text` its string columns."""
    if len(cols) == 1:
        duplicate_rows(lf, cols[0], f"duplicate {cols[0]}", faults)
        return
    room = MAX_FAULTS - len(faults)
    if room <= 0:
        return
    # Sort one 64-bit hash of the key per row, not the key's columns (on a day of depth,
    # 21M rows of (seq, side, price): 2.6 GB -> see docs/market-data.md); rows whose hash
    # repeats are candidates, and only they are compared on the key itself.
    key = pl.struct(list(cols)).hash(seed=0)
    hashes = _key_hashes(path, cols, text).sort()
    repeated = hashes.filter(hashes == hashes.shift(1))  # sorted: a repeat follows its twin
    del hashes
    if repeated.is_empty():
        return
    same_prev = pl.all_horizontal([pl.col(c) == pl.col(c).shift(1) for c in cols])
    same_next = pl.all_horizontal([pl.col(c) == pl.col(c).shift(-1) for c in cols])
    hits = (lf.select("row", *cols).filter(key.is_in(repeated.unique().implode()))
            .collect(engine="streaming").sort(list(cols)).filter(same_prev | same_next)
            .sort("row").head(room))
    for row in hits.iter_rows():
        values = ", ".join(f"{c}={v!r}" for c, v in zip(cols, row[1:]))
        faults.append(f"row {row[0]}, column {cols[-1]}: duplicate ({values})")


def schema_faults(schema: pa.Schema, spec: TableSpec) -> list[str]:
    """Missing required columns, columns the spec does not name, and unusable types."""
    faults: list[str] = []
    required = [c for c, (_, req) in spec.columns.items() if req]
    for col in required:
        if col not in schema.names:
            faults.append(f"column {col}: missing (required columns: {', '.join(required)})")
    for field in schema:
        if field.name not in spec.columns:
            faults.append(f"column {field.name}: unknown column (allowed: {', '.join(spec.columns)})")
        elif not _type_ok(spec.columns[field.name][0], field.type):
            faults.append(f"column {field.name}: type {field.type} where {spec.columns[field.name][0]} is required")
    return faults


def scan_table(path: Path, spec: TableSpec, present: set[str]) -> pl.LazyFrame:
    """A lazy scan of `path` with a 1-based `row` column and string columns as plain
    strings (dictionary-encoded ones included)."""
    lf = pl.scan_parquet(path).with_row_index("row", offset=1)
    return lf.with_columns(pl.col(c).cast(pl.String) for c, (k, _) in spec.columns.items()
                           if k == STR and c in present)


def row_checks(spec: TableSpec, present: set[str], known: dict[str, set[str]] | None = None) -> list[RowCheck]:
    """The spec's row-level checks over the columns present (in the order they report)."""
    checks = [RowCheck(pl.col(c).is_null(), c, "null where a value is required")
              for c in spec.not_null]
    for col, allowed in spec.enums.items():
        if col in present:
            checks.append(RowCheck(pl.col(col).is_not_null() & ~pl.col(col).is_in(list(allowed)), col,
                                   f"unknown value; one of {', '.join(allowed)}"))
    for col, allowed_set in (known or {}).items():
        if col in present:
            allowed = sorted(allowed_set)
            checks.append(RowCheck(pl.col(col).is_not_null() & ~pl.col(col).is_in(allowed), col,
                                   f"not in the manifest; one of {', '.join(allowed) or '(none)'}"))
    for col in spec.positive:
        if col in present:
            checks.append(RowCheck(pl.col(col) <= 0, col, "must be > 0"))
    for col in spec.non_negative:
        if col in present:
            checks.append(RowCheck(pl.col(col) < 0, col, "must be >= 0"))
    if spec.ordered_ts:
        checks.append(RowCheck(pl.col("ts") < pl.col("ts").shift(1), "ts",
                               "goes backwards (rows must be sorted by ts)"))
    if spec.ordered_seq:
        checks.append(RowCheck((pl.col("ts") == pl.col("ts").shift(1)) & (pl.col("seq") < pl.col("seq").shift(1)),
                               "seq", "goes backwards within one ts (rows must be sorted by ts, then seq)"))
    return checks


def table_faults(path: Path, spec: TableSpec, *, known: dict[str, set[str]] | None = None,
                 extra: list[RowCheck] = ()) -> list[str]:
    """Every fault of `path` against `spec` (up to MAX_FAULTS), each "row R, column C:
    message (value: V)" or, for the schema, "column C: message"; empty when the file is
    good. `known` maps a column to the values it may hold (symbols of the manifest,
    assets); `extra` adds checks a caller knows (datasets/validate.py's cross-table ones).
    Raises InputError only when the file is missing or not Parquet."""
    schema = read_schema(path)
    faults = schema_faults(schema, spec)
    if faults:
        return faults
    present = set(schema.names)
    lf = scan_table(path, spec, present)
    run_checks(lf, row_checks(spec, present, known) + list(extra), faults)
    for cols in spec.unique:
        unique_faults(lf, cols, faults, path, {c for c, (k, _) in spec.columns.items() if k == STR})
    return faults[:MAX_FAULTS]


def check_table(path: Path, spec: TableSpec, *, known: dict[str, set[str]] | None = None) -> None:
    """Raise InputError naming every fault of `path` against `spec`. `known` maps a column
    to the values it may hold (symbols of the manifest, assets)."""
    faults = table_faults(path, spec, known=known)
    if faults:
        raise InputError(str(path), faults)


def load_table(path: Path, spec: TableSpec, *, known: dict[str, set[str]] | None = None) -> pl.DataFrame:
    """Check, then read the whole table with every column of `spec` (absent optional
    columns as nulls; strings as plain strings)."""
    check_table(path, spec, known=known)
    frame = pl.read_parquet(path)
    for col, (kind, _) in spec.columns.items():
        dtype = {INT: pl.Int64, STR: pl.String, BOOL: pl.Boolean, ID: pl.String}[kind]
        frame = frame.with_columns((pl.col(col) if col in frame.columns else pl.lit(None)).cast(dtype).alias(col))
    return frame.select(list(spec.columns))


def write_table(frame: pl.DataFrame, path: Path) -> None:
    """Write a generated input table (plain Parquet, zstd)."""
    frame.write_parquet(path, compression="zstd")
