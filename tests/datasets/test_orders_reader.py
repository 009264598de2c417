"""`iter_order_batches`: the columns the matcher gets from an `orders` file, the same
whichever way the file encodes its strings (dictionary or plain, string or large_string,
a missing or all-null `stp`), with one shared str object per account and symbol."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from datasets.order_streams import realistic_stream
from datasets.orders import check_orders, iter_order_batches, write_orders
from matching.types import ACTION_NAMES, SIDE_NAMES, STP_NAMES, TIF_NAMES, TYPE_NAMES


def _expected_rows(path: Path, default_stp: int) -> list[tuple]:
    """The slow, obvious reading: one row at a time from to_pylist, names looked up."""
    rows = []
    for r in pq.read_table(path).to_pylist():
        code = (lambda names, v, null: null if v is None else names.index(v))
        rows.append((r["ts"], code(ACTION_NAMES, r["action"], None), r["account"], r["symbol"],
                     r["order_id"], code(SIDE_NAMES, r["side"], 0), code(TYPE_NAMES, r["type"], 0),
                     code(TIF_NAMES, r["tif"], 0), r["price"], r["qty"],
                     code(STP_NAMES, r.get("stp"), default_stp), bool(r["reduce_only"])))
    return rows


def _plain(table: pa.Table, string: pa.DataType = pa.string()) -> pa.Table:
    return table.cast(pa.schema([pa.field(f.name, string if pa.types.is_dictionary(f.type) else f.type)
                                 for f in table.schema]))


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("orders") / "orders.parquet"
    write_orders(realistic_stream(3000, seed=3), path)
    return path


VARIANTS = [
    pytest.param(lambda t: t, id="dictionary-encoded as write_orders writes it"),
    pytest.param(_plain, id="plain strings"),
    pytest.param(lambda t: _plain(t, pa.large_string()), id="large strings"),
    pytest.param(lambda t: t.drop_columns(["stp"]), id="no stp column takes the default"),
    pytest.param(lambda t: t.set_column(t.schema.get_field_index("stp"), "stp", pa.nulls(len(t))),
                 id="all-null stp of null type takes the default"),
    pytest.param(lambda t: t.set_column(t.schema.get_field_index("reduce_only"), "reduce_only",
                                        pc.if_else(pc.equal(pc.bit_wise_and(t["order_id"], 3), 0),
                                                   pa.scalar(None, pa.bool_()), t["reduce_only"])),
                 id="null reduce_only reads as False"),
]


@pytest.mark.parametrize("variant", VARIANTS)
def test_batches_match_a_row_by_row_reading(written, tmp_path, variant):
    path = tmp_path / "orders.parquet"
    pq.write_table(variant(pq.read_table(written)), path, row_group_size=700)
    check_orders(path)
    batches = list(iter_order_batches(path, default_stp=2, batch_rows=500, reduce_only=True))
    assert all(isinstance(c, list) for b in batches for c in b)
    rows = [row for b in batches for row in zip(*b)]
    assert rows == _expected_rows(path, default_stp=2)
    assert [type(v) for row in rows for v in row] == [type(v) for row in _expected_rows(path, 2) for v in row]


def test_each_account_and_symbol_is_one_str_object_across_batches(written):
    seen: dict[str, str] = {}
    batches = list(iter_order_batches(written, default_stp=1, batch_rows=256))
    assert len(batches) > 3
    for batch in batches:
        for name in (*batch[2], *batch[3]):
            assert seen.setdefault(name, name) is name
    assert len(seen) > 2
