"""The corpus of corrupted datasets `backtest validate` must reject (issue 9).

Each case starts from a copy of one small valid dataset (datasets.generate
write_clearing_dataset: orders, accounts, positions, marks, funding, premium_index,
transfers; plus the market-data tables `add_market_data` writes) and breaks it in one
place. A case's `mutate(dataset)` makes the change and returns what the fault line must
name: the file, and the row and column where there is one (a whole-column fault such as a
missing column names no row; a manifest fault names the line and key). Cases marked
`many` break several places at once and list each.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

# What a fault line must contain: substrings, all on one line of the output.
Expect = tuple[str, ...]


@dataclass(frozen=True)
class Case:
    id: str
    mutate: Callable[[Path], list[Expect]]


def read(ds: Path, table: str) -> pl.DataFrame:
    """A table with dictionary-encoded (categorical) columns as plain strings."""
    frame = pl.read_parquet(ds / f"{table}.parquet")
    return frame.with_columns(pl.col(pl.Categorical).cast(pl.String))


def write(ds: Path, table: str, frame: pl.DataFrame) -> None:
    frame.write_parquet(ds / f"{table}.parquet", compression="zstd")


def set_cells(ds: Path, table: str, column: str, values: dict[int, object]) -> None:
    """Set `column` at 1-based rows to values (None = null), keeping the column's type."""
    frame = read(ds, table)
    cells = frame[column].to_list()
    for row, value in values.items():
        cells[row - 1] = value
    write(ds, table, frame.with_columns(pl.Series(column, cells, dtype=frame[column].dtype)))


def rows_where(ds: Path, table: str, predicate: pl.Expr, *, after: int = 10, n: int = 1) -> list[int]:
    """The first `n` 1-based rows past `after` where `predicate` holds."""
    frame = read(ds, table).with_row_index("row", offset=1)
    rows = frame.filter(predicate & (pl.col("row") > after))["row"].head(n).to_list()
    assert len(rows) == n, f"the base dataset has too few rows for this case in {table}"
    return rows


def manifest_replace(ds: Path, old: str, new: str) -> int:
    """Replace `old` (once) in dataset.toml; return the 1-based line the change is on."""
    path = ds / "dataset.toml"
    text = path.read_text()
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new))
    return text[: text.index(old)].count("\n") + 1


