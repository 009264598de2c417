"""The clearing replay's input tables (DESIGN.md's data contracts): check, then load.

Each table is checked the way `orders` is (datasets/orders.py): columns present with usable
types, no nulls where a value is required, enums known, amounts in range, `ts` never going
backwards; every fault named by file, 1-based row and column (up to MAX_FAULTS), all in one
InputError. Tables are small beside `orders` (accounts, positions, marks, funding, premium
samples, transfers), so they are loaded whole, sorted as the replay consumes them.

Columns (beyond DESIGN.md, documented in docs/manifest.md):
- `funding`: ts, symbol, rate, and optional `scale` (the rate is rate / scale; default 1e8).
- `premium_index`: ts, symbol, premium (over 1e8): the samples a funding rate is computed
  from at each `rules.funding.interval_s` boundary that has no `funding` row.
- `transfers`: ts, seq, account, kind, asset, amount, optional repay_with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa

from datasets.orders import MAX_FAULTS, duplicate_rows, fault_rows, read_schema
from matching.errors import InputError

INT, STR, BOOL = "integer", "string", "boolean"
MARGIN_MODES = ("single_asset", "multi_asset")
TRANSFER_KINDS = ("deposit", "withdraw", "repay", "set_mode")


@dataclass(frozen=True)
class TableSpec:
    name: str
    columns: dict[str, tuple[str, bool]]  # column -> (type, required)
    not_null: tuple[str, ...]
    enums: dict[str, tuple[str, ...]]
    positive: tuple[str, ...] = ()  # > 0
    non_negative: tuple[str, ...] = ()
    ordered_ts: bool = False
    unique: tuple[tuple[str, ...], ...] = ()


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
    not_null=("ts", "symbol", "mark_price"), enums={}, positive=("mark_price",), ordered_ts=True)
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

SPECS = {s.name: s for s in (ACCOUNTS, POSITIONS, MARKS, FUNDING, PREMIUM_INDEX, TRANSFERS)}


def _type_ok(kind: str, t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_null(t):
        return True
    if kind == INT:
        return pa.types.is_integer(t)
    if kind == STR:
        return pa.types.is_string(t) or pa.types.is_large_string(t)
    return pa.types.is_boolean(t)


def check_table(path: Path, spec: TableSpec, *, known: dict[str, set[str]] | None = None) -> None:
    """Raise InputError naming every fault of `path` against `spec`. `known` maps a column
    to the values it may hold (symbols of the manifest, assets)."""
    schema = read_schema(path)
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
    if faults:
        raise InputError(str(path), faults)
    lf = pl.scan_parquet(path).with_row_index("row", offset=1)
    present = set(schema.names)
    lf = lf.with_columns(pl.col(c).cast(pl.String) for c, (k, _) in spec.columns.items()
                         if k == STR and c in present)
    for col in spec.not_null:
        fault_rows(lf, pl.col(col).is_null(), col, "null where a value is required", faults)
    for col, allowed in spec.enums.items():
        if col in present:
            fault_rows(lf, pl.col(col).is_not_null() & ~pl.col(col).is_in(list(allowed)), col,
                       f"unknown value; one of {', '.join(allowed)}", faults)
    for col, allowed_set in (known or {}).items():
        if col in present:
            allowed = sorted(allowed_set)
            fault_rows(lf, pl.col(col).is_not_null() & ~pl.col(col).is_in(allowed), col,
                       f"not in the manifest; one of {', '.join(allowed)}", faults)
    for col in spec.positive:
        if col in present:
            fault_rows(lf, pl.col(col) <= 0, col, "must be > 0", faults)
    for col in spec.non_negative:
        if col in present:
            fault_rows(lf, pl.col(col) < 0, col, "must be >= 0", faults)
    if spec.ordered_ts:
        fault_rows(lf, pl.col("ts") < pl.col("ts").shift(1), "ts",
                   "goes backwards (rows must be sorted by ts)", faults)
    for cols in spec.unique:
        if len(cols) == 1:
            duplicate_rows(lf, cols[0], f"duplicate {cols[0]}", faults)
        else:
            key = pl.concat_str([pl.col(c).cast(pl.String) for c in cols], separator="\x1f").alias("key")
            room = MAX_FAULTS - len(faults)
            if room > 0:
                hits = (lf.with_columns(key).filter(pl.col("key").is_duplicated())
                        .select("row", *cols).head(room).collect())
                for row in hits.iter_rows():
                    values = ", ".join(f"{c}={v!r}" for c, v in zip(cols, row[1:]))
                    faults.append(f"row {row[0]}, column {cols[-1]}: duplicate ({values})")
    if faults:
        raise InputError(str(path), faults)


def load_table(path: Path, spec: TableSpec, *, known: dict[str, set[str]] | None = None) -> pl.DataFrame:
    """Check, then read the whole table with every column of `spec` (absent optional
    columns as nulls; strings as plain strings)."""
    check_table(path, spec, known=known)
    frame = pl.read_parquet(path)
    for col, (kind, _) in spec.columns.items():
        dtype = {INT: pl.Int64, STR: pl.String, BOOL: pl.Boolean}[kind]
        frame = frame.with_columns((pl.col(col) if col in frame.columns else pl.lit(None)).cast(dtype).alias(col))
    return frame.select(list(spec.columns))


def write_table(frame: pl.DataFrame, path: Path) -> None:
    """Write a generated input table (plain Parquet, zstd)."""
    frame.write_parquet(path, compression="zstd")
