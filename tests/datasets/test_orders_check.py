"""`check_orders`: a screen asks every check at once whether it can find anything, and only
those checks fetch their rows. These cases pin that the screen hides no check: a file with
a fault of every kind lists each of them, in report order, whichever way its strings are
encoded; the fault budget goes to the checks in that order; and the duplicate checks still
run when seq or the new order_ids do not simply increase."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datasets.orders import MAX_FAULTS, ORDERS_SCHEMA, check_orders
from matching.errors import InputError

COLUMNS = ("ts", "seq", "account", "symbol", "action", "order_id", "side", "type", "tif",
           "price", "qty")


def new(ts: int, seq: int, order_id: int, **cells: object) -> dict:
    """A `new` limit buy of account a on BTCUSDT; `cells` override any column."""
    row = dict(ts=ts, seq=seq, account="a", symbol="BTCUSDT", action="new", order_id=order_id,
               side="buy", type="limit", tif="gtc", price=10, qty=1)
    return row | cells


def cancel(ts: int, seq: int, order_id: int, **cells: object) -> dict:
    """A cancel of `order_id` (no order fields); `cells` override any column."""
    row = dict(ts=ts, seq=seq, account="a", symbol="BTCUSDT", action="cancel", order_id=order_id,
               side=None, type=None, tif=None, price=None, qty=None)
    return row | cells


def write_rows(path: Path, rows: list[dict], *, plain_strings: bool) -> Path:
    """Write `rows` as an orders file: dictionary-encoded strings as write_orders writes
    them, or plain strings (polars reads the first as Categorical, the second as String)."""
    table = pa.table({c: [r[c] for r in rows] for c in COLUMNS}
                     | {"reduce_only": [False] * len(rows), "stp": [None] * len(rows)})
    schema = ORDERS_SCHEMA
    if plain_strings:
        schema = pa.schema([pa.field(f.name, pa.string()) if pa.types.is_dictionary(f.type) else f
                            for f in schema])
    pq.write_table(table.cast(schema), path)
    return path


def faults_of(path: Path) -> list[str]:
    with pytest.raises(InputError) as err:
        check_orders(path)
    return err.value.problems


ENCODINGS = [pytest.param(False, id="dictionary-encoded strings"),
             pytest.param(True, id="plain strings")]


@pytest.mark.parametrize("plain_strings", ENCODINGS)
def test_a_file_with_a_fault_of_every_kind_lists_each_in_report_order(tmp_path, plain_strings):
    rows = [
        new(100, 1, 1),
        new(100, 2, 2, account=None),                       # null account
        new(101, 3, 3, side=None),                          # null side in a new
        new(102, 4, 4, tif="day"),                          # unknown tif
        cancel(103, 5, 1, action="amend"),                  # an amend without price or qty
        cancel(99, 6, 2),                                   # ts goes backwards
        cancel(104, 8, 3),
        cancel(104, 7, 4),                                  # seq goes backwards within ts 104
        new(105, 8, 3),                                     # seq 8 and new order_id 3 again
        cancel(106, 10, 9, action="replace"),               # unknown action
    ]
    path = write_rows(tmp_path / "orders.parquet", rows, plain_strings=plain_strings)
    assert faults_of(path) == [
        "row 2, column account: null where a value is required (value: None)",
        "row 3, column side: null in a `new` instruction (value: None)",
        "row 10, column action: unknown value; one of new, cancel, amend (value: 'replace')",
        "row 4, column tif: unknown value; one of gtc, ioc, fok, post_only (value: 'day')",
        "row 5, column qty: an amend needs a new qty or a new price (value: None)",
        "row 6, column ts: goes backwards (orders must be sorted by ts, then seq) (value: 99)",
        "row 8, column seq: goes backwards within one ts (orders must be sorted by ts, then seq)"
        " (value: 7)",
        "row 7, column seq: duplicate seq (value: 8)",
        "row 9, column seq: duplicate seq (value: 8)",
        "row 3, column order_id: order_id of a `new` used more than once (value: 3)",
        "row 9, column order_id: order_id of a `new` used more than once (value: 3)",
    ]


def test_the_fault_budget_goes_to_the_checks_in_report_order(tmp_path):
    rows = [new(100 + i, i + 1, i + 1, account=None) for i in range(MAX_FAULTS + 5)]
    rows.append(new(1, 1, 1, tif="day"))  # ts backwards, seq and order_id again, unknown tif
    path = write_rows(tmp_path / "orders.parquet", rows, plain_strings=False)
    assert faults_of(path) == [f"row {r}, column account: null where a value is required (value: None)"
                               for r in range(1, MAX_FAULTS + 1)]


@pytest.mark.parametrize("plain_strings", ENCODINGS)
def test_seq_and_new_order_ids_need_not_increase_to_be_unique(tmp_path, plain_strings):
    # seq restarts when ts moves on, and order ids come in any order: valid.
    rows = [new(100, 5, 30), new(100, 6, 10), new(101, 1, 20), cancel(102, 2, 30)]
    path = write_rows(tmp_path / "orders.parquet", rows, plain_strings=plain_strings)
    assert check_orders(path) == 4


@pytest.mark.parametrize("plain_strings", ENCODINGS)
def test_repeats_that_are_not_neighbours_are_found_when_values_do_not_increase(tmp_path, plain_strings):
    rows = [new(100, 5, 30), new(100, 6, 10), new(101, 1, 20), new(102, 5, 10), cancel(103, 7, 30)]
    path = write_rows(tmp_path / "orders.parquet", rows, plain_strings=plain_strings)
    assert faults_of(path) == [
        "row 1, column seq: duplicate seq (value: 5)",
        "row 4, column seq: duplicate seq (value: 5)",
        "row 2, column order_id: order_id of a `new` used more than once (value: 10)",
        "row 4, column order_id: order_id of a `new` used more than once (value: 10)",
    ]
