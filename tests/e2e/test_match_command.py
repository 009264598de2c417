"""`backtest match` end to end: generated dataset in, run folder out, through `main()`."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from backtest import outputs
from backtest.cli import main
from datasets.order_streams import adversarial_stream, realistic_stream
from tests.reference.naive import NaiveMatcher
from matching import SymbolRules


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "orders-5k"
    assert main(["generate", "orders", str(out), "--n", "5000", "--seed", "3"]) == 0
    return out


def test_two_runs_are_byte_identical(small_dataset, tmp_path, capsys):
    assert main(["match", str(small_dataset), "--out", str(tmp_path / "a")]) == 0
    assert main(["match", str(small_dataset), "--out", str(tmp_path / "b")]) == 0
    files_a = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files_a == ["book_final.parquet", "fills.parquet", "order_events.parquet", "summary.json"]
    for name in files_a:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert "run folder:" in capsys.readouterr().out


def test_two_generations_with_one_seed_are_byte_identical(tmp_path):
    for name in ("a", "b"):
        assert main(["generate", "orders", str(tmp_path / name), "--n", "2000", "--seed", "9"]) == 0
    for name in ("dataset.toml", "orders.parquet"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_summary_hashes_and_counts_describe_the_written_tables(small_dataset, tmp_path):
    run = tmp_path / "run"
    assert main(["match", str(small_dataset), "--out", str(run)]) == 0
    summary = json.loads((run / "summary.json").read_text())
    for name, meta in summary["tables"].items():
        assert outputs.file_sha256(run / f"{name}.parquet") == meta["sha256"]
        assert pq.ParquetFile(run / f"{name}.parquet").metadata.num_rows == meta["rows"]
    assert summary["instructions"] == 5000
    assert summary["events"]["filled"] == 2 * summary["fills"]
    # One sequence shared by fills and events: 1..N with no gap and no repeat.
    seqs = pl.concat([pl.read_parquet(run / "fills.parquet", columns=["seq"]),
                      pl.read_parquet(run / "order_events.parquet", columns=["seq"])])["seq"].sort()
    assert seqs.to_list() == list(range(1, summary["fills"] + summary["order_events"] + 1))


def _replay_reference(dataset: Path) -> NaiveMatcher:
    from datasets.orders import iter_order_batches

    ref = NaiveMatcher({"BTCUSDT": SymbolRules()})
    for batch in iter_order_batches(dataset / "orders.parquet", default_stp=1):
        for ts, action, acct, sym, oid, side, typ, tif, price, qty, stp in zip(*batch):
            if action == 0:
                ref.new_order(ts, acct, sym, oid, side, typ, tif, price, qty, stp)
            elif action == 1:
                ref.cancel(ts, acct, sym, oid)
            else:
                ref.amend(ts, acct, sym, oid, price, qty)
    return ref


@pytest.mark.slow
def test_output_files_agree_with_the_reference_model(tmp_path):
    dataset = tmp_path / "data"
    assert main(["generate", "orders", str(dataset), "--n", "3000", "--seed", "5"]) == 0
    run = tmp_path / "run"
    assert main(["match", str(dataset), "--out", str(run)]) == 0
    ref = _replay_reference(dataset)
    ref_fills = [r for r in ref.rows if r[0] == "fill"]
    fills = pl.read_parquet(run / "fills.parquet")
    assert fills.select("price", "qty", "taker_order_id", "maker_order_id").rows() == \
        [(r[3], r[4], r[6], r[7]) for r in ref_fills]
    assert fills["notional"].to_list() == [r[3] * r[4] * 10_000 for r in ref_fills]  # K = 1e4
    events = pl.read_parquet(run / "order_events.parquet")
    assert events.select("event", "account", "order_id", "reason", "remaining_qty").rows() == \
        [(r[0], r[2], r[4], r[5], r[6]) for r in ref.rows if r[0] != "fill"]
    book = pl.read_parquet(run / "book_final.parquet")
    assert book.rows() == [(s, "buy" if side == 0 else "sell", p, q, n)
                           for s, side, p, q, n in ref.book_levels()]


def test_adversarial_stream_leaves_the_book_swept(tmp_path):
    cols = adversarial_stream(3000, depth_levels=100, orders_per_level=3)
    assert cols.order_type.count(1) >= 2  # sweeps happened


def _write(path: Path, table: pa.Table) -> None:
    pq.write_table(table, path)


def _good_table(tmp_path) -> pa.Table:
    from datasets.orders import write_orders

    write_orders(realistic_stream(50, seed=2), tmp_path / "good.parquet")
    return pq.read_table(tmp_path / "good.parquet")


def _dataset_with(tmp_path, table: pa.Table) -> Path:
    from datasets.generate import MANIFEST

    ds = tmp_path / "bad"
    ds.mkdir()
    (ds / "dataset.toml").write_text(MANIFEST.format(name="bad", start_ns=0, end_ns=1, provenance="test"))
    _write(ds / "orders.parquet", table)
    return ds


def _set(table: pa.Table, column: str, row: int, value) -> pa.Table:
    values = table[column].to_pylist()
    values[row] = value
    i = table.schema.get_field_index(column)
    typ = table.schema.field(column).type
    if pa.types.is_dictionary(typ):
        typ = typ.value_type
    return table.set_column(i, column, pa.array(values, type=typ))


def _reuse_first_new_id(table: pa.Table) -> pa.Table:
    news = [i for i, a in enumerate(table["action"].to_pylist()) if a == "new"]
    return _set(table, "order_id", news[1], table["order_id"][news[0]].as_py())


CORRUPTIONS = [
    pytest.param(lambda t: t.drop_columns(["qty"]), "column qty: missing", id="a missing column"),
    pytest.param(lambda t: t.append_column("colour", pa.array(["red"] * t.num_rows)),
                 "column colour: unknown column", id="an extra column"),
    pytest.param(lambda t: t.set_column(t.schema.get_field_index("price"), "price",
                                        pa.array([str(v) for v in t["price"].to_pylist()])),
                 "column price: type string where an integer is required", id="a string price column"),
    pytest.param(lambda t: _set(t, "side", 6, "long"), "row 7, column side: unknown value",
                 id="an unknown side"),
    pytest.param(lambda t: _set(t, "action", 3, "replace"), "row 4, column action: unknown value",
                 id="an unknown action"),
    pytest.param(lambda t: _set(t, "ts", 10, 0), "row 11, column ts: goes backwards",
                 id="a timestamp going backwards"),
    pytest.param(lambda t: _set(t, "seq", 12, 3), "column seq: duplicate seq",
                 id="a duplicate seq"),
    pytest.param(lambda t: _set(t, "account", 0, None), "row 1, column account: null",
                 id="a null account"),
    pytest.param(lambda t: _set(t, "qty", 0, None), "row 1, column qty: null in a `new` instruction",
                 id="a new without qty"),
    pytest.param(lambda t: _reuse_first_new_id(t),
                 "column order_id: order_id of a `new` used more than once",
                 id="a reused order id"),
]


@pytest.mark.parametrize(("corrupt", "message"), CORRUPTIONS)
def test_a_malformed_orders_file_stops_with_exit_2_naming_the_place(tmp_path, capsys, corrupt, message):
    ds = _dataset_with(tmp_path, corrupt(_good_table(tmp_path)))
    code = main(["match", str(ds), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2
    assert "orders.parquet" in err and message in err, err
    assert not (tmp_path / "run").exists()


def test_a_bad_manifest_names_the_key(tmp_path, capsys):
    ds = _dataset_with(tmp_path, _good_table(tmp_path))
    text = (ds / "dataset.toml").read_text().replace('tick_size = "0.1"', 'tick_size = "0.000001"')
    (ds / "dataset.toml").write_text(text)
    assert main(["match", str(ds), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "dataset.toml" in err and "instruments.BTCUSDT" in err and "minor units" in err


def test_an_interrupted_run_leaves_no_run_folder(small_dataset, tmp_path, monkeypatch, capsys):
    def interrupt(self, records):
        raise KeyboardInterrupt

    monkeypatch.setattr(outputs.MatchOutputWriter, "write_records", interrupt)
    assert main(["match", str(small_dataset), "--out", str(tmp_path / "run")]) == 1
    assert list(tmp_path.iterdir()) == []
    assert "no run folder" in capsys.readouterr().err


def test_bench_json_prints_the_matcher_rate(small_dataset, capsys):
    assert main(["bench", "--dataset", str(small_dataset), "--json", "--rounds", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["messages"] == 5000
    assert result["matcher_msgs_per_s"] > 0 and result["match_pipeline_msgs_per_s"] > 0
    assert result["replay_events_per_s"] is None  # no margin rules: nothing to clear


def test_two_crash_days_with_one_seed_are_byte_identical_and_another_seed_differs(tmp_path):
    for name, seed in (("a", "4"), ("b", "4"), ("c", "5")):
        assert main(["generate", "crash-day", str(tmp_path / name), "--n", "20000", "--accounts", "100",
                     "--hours", "1", "--seed", seed]) == 0
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == ["accounts.parquet", "dataset.toml", "funding.parquet", "marks.parquet", "orders.parquet",
                     "positions.parquet", "premium_index.parquet", "transfers.parquet"]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert (tmp_path / "a" / "orders.parquet").read_bytes() != (tmp_path / "c" / "orders.parquet").read_bytes()
