"""`backtest validate`: the corpus of corrupted datasets (tests/datasets/corpus.py), each
rejected with exit 2 and a fault line naming file, row and column; the datasets this
project generates pass; and the parts (TOML line lookup, notes for importers' extras,
the clearing checks `backtest run` shares) one by one."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from backtest.cli import main
from datasets.generate import write_clearing_dataset, write_order_dataset
from datasets.orders import MAX_FAULTS, ORDERS_SCHEMA
from datasets.tables import ACCOUNTS, DEPTH, TRADES, check_table, load_table
from datasets.validate import _problem_line, _toml_key_lines, check_dataset, validate_dataset
from matching.errors import InputError
from tests.datasets.corpus import CASES, add_market_data, read, set_cells, write


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The valid dataset every corpus case starts from."""
    out = tmp_path_factory.mktemp("base") / "clearing"
    write_clearing_dataset(out, n=60_000, seed=1, accounts=40)
    return out


@pytest.fixture
def dataset(base: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(base, tmp_path / "ds"))


def validate(ds: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], str]:
    code = main(["validate", str(ds)])
    out = capsys.readouterr()
    faults = [line.removeprefix("fault: ") for line in out.err.splitlines() if line.startswith("fault: ")]
    return code, faults, out.out


def test_the_corpus_holds_more_than_twenty_cases_with_distinct_names():
    names = [c.id for c in CASES]
    assert len(names) == len(set(names)) >= 20
    assert sum(name.startswith("many:") for name in names) >= 3


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_a_corrupted_dataset_is_rejected_with_exit_2_naming_file_row_and_column(case, dataset, capsys):
    expected = case.mutate(dataset)
    code, faults, out = validate(dataset, capsys)
    assert code == 2
    assert out == ""
    for parts in expected:
        assert any(all(p in line for p in parts) for line in faults), (parts, faults)
    if not case.id.startswith("many:"):
        # One fault in, one fault out (a duplicate names both of its rows).
        assert len(faults) == len(expected), faults


def test_the_base_dataset_and_its_market_data_tables_are_valid(dataset, capsys):
    assert validate(dataset, capsys)[:2] == (0, [])
    add_market_data(dataset)
    code, faults, out = validate(dataset, capsys)
    assert (code, faults) == (0, [])
    assert out.strip() == f"{dataset}: valid"


def test_a_small_generated_crash_day_passes_validate(tmp_path, capsys):
    out = tmp_path / "crash"
    assert main(["generate", "crash-day", str(out), "--n", "50000", "--accounts", "300", "--seed", "3"]) == 0
    capsys.readouterr()
    assert validate(out, capsys)[:2] == (0, [])
    assert read(out, "accounts").height == 300


@pytest.mark.slow
def test_the_crash_day_make_demo_replays_passes_validate(tmp_path, capsys):
    # The Makefile's demo data: --n 1000000 --accounts 2000 --seed 1 (the defaults).
    out = tmp_path / "crash-day"
    assert main(["generate", "crash-day", str(out)]) == 0
    capsys.readouterr()
    assert validate(out, capsys)[:2] == (0, [])
    assert read(out, "orders").height == 1_000_000
    assert read(out, "accounts").height == 2_000


def test_a_matcher_only_dataset_needs_no_margin_tiers(tmp_path):
    out = write_order_dataset(tmp_path / "orders", kind="adversarial", n=5_000, seed=2)
    assert validate_dataset(out) == []


def test_margin_tiers_are_required_once_the_dataset_has_accounts(tmp_path):
    out = write_order_dataset(tmp_path / "orders", kind="realistic", n=2_000, seed=2)
    write(out, "accounts", pl.DataFrame({"account": ["a"], "asset": ["USDT"], "balance": [10]}))
    assert (out / "dataset.toml").read_text().splitlines()[18] == "[rules]"
    assert [f for f in validate_dataset(out) if "margin_tiers" in f] == [
        "dataset.toml: line 19: rules.margin_tiers.BTCUSDT: missing (rows of [floor, mmr, amount])"]


def test_positions_need_not_net_to_zero_in_a_market_data_replay(dataset):
    set_cells(dataset, "positions", "qty", {1: 999})
    assert any("net to" in f for f in validate_dataset(dataset))
    add_market_data(dataset)
    assert validate_dataset(dataset) == []


def test_depth_accepts_buy_and_sell_as_bid_and_ask(dataset):
    add_market_data(dataset)
    frame = read(dataset, "depth")
    write(dataset, "depth", frame.with_columns(pl.col("side").replace({"bid": "buy", "ask": "sell"})))
    assert validate_dataset(dataset) == []


def test_a_trade_id_may_be_an_integer_or_a_string(dataset):
    add_market_data(dataset)
    frame = read(dataset, "trades")
    write(dataset, "trades", frame.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("trade_id")))
    assert validate_dataset(dataset) == []
    write(dataset, "trades", frame.with_columns(pl.lit(1.5).alias("trade_id")))
    assert validate_dataset(dataset) == [
        "trades.parquet: column trade_id: type double where integer or string is required"]


def test_an_importers_extra_table_is_a_note_not_a_fault(dataset):
    write(dataset, "expected_book", pl.DataFrame({"row": [1, 2], "bid_price_1": [10, 11]}))
    report = check_dataset(dataset)
    assert report.faults == []
    assert report.notes == ["expected_book.parquet: 2 rows of readable Parquet; not a table of the "
                            "data contracts, so not checked further"]


def test_a_missing_folder_or_manifest_is_a_fault(tmp_path, dataset):
    assert validate_dataset(tmp_path / "nowhere") == [
        f"{tmp_path / 'nowhere'}: not a dataset folder (a folder holding dataset.toml and Parquet tables)"]
    (dataset / "dataset.toml").unlink()
    faults = validate_dataset(dataset)
    assert faults[0] == "dataset.toml: file not found: a dataset folder holds dataset.toml"
    # The tables are still checked, against nothing the manifest would have named.
    assert len(faults) == 1