def add_market_data(ds: Path, *, rows: int = 40) -> None:
    """Valid `trades`, `depth` and `asset_prices` tables inside the dataset's span."""
    start = int(read(ds, "orders")["ts"][0])
    ts = [start + 1_000 * (i // 2) for i in range(rows)]  # two rows per ts
    write(ds, "trades", pl.DataFrame({
        "ts": ts, "seq": list(range(rows)), "symbol": ["BTCUSDT"] * rows,
        "price": [300_000 + i % 7 for i in range(rows)], "qty": [1 + i % 5 for i in range(rows)],
        "aggressor": ["buy" if i % 3 else "sell" for i in range(rows)],
        "trade_id": [f"t{i}" for i in range(rows)],
    }))
    write(ds, "depth", pl.DataFrame({
        "ts": ts, "seq": [i // 2 for i in range(rows)], "symbol": ["BTCUSDT"] * rows,
        "side": ["bid" if i % 2 == 0 else "ask" for i in range(rows)],
        "price": [299_990 + 20 * (i % 2) for i in range(rows)], "qty": [i % 4 for i in range(rows)],
        "snapshot": [i < 2 for i in range(rows)],
    }))
    write(ds, "asset_prices", pl.DataFrame({
        "ts": ts[::2], "asset": ["USDT"] * (rows // 2), "price": [100_000_000] * (rows // 2),
    }))


def _cell(table: str, column: str, value: object, predicate: pl.Expr | None = None, *,
          at: int = 3) -> Callable[[Path], list[Expect]]:
    """Set one cell (the first row past 10 matching `predicate`, or row `at`) to `value`."""
    def mutate(ds: Path) -> list[Expect]:
        row = rows_where(ds, table, predicate)[0] if predicate is not None else at
        set_cells(ds, table, column, {row: value})
        return [(f"{table}.parquet:", f"row {row},", f"column {column}:")]
    return mutate


def _market(table: str, column: str, value: object, row: int = 7) -> Callable[[Path], list[Expect]]:
    def mutate(ds: Path) -> list[Expect]:
        add_market_data(ds)
        set_cells(ds, table, column, {row: value})
        return [(f"{table}.parquet:", f"row {row},", f"column {column}:")]
    return mutate


NEW_LIMIT = (pl.col("action") == "new") & (pl.col("type") == "limit")
NEW_MARKET = (pl.col("action") == "new") & (pl.col("type") == "market")
NEW = pl.col("action") == "new"


def _drop_column(ds: Path) -> list[Expect]:
    write(ds, "orders", read(ds, "orders").drop("tif"))
    return [("orders.parquet:", "column tif: missing")]


def _extra_column(ds: Path) -> list[Expect]:
    write(ds, "orders", read(ds, "orders").with_columns(pl.lit("x").alias("note")))
    return [("orders.parquet:", "column note: unknown column")]


def _float_price(ds: Path) -> list[Expect]:
    frame = read(ds, "orders")
    write(ds, "orders", frame.with_columns((pl.col("price") / 10).alias("price")))
    return [("orders.parquet:", "column price: type double where an integer is required")]


def _string_qty(ds: Path) -> list[Expect]:
    frame = read(ds, "positions")
    write(ds, "positions", frame.with_columns(pl.col("qty").cast(pl.String)))
    return [("positions.parquet:", "column qty: type", "integer is required")]


def _ts_backwards(ds: Path) -> list[Expect]:
    frame = read(ds, "orders")
    row = 500
    set_cells(ds, "orders", "ts", {row: frame["ts"][row - 2] - 1})
    return [("orders.parquet:", f"row {row},", "column ts:", "goes backwards")]


def _duplicate_seq(ds: Path) -> list[Expect]:
    frame = read(ds, "orders")
    row = 700
    set_cells(ds, "orders", "seq", {row: frame["seq"][row - 2]})
    return [("orders.parquet:", f"row {row - 1},", "column seq:", "duplicate seq"),
            ("orders.parquet:", f"row {row},", "column seq:", "duplicate seq")]


def _duplicate_order_id(ds: Path) -> list[Expect]:
    first, second = rows_where(ds, "orders", NEW, n=2)
    oid = read(ds, "orders")["order_id"][first - 1]
    set_cells(ds, "orders", "order_id", {second: oid})
    return [("orders.parquet:", f"row {first},", "column order_id:", "used more than once"),
            ("orders.parquet:", f"row {second},", "column order_id:", "used more than once")]


def _ts_after_span(ds: Path) -> list[Expect]:
    frame = read(ds, "orders")
    set_cells(ds, "orders", "ts", {frame.height: frame["ts"][-1] + 10**12})
    return [("orders.parquet:", f"row {frame.height},", "column ts:", "outside the manifest's span")]


def _marks_backwards(ds: Path) -> list[Expect]:
    frame = read(ds, "marks")
    set_cells(ds, "marks", "ts", {4: frame["ts"][1]})
    return [("marks.parquet:", "row 4,", "column ts:", "goes backwards")]


def _premium_duplicate(ds: Path) -> list[Expect]:
    frame = read(ds, "premium_index")
    set_cells(ds, "premium_index", "ts", {3: frame["ts"][1]})
    return [("premium_index.parquet:", "row 2,", "column symbol:", "duplicate"),
            ("premium_index.parquet:", "row 3,", "column symbol:", "duplicate")]


def _accounts_duplicate(ds: Path) -> list[Expect]:
    frame = read(ds, "accounts")
    set_cells(ds, "accounts", "account", {6: frame["account"][4]})
    set_cells(ds, "accounts", "fee_tier", {6: frame["fee_tier"][4]})
    return [("accounts.parquet:", "row 5,", "column asset:", "duplicate"),
            ("accounts.parquet:", "row 6,", "column asset:", "duplicate")]


def _positions_not_netting(ds: Path) -> list[Expect]:
    frame = read(ds, "positions")
    set_cells(ds, "positions", "qty", {3: frame["qty"][2] + 5})
    return [("positions.parquet:", f"row {frame.height},", "column qty:", "net to +5 lots")]


def _depth_seq_backwards(ds: Path) -> list[Expect]:
    add_market_data(ds)
    # Rows 9 and 10 share a ts; give row 9 a seq above row 10's.
    set_cells(ds, "depth", "seq", {9: 100})
    return [("depth.parquet:", "row 10,", "column seq:", "goes backwards within one ts")]


def _trades_duplicate_seq(ds: Path) -> list[Expect]:
    add_market_data(ds)
    set_cells(ds, "trades", "seq", {12: 10})
    return [("trades.parquet:", "row 11,", "column seq:", "duplicate seq"),
            ("trades.parquet:", "row 12,", "column seq:", "duplicate seq")]


def _tick_lot_line(ds: Path) -> list[Expect]:
    # The fault names the instrument's table, so the line of [instruments.BTCUSDT].
    text = (ds / "dataset.toml").read_text()
    header = text[: text.index("[instruments.BTCUSDT]")].count("\n") + 1
    manifest_replace(ds, 'tick_size = "0.1"', 'tick_size = "0.000001"')
    return [("dataset.toml:", f"line {header}:", "instruments.BTCUSDT:",
             "tick_size x lot_size = 1E-9 is not a whole number of USDT minor units")]


def _band(ds: Path) -> list[Expect]:
    text = (ds / "dataset.toml").read_text()
    (ds / "dataset.toml").write_text(text + 'liquidation = { execution = "sweep", band = 150_000_000 }\n')
    line = text.count("\n") + 1
    return [("dataset.toml:", f"line {line}:", "rules.liquidation.band:", "150000000")]


def _taker_fee(ds: Path) -> list[Expect]:
    line = manifest_replace(ds, "fees = { maker = 20_000, taker = 50_000 }",
                            "fees = { maker = 20_000, taker = 20_000_000 }")
    return [("dataset.toml:", f"line {line}:", "fee tier 0:", "out of range")]


def _funding_cap(ds: Path) -> list[Expect]:
    line = manifest_replace(ds, "cap = 300_000", "cap = 200_000_000")
    return [("dataset.toml:", f"line {line}:", "rules.funding.cap:", "-100%..100%")]


def _missing_tiers(ds: Path) -> list[Expect]:
    text = (ds / "dataset.toml").read_text()
    start = text.index("margin_tiers.BTCUSDT = [")
    end = text.index("]\n", text.index("[25_000")) + 2
    (ds / "dataset.toml").write_text(text[:start] + text[end:])
    rules = text[: text.index("[rules]")].count("\n") + 1
    return [("dataset.toml:", f"line {rules}:", "rules.margin_tiers.BTCUSDT: missing")]


def _rule_shape(ds: Path) -> list[Expect]:
    line = manifest_replace(ds, "fee_tiers = [[10_000, 40_000], [-5_000, 30_000]]", "fee_tiers = 5")
    return [("dataset.toml:", f"line {line}:", "rules.fee_tiers:", "expected an array")]


def _instrument_shape(ds: Path) -> list[Expect]:
    text = (ds / "dataset.toml").read_text()
    (ds / "dataset.toml").write_text(text + '[instruments]\nETHUSDT = "ETH"\n')
    line = text.count("\n") + 2
    return [("dataset.toml:", f"line {line}:", "instruments.ETHUSDT: expected a table")]


def _bad_toml(ds: Path) -> list[Expect]:
    line = manifest_replace(ds, "min_qty = 1", "min_qty = = 1")
    return [("dataset.toml:", "not valid TOML", f"line {line}", "column")]


def _unknown_stp(ds: Path) -> list[Expect]:
    line = manifest_replace(ds, 'stp = "cancel_taker"', 'stp = "cancel_everything"')
    return [("dataset.toml:", f"line {line}:", "rules.stp:", "unknown value")]


def _span_reversed(ds: Path) -> list[Expect]:
    text = (ds / "dataset.toml").read_text()
    start = text.split("start_ns = ")[1].split("\n")[0]
    line = manifest_replace(ds, f"end_ns = {text.split('end_ns = ')[1].split(chr(10))[0]}",
                            f"end_ns = {int(start) - 1}")
    return [("dataset.toml:", f"line {line}:", "dataset.end_ns:", "is not after start_ns")]


def _corrupt_extra(ds: Path) -> list[Expect]:
    (ds / "expected_book.parquet").write_bytes(b"PAR1 this is not parquet")
    return [("expected_book.parquet:", "not a readable Parquet file")]


def _corrupt_orders(ds: Path) -> list[Expect]:
    (ds / "orders.parquet").write_bytes(b"ts,seq\n1,2\n")
    return [("orders.parquet", "not a readable Parquet file")]


def _many_in_orders(ds: Path) -> list[Expect]:
    limit, market = rows_where(ds, "orders", NEW_LIMIT, after=100)[0], rows_where(ds, "orders", NEW_MARKET)[0]
    other = rows_where(ds, "orders", NEW_LIMIT, after=limit)[0]
    set_cells(ds, "orders", "price", {limit: 0})
    set_cells(ds, "orders", "qty", {other: -3})
    set_cells(ds, "orders", "side", {market: "long"})
    return [("orders.parquet:", f"row {limit},", "column price:", "off the grid"),
            ("orders.parquet:", f"row {other},", "column qty:", "must be > 0"),
            ("orders.parquet:", f"row {market},", "column side:", "unknown value")]


def _many_capped(ds: Path) -> list[Expect]:
    rows = rows_where(ds, "orders", NEW_LIMIT, n=120)
    set_cells(ds, "orders", "price", {r: -r for r in rows})
    return [("orders.parquet:", f"row {rows[0]},", "column price:", f"(value: {-rows[0]})"),
            ("orders.parquet:", f"row {rows[49]},", "column price:"),
            ("orders.parquet:", "stopped at 50 faults")]


def _many_files(ds: Path) -> list[Expect]:
    line = manifest_replace(ds, "taker = 50_000 }", "taker = -1 }")
    set_cells(ds, "accounts", "balance", {2: -1})
    set_cells(ds, "transfers", "kind", {4: "bonus"})
    row = rows_where(ds, "orders", NEW)[0]
    set_cells(ds, "orders", "symbol", {row: "ETHUSDT"})
    return [("dataset.toml:", f"line {line}:", "fee tier 0:"),
            ("accounts.parquet:", "row 2,", "column balance:", "must be >= 0"),
            ("transfers.parquet:", "row 4,", "column kind:", "unknown value"),
            ("orders.parquet:", f"row {row},", "column symbol:", "not in the manifest")]


def _many_manifest(ds: Path) -> list[Expect]:
    text = (ds / "dataset.toml").read_text()
    header = text[: text.index("[instruments.BTCUSDT]")].count("\n") + 1
    manifest_replace(ds, 'lot_size = "0.001"', 'lot_size = "0.000000001"')
    line = manifest_replace(ds, "max_leverage.BTCUSDT = 50", "max_leverage.BTCUSDT = 0")
    set_cells(ds, "marks", "mark_price", {2: -4})
    return [("dataset.toml:", f"line {header}:", "instruments.BTCUSDT:", "not a whole number"),
            ("dataset.toml:", f"line {line}:", "rules.max_leverage.BTCUSDT:", "must be an integer >= 1"),
            ("marks.parquet:", "row 2,", "column mark_price:", "must be > 0")]


def _many_market(ds: Path) -> list[Expect]:
    add_market_data(ds)
    set_cells(ds, "trades", "price", {2: -1, 30: 0})
    set_cells(ds, "depth", "side", {5: "mid"})
    set_cells(ds, "depth", "symbol", {6: "ETHUSDT"})
    return [("trades.parquet:", "row 2,", "column price:", "must be > 0"),
            ("trades.parquet:", "row 30,", "column price:", "must be > 0"),
            ("depth.parquet:", "row 5,", "column side:", "unknown value"),
            ("depth.parquet:", "row 6,", "column symbol:", "not in the manifest")]


CASES = [
    # orders, one fault each
    Case("an off-grid price (below the first tick) in orders", _cell("orders", "price", -5, NEW_LIMIT)),
    Case("a zero qty in a new order", _cell("orders", "qty", 0, NEW)),
    Case("a negative qty in a new order", _cell("orders", "qty", -7, NEW)),
    Case("a negative qty in an amend", _cell("orders", "qty", -1, pl.col("action") == "amend")),
    Case("a null account in orders", _cell("orders", "account", None)),
    Case("an unknown side in orders", _cell("orders", "side", "long", NEW)),
    Case("an unknown tif in orders", _cell("orders", "tif", "day", NEW)),
    Case("an unknown action in orders", _cell("orders", "action", "replace")),
    Case("a limit order without a price", _cell("orders", "price", None, NEW_LIMIT)),
    Case("a market order with a price", _cell("orders", "price", 300_000, NEW_MARKET)),
    Case("a symbol the manifest does not know in orders", _cell("orders", "symbol", "ETHUSDT")),
    Case("an order of an account not in accounts", _cell("orders", "account", "ghost", NEW)),
    Case("orders ts going backwards", _ts_backwards),
    Case("orders ts after the manifest's span", _ts_after_span),
    Case("a duplicate seq in orders", _duplicate_seq),
    Case("a new order id used twice", _duplicate_order_id),
    Case("a missing column in orders", _drop_column),
    Case("an extra column in orders", _extra_column),
    Case("a float price column in orders", _float_price),
    Case("a file that is not parquet in place of orders", _corrupt_orders),
    # accounts, positions, the clearing tables
    Case("a negative balance", _cell("accounts", "balance", -1)),
    Case("an unknown margin mode", _cell("accounts", "margin_mode", "cross")),
    Case("an account asset the manifest does not know", _cell("accounts", "asset", "BTC")),
    Case("a fee tier the rules do not define", _cell("accounts", "fee_tier", 7)),
    Case("an exchange account in accounts", _cell("accounts", "account", "insurance_fund")),
    Case("a duplicate account and asset", _accounts_duplicate),
    Case("positions that do not net to zero", _positions_not_netting),
    Case("a zero entry price", _cell("positions", "entry_price", 0)),
    Case("a position in an unknown symbol", _cell("positions", "symbol", "ETHUSDT")),
    Case("a position of an account not in accounts", _cell("positions", "account", "ghost")),
    Case("a string qty column in positions", _string_qty),
    Case("a null mark price", _cell("marks", "mark_price", None)),
    Case("a zero index price", _cell("marks", "index_price", 0)),
    Case("marks ts going backwards", _marks_backwards),
    Case("a zero funding scale", _cell("funding", "scale", 0, at=1)),
    Case("a duplicate premium sample", _premium_duplicate),
    Case("an unknown transfer kind", _cell("transfers", "kind", "bonus")),
    Case("a negative transfer amount", _cell("transfers", "amount", -100)),
    # market-data tables
    Case("an unknown trade aggressor", _market("trades", "aggressor", "unknown")),
    Case("a zero trade qty", _market("trades", "qty", 0)),
    Case("a duplicate trade seq", _trades_duplicate_seq),
    Case("a negative depth level qty", _market("depth", "qty", -1)),
    Case("an unknown depth side", _market("depth", "side", "mid")),
    Case("a null depth snapshot flag", _market("depth", "snapshot", None)),
    Case("depth seq going backwards within one ts", _depth_seq_backwards),
    Case("a zero asset price", _market("asset_prices", "price", 0)),
    # dataset.toml
    Case("tick x lot not a whole number of minor units", _tick_lot_line),
    Case("a liquidation band out of range", _band),
    Case("a taker fee out of range", _taker_fee),
    Case("a funding cap out of range", _funding_cap),
    Case("margin tiers missing in a clearing dataset", _missing_tiers),
    Case("a manifest that is not toml", _bad_toml),
    Case("a rule value of the wrong shape", _rule_shape),
    Case("an instrument that is not a table", _instrument_shape),
    Case("an unknown default stp", _unknown_stp),
    Case("a span that ends before it starts", _span_reversed),
    # an importer's extra table
    Case("an extra table that is not parquet", _corrupt_extra),
    # many faults at once
    Case("many: three faults in orders", _many_in_orders),
    Case("many: more faults than the cap", _many_capped),
    Case("many: faults in four files", _many_files),
    Case("many: faults in trades and depth", _many_market),
    Case("many: faults in the manifest, its rules and a table", _many_manifest),
]