def test_tables_are_checked_even_when_the_manifest_does_not_load(dataset):
    text = (dataset / "dataset.toml").read_text()
    (dataset / "dataset.toml").write_text(text.replace('minor_unit = "0.00000001"', 'minor_unit = "x"'))
    set_cells(dataset, "orders", "symbol", {5: "DOGE"})
    faults = validate_dataset(dataset)
    assert any(f.startswith("dataset.toml: line ") and "assets.USDT.minor_unit" in f for f in faults)
    assert any(f.startswith("orders.parquet: row 5, column symbol: not in the manifest") for f in faults)


def test_every_fault_of_a_file_is_listed_up_to_the_cap(dataset):
    frame = read(dataset, "orders")
    write(dataset, "orders", frame.with_columns(pl.lit(-1, dtype=pl.Int64).alias("qty")))
    faults = validate_dataset(dataset)
    assert len([f for f in faults if f.startswith("orders.parquet: row ")]) == MAX_FAULTS
    assert faults[-1].startswith("orders.parquet: stopped at 50 faults")


def test_toml_lines_are_found_for_dotted_keys_and_skip_multiline_arrays():
    text = ('[dataset]\nname = "x"\n\n[instruments.BTCUSDT]\ntick_size = "0.1"\n[rules]\n'
            'margin_tiers.BTCUSDT = [\n  [0, 400_000, 0],\n  [1, 2, 3],\n]\n'
            'fees = { maker = 1, taker = 2 }  # [not a header]\n')
    lines = _toml_key_lines(text)
    assert lines == {"dataset": 1, "dataset.name": 2, "instruments.BTCUSDT": 4,
                     "instruments.BTCUSDT.tick_size": 5, "rules": 6,
                     "rules.margin_tiers.BTCUSDT": 7, "rules.fees": 11}
    assert _problem_line("instruments.BTCUSDT.lot_size: must be a positive decimal", lines) == 4
    assert _problem_line("rules.margin_tiers.BTCUSDT: tier 1: floors must ascend", lines) == 7
    assert _problem_line("fee tier 0: maker 1, taker 2 out of range", lines) == 11
    assert _problem_line("instruments: at least one table is required", lines) is None


def test_backtest_run_keeps_raising_on_a_bad_table(tmp_path):
    path = tmp_path / "accounts.parquet"
    pl.DataFrame({"account": ["a", "b"], "asset": ["USDT", "ETH"], "balance": [1, -2]}).write_parquet(path)
    with pytest.raises(InputError) as info:
        load_table(path, ACCOUNTS, known={"asset": {"USDT"}})
    assert info.value.problems == [
        "row 2, column asset: not in the manifest; one of USDT (value: 'ETH')",
        "row 2, column balance: must be >= 0 (value: -2)",
    ]


def test_the_market_data_specs_report_every_fault_of_a_file(tmp_path):
    trades = tmp_path / "trades.parquet"
    pl.DataFrame({"ts": [3, 2, 2], "seq": [1, 2, 2], "symbol": ["X", "X", None], "price": [5, 0, 5],
                  "qty": [1, 1, -1], "aggressor": ["buy", "sell", "both"]}).write_parquet(trades)
    with pytest.raises(InputError) as info:
        check_table(trades, TRADES)
    assert info.value.problems == [
        "row 3, column symbol: null where a value is required (value: None)",
        "row 3, column aggressor: unknown value; one of buy, sell (value: 'both')",
        "row 2, column price: must be > 0 (value: 0)",
        "row 3, column qty: must be > 0 (value: -1)",
        "row 2, column ts: goes backwards (rows must be sorted by ts) (value: 2)",
        "row 2, column seq: duplicate seq (value: 2)",
        "row 3, column seq: duplicate seq (value: 2)",
    ]
    depth = tmp_path / "depth.parquet"
    pl.DataFrame({"ts": [1, 1, 1], "seq": [4, 4, 4], "symbol": ["X"] * 3, "side": ["bid", "bid", "ask"],
                  "price": [5, 5, 5], "qty": [0, 1, 2], "snapshot": [False] * 3}).write_parquet(depth)
    with pytest.raises(InputError) as info:
        check_table(depth, DEPTH)
    assert info.value.problems == ["row 1, column price: duplicate (seq=4, side='bid', price=5)",
                                   "row 2, column price: duplicate (seq=4, side='bid', price=5)"]


def test_faults_in_dictionary_encoded_columns_name_the_value(dataset):
    frame = read(dataset, "orders")
    rows = frame.with_row_index("row", offset=1).filter(pl.col("action") == "new")["row"].head(2).to_list()
    frame = frame.with_columns(
        pl.when(pl.int_range(pl.len()) == rows[0] - 1).then(pl.lit("ETHUSDT")).otherwise(pl.col("symbol")).alias("symbol"),
        pl.when(pl.int_range(pl.len()) == rows[1] - 1).then(pl.lit("ghost")).otherwise(pl.col("account")).alias("account"))
    pq.write_table(frame.to_arrow().cast(ORDERS_SCHEMA), dataset / "orders.parquet")
    assert pa.types.is_dictionary(pq.read_schema(dataset / "orders.parquet").field("symbol").type)
    assert validate_dataset(dataset) == [
        f"orders.parquet: row {rows[0]}, column symbol: not in the manifest; one of BTCUSDT (value: 'ETHUSDT')",
        f"orders.parquet: row {rows[1]}, column account: not in accounts.parquet (the account has no "
        "balance row) (value: 'ghost')"]
