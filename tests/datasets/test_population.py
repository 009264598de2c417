"""`backtest generate population`: accounts and positions sized from open interest and a
long/short ratio (a hand-made Binance `metrics` file with the published header, or the
explicit options), into a dataset folder an importer would have written."""

from __future__ import annotations

import argparse
import math
import re
import zipfile
from fractions import Fraction
from pathlib import Path

import polars as pl
import pytest

from backtest.cli import main
from datasets import population
from datasets.manifest import load_manifest
from datasets.tables import ACCOUNTS, POSITIONS, check_table
from datasets.generate import MANIFEST
from matching.errors import InputError

START_NS = 1_722_470_400_000_000_000  # 2024-08-01T00:00:00Z
MINUTE_NS = 60 * 1_000_000_000
K = 10_000  # BTCUSDT minor units per tick x lot (0.1 x 0.001 / 1e-8)

TIERS = """\
margin_tiers.BTCUSDT = [[0, 400_000, 0, 125], [5_000_000_000_000, 500_000, 5_000_000_000, 100],
  [25_000_000_000_000, 1_000_000, 130_000_000_000, 50], [100_000_000_000_000, 2_500_000, 1_630_000_000_000, 20]]
"""
METRICS_ROWS = [  # create_time, sum_open_interest, count_tt, sum_tt, count_ls
    ("2024-08-01 00:00:00", "81234.56700000", "1.50000000", "1.20000000", "1.85420000"),
    ("2024-08-01 00:05:00", "81300.00000000", "1.51000000", "1.21000000", "2.00000000"),
    ("2024-08-01 00:10:00", "90000.00000000", "1.52000000", "1.22000000", "3.00000000"),
]


def _dataset(folder: Path, *, tiers: bool = False, marks: list[tuple[int, int]] | None = None) -> Path:
    folder.mkdir(parents=True)
    (folder / "dataset.toml").write_text(MANIFEST.format(name="hand-made", start_ns=START_NS, end_ns=START_NS + 60 * MINUTE_NS,
                    provenance="tests/datasets/test_population.py")
                                         + (TIERS if tiers else ""))
    rows = marks if marks is not None else [(START_NS + 1_000, 650_002), (START_NS + 30 * MINUTE_NS, 640_000)]
    pl.DataFrame([(ts, "BTCUSDT", m, m) for ts, m in rows], orient="row",
                 schema={"ts": pl.Int64, "symbol": pl.String, "mark_price": pl.Int64,
                         "index_price": pl.Int64}).write_parquet(folder / "marks.parquet")
    (folder / "depth.parquet").write_bytes(b"not touched by the population")
    return folder


def _metrics(path: Path, rows=METRICS_ROWS, *, header: str | None = None) -> Path:
    lines = [header or ",".join(population.METRICS_HEADER)]
    for ts, oi, count_tt, sum_tt, count_ls in rows:
        lines.append(f"{ts},BTCUSDT,{oi},5000000000.00000000,{count_tt},{sum_tt},{count_ls},0.95000000")
    text = "\n".join(lines) + "\n"
    if path.suffix == ".zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("BTCUSDT-metrics-2024-08-01.csv", text)
    else:
        path.write_text(text)
    return path


def _options(**overrides) -> argparse.Namespace:
    values = dict(metrics=None, ratio_column="count_long_short_ratio", open_interest=None,
                  long_short_ratio=None, ratio_kind="accounts", at=None, symbol=None, accounts=2_000,
                  leverage=None, entry_price=None, seed=1)
    values.update(overrides)
    return argparse.Namespace(**values)


def _run(out: Path, **overrides) -> list[str]:
    return population.run(out, _options(**overrides), lambda done, total: None)


def _tables(out: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    return pl.read_parquet(out / "accounts.parquet"), pl.read_parquet(out / "positions.parquet")


def _fault(out: Path, **overrides) -> InputError:
    with pytest.raises(InputError) as caught:
        _run(out, **overrides)
    return caught.value


def test_counted_ratio_splits_accounts_and_both_sides_hold_the_open_interest(tmp_path):
    out = _dataset(tmp_path / "ds")
    _run(out, open_interest="81234.567", long_short_ratio="1.8542", accounts=3_000)
    accounts, positions = _tables(out)
    longs, shorts = positions.filter(pl.col("qty") > 0), positions.filter(pl.col("qty") < 0)
    assert longs["qty"].sum() == 81_234_567 and -shorts["qty"].sum() == 81_234_567
    assert positions["qty"].sum() == 0  # nets to zero: nothing left for the market account
    assert longs.height == round(3_000 * 1.8542 / 2.8542) == 1_949
    assert positions.height == accounts.height == 3_000
    assert (positions["qty"] != 0).all() and (positions["entry_price"] == 650_002).all()
    check_table(out / "accounts.parquet", ACCOUNTS)
    check_table(out / "positions.parquet", POSITIONS)


def test_quantity_ratio_splits_twice_the_open_interest_and_leaves_the_net_to_the_market(tmp_path):
    out = _dataset(tmp_path / "ds")
    lines = _run(out, open_interest="81234.567", long_short_ratio="1.2", ratio_kind="quantity")
    _, positions = _tables(out)
    long_lots = positions.filter(pl.col("qty") > 0)["qty"].sum()
    short_lots = -positions.filter(pl.col("qty") < 0)["qty"].sum()
    exact_long = Fraction(2 * 81_234_567) * Fraction(6, 5) / Fraction(11, 5)
    assert abs(long_lots - exact_long) <= 1  # OI x 2r/(1+r) within one lot
    assert long_lots + short_lots == 2 * 81_234_567
    assert abs(Fraction(long_lots, short_lots) - Fraction(6, 5)) < Fraction(1, 10**6)
    assert any("net +14,769,922 lots (the market account takes the opposite" in line for line in lines)


@pytest.mark.parametrize("suffix", [pytest.param(".csv", id="a plain csv"),
                                    pytest.param(".zip", id="the archive's zip")])
def test_a_metrics_file_gives_the_last_row_at_or_before_the_time(tmp_path, suffix):
    out = _dataset(tmp_path / "ds")
    metrics = _metrics(tmp_path / f"BTCUSDT-metrics-2024-08-01{suffix}")
    lines = _run(out, metrics=metrics, at="2024-08-01T00:07:30Z", accounts=1_000)
    _, positions = _tables(out)
    assert positions.filter(pl.col("qty") > 0)["qty"].sum() == 81_300_000  # the 00:05 row
    assert positions.filter(pl.col("qty") > 0).height == round(1_000 * 2 / 3)  # count ratio 2.0
    assert any(f"{metrics.name} row 3 (2024-08-01T00:05:00Z), count_long_short_ratio" in line
               for line in lines)
    # The mark of 00:00:00.000001 is the last at or before 00:07:30.
    assert (positions["entry_price"] == 650_002).all()


def test_the_top_trader_position_ratio_of_a_metrics_file_splits_quantity(tmp_path):
    out = _dataset(tmp_path / "ds")
    metrics = _metrics(tmp_path / "m.csv")
    _run(out, metrics=metrics, ratio_column="sum_toptrader_long_short_ratio", accounts=500)
    _, positions = _tables(out)
    long_lots = positions.filter(pl.col("qty") > 0)["qty"].sum()
    assert abs(long_lots - Fraction(2 * 81_234_567) * Fraction(12, 10) / Fraction(22, 10)) <= 1


def test_the_same_seed_gives_the_same_bytes_and_another_seed_does_not(tmp_path):
    outs = []
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        out = _dataset(tmp_path / name)
        _run(out, open_interest="5000", long_short_ratio="1.3", seed=seed, accounts=800)
        outs.append(out)
    for table in ("accounts.parquet", "positions.parquet"):
        assert (outs[0] / table).read_bytes() == (outs[1] / table).read_bytes()
        assert (outs[0] / table).read_bytes() != (outs[2] / table).read_bytes()


def _leverage_of(accounts: pl.DataFrame, positions: pl.DataFrame, table: tuple[int, ...]) -> list[int]:
    """The leverage each balance was sized with: the one L with ceil(notional / L) == balance."""
    found = []
    for (balance,), (qty, entry) in zip(accounts.select("balance").rows(),
                                        positions.select("qty", "entry_price").rows()):
        notional = entry * abs(qty) * K
        matches = [lev for lev in table if -(-notional // lev) == balance]
        assert len(matches) == 1, (balance, notional)
        found.append(matches[0])
    return found


def test_balances_are_the_initial_margin_of_a_leverage_drawn_with_the_table_weights(tmp_path):
    out = _dataset(tmp_path / "ds")
    n = 20_000
    _run(out, open_interest="900000", long_short_ratio="1", accounts=n, leverage="3:1,10:3,50:1")
    accounts, positions = _tables(out)
    levs = _leverage_of(accounts, positions, (3, 10, 50))
    for lev, weight in ((3, 1), (10, 3), (50, 1)):
        expected = n * weight / 5
        sigma = math.sqrt(n * weight / 5 * (1 - weight / 5))
        assert abs(levs.count(lev) - expected) < 4 * sigma, (lev, levs.count(lev))


def test_the_default_leverage_table_is_used_whole(tmp_path):
    out = _dataset(tmp_path / "ds")
    lines = _run(out, open_interest="500000", long_short_ratio="1", accounts=5_000)
    accounts, positions = _tables(out)
    table = tuple(lev for lev, _ in population.DEFAULT_LEVERAGE)
    assert set(_leverage_of(accounts, positions, table)) == set(table)
    assert any("no rules.margin_tiers.BTCUSDT" in line for line in lines)


def test_margin_tiers_cap_leverage_so_no_account_opens_under_maintenance(tmp_path):
    from clearing.margin import MarginTiers

    out = _dataset(tmp_path / "ds", tiers=True)
    lines = _run(out, open_interest="80000", long_short_ratio="1", accounts=400, seed=3)
    accounts, positions = _tables(out)
    tiers = MarginTiers.from_rows([[0, 400_000, 0, 125], [5_000_000_000_000, 500_000, 5_000_000_000, 100],
                                   [25_000_000_000_000, 1_000_000, 130_000_000_000, 50],
                                   [100_000_000_000_000, 2_500_000, 1_630_000_000_000, 20]])
    for (balance,), (qty, entry) in zip(accounts.select("balance").rows(),
                                        positions.select("qty", "entry_price").rows()):
        notional = entry * abs(qty) * K
        assert balance >= tiers.maintenance(notional)
        assert notional <= balance * tiers.max_leverage[tiers.tier(notional)]
    summary = next(line for line in lines if line.startswith("leverage: "))
    capped = int(re.search(r"\(([\d,]+) capped at their margin tier's max leverage\)", summary)
                 .group(1).replace(",", ""))
    assert 0 < capped < 400  # the draw exceeded some tiers' caps, not all


def test_other_files_of_the_dataset_are_kept_and_earlier_accounts_replaced(tmp_path):
    out = _dataset(tmp_path / "ds")
    _run(out, open_interest="100", long_short_ratio="1", accounts=50)
    lines = _run(out, open_interest="100", long_short_ratio="1", accounts=20)
    assert (out / "depth.parquet").read_bytes() == b"not touched by the population"
    assert load_manifest(out).name == "hand-made"
    assert _tables(out)[0].height == 20
    assert "replacing the earlier accounts.parquet and positions.parquet" in lines[-1]
    assert sorted(p.name for p in out.parent.iterdir()) == ["ds"]  # no staging folder left


def test_without_marks_before_the_time_the_first_mark_is_the_entry_price(tmp_path):
    out = _dataset(tmp_path / "ds", marks=[(START_NS + 5 * MINUTE_NS, 600_000), (START_NS + 6 * MINUTE_NS, 600_100)])
    lines = _run(out, open_interest="100", long_short_ratio="1", accounts=20)
    assert (_tables(out)[1]["entry_price"] == 600_000).all()
    assert any("the first mark (none is earlier than the time)" in line for line in lines)
    _run(out, open_interest="100", long_short_ratio="1", accounts=20, entry_price="61000.5")
    assert (_tables(out)[1]["entry_price"] == 610_005).all()


def test_apportion_and_split_are_exact():
    shares = population.apportion(1_000_003, [5, 1, 1, 7, 100])
    assert sum(shares) == 1_000_003 and shares[4] > shares[3] > shares[0] > shares[1] == shares[2]
    assert population.split(3_000, Fraction("1.8542")) == 1_949
    assert population.split(2, Fraction(1)) == 1


@pytest.mark.parametrize("make, overrides, path, needle", [
    pytest.param(lambda tmp: tmp / "empty", dict(open_interest="1", long_short_ratio="1"),
                 "empty", "dataset.toml is missing", id="a folder without dataset.toml"),
    pytest.param(None, dict(open_interest="1", long_short_ratio="1", leverage="10:2,0:1"),
                 "--leverage", "'0:1': each pair is LEVERAGE:WEIGHT", id="a zero leverage"),
    pytest.param(None, dict(open_interest="1", long_short_ratio="1", leverage="10:2,10:1"),
                 "--leverage", "leverage 10 is listed twice", id="a leverage listed twice"),
    pytest.param(None, dict(open_interest="0.01", long_short_ratio="1", accounts=100),
                 "--accounts", "open interest too small", id="more accounts than lots"),
    pytest.param(None, dict(open_interest="-5", long_short_ratio="1"),
                 "--open-interest", "must be a positive decimal", id="a negative open interest"),
    pytest.param(None, dict(open_interest="5", long_short_ratio="abc"),
                 "--long-short-ratio", "must be a positive decimal", id="a ratio that is not a number"),
    pytest.param(None, dict(open_interest="5"),
                 "--open-interest", "give --metrics FILE, or both", id="a ratio missing"),
    pytest.param(None, dict(open_interest="5", long_short_ratio="1", entry_price="65000.05"),
                 "--entry-price", "off the grid of 0.1", id="an off-grid entry price"),
    pytest.param(None, dict(open_interest="5", long_short_ratio="1", at="yesterday"),
                 "--at", "not a time", id="a time that is not a time"),
    pytest.param(None, dict(open_interest="5", long_short_ratio="1", accounts=1),
                 "--accounts", "at least 2 accounts", id="one account"),
    pytest.param(None, dict(open_interest="5", long_short_ratio="1", symbol="ETHUSDT"),
                 "--symbol", "'ETHUSDT' is not an instrument", id="an unknown symbol"),
])
def test_bad_inputs_are_named(tmp_path, make, overrides, path, needle):
    out = make(tmp_path) if make else _dataset(tmp_path / "ds")
    if make:
        out.mkdir()
    error = _fault(out, **overrides)
    assert error.path.endswith(path)
    assert any(needle in p for p in error.problems), error.problems


def test_a_metrics_file_without_the_ratio_column_is_rejected_at_row_1(tmp_path):
    out = _dataset(tmp_path / "ds")
    header = ",".join(c for c in population.METRICS_HEADER if c != "count_long_short_ratio")
    path = tmp_path / "m.csv"
    path.write_text(header + "\n2024-08-01 00:00:00,BTCUSDT,1,1,1,1,1\n")
    error = _fault(out, metrics=path)
    assert error.path == str(path)
    assert error.problems[0].startswith("row 1, column count_long_short_ratio: missing from the header")


def test_a_blank_ratio_in_the_chosen_metrics_row_names_row_and_column(tmp_path):
    out = _dataset(tmp_path / "ds")
    rows = [METRICS_ROWS[0], ("2024-08-01 00:05:00", "81300", "1.5", "1.2", "")]
    path = _metrics(tmp_path / "m.csv", rows)
    error = _fault(out, metrics=path, at="2024-08-01T00:06:00Z")
    assert error.problems == ["row 3, column count_long_short_ratio: must be a positive decimal (value: '')"]


def test_a_metrics_row_with_a_bad_time_or_missing_fields_is_a_fault(tmp_path):
    out = _dataset(tmp_path / "ds")
    path = _metrics(tmp_path / "m.csv", [("yesterday", "1", "1", "1", "1")])
    with path.open("a") as fh:
        fh.write("2024-08-01 00:05:00,BTCUSDT,1\n")
    problems = _fault(out, metrics=path).problems
    assert problems[0] == "row 2, column create_time: not a time such as 2024-08-01 00:05:00 (value: 'yesterday')"
    assert problems[1].startswith("row 3, column -: 3 fields where the header has 8")


def test_a_metrics_file_that_starts_after_the_time_says_so(tmp_path):
    out = _dataset(tmp_path / "ds")
    path = _metrics(tmp_path / "m.csv", METRICS_ROWS[1:])
    error = _fault(out, metrics=path)  # the time defaults to the dataset's start, 00:00
    assert "no row of BTCUSDT at or before 2024-08-01T00:00:00Z (its first row is at " \
           "2024-08-01T00:05:00Z): give --at" in error.problems[0]


def test_both_a_metrics_file_and_explicit_values_is_refused(tmp_path):
    out = _dataset(tmp_path / "ds")
    error = _fault(out, metrics=_metrics(tmp_path / "m.csv"), open_interest="5")
    assert error.path == "--metrics"


def test_without_marks_an_entry_price_is_required(tmp_path):
    out = _dataset(tmp_path / "ds")
    (out / "marks.parquet").unlink()
    error = _fault(out, open_interest="5", long_short_ratio="1")
    assert error.path.endswith("marks.parquet") and "give --entry-price" in error.problems[0]


def test_the_command_writes_the_population_and_exits_2_on_bad_input(tmp_path, capsys):
    out = _dataset(tmp_path / "ds")
    metrics = _metrics(tmp_path / "BTCUSDT-metrics-2024-08-01.zip")
    assert main(["generate", "population", str(out), "--metrics", str(metrics),
                 "--at", "2024-08-01T00:10:00Z", "--accounts", "300", "--seed", "4"]) == 0
    printed = capsys.readouterr().out
    assert "population of 300 accounts in BTCUSDT at 2024-08-01T00:10:00Z (seed 4)" in printed
    assert _tables(out)[1].filter(pl.col("qty") > 0)["qty"].sum() == 90_000_000
    assert main(["generate", "population", str(tmp_path / "missing"), "--open-interest", "1",
                 "--long-short-ratio", "1"]) == 2
    assert "dataset.toml is missing" in capsys.readouterr().err


def test_a_datasets_own_metrics_table_is_used_when_no_values_are_given(tmp_path):
    out = _dataset(tmp_path / "ds")
    pl.DataFrame({"ts": [START_NS - 5 * MINUTE_NS, START_NS, START_NS + 5 * MINUTE_NS],
                  "symbol": ["BTCUSDT"] * 3, "open_interest": [70_000_000, 81_234_567, 90_000_000],
                  "open_interest_value": [1, 1, 1], "count_toptrader_long_short_ratio": ["1.5"] * 3,
                  "sum_toptrader_long_short_ratio": ["1.2"] * 3, "count_long_short_ratio": ["3", "1", None],
                  "sum_taker_long_short_vol_ratio": ["1"] * 3}).write_parquet(out / "metrics.parquet")
    lines = _run(out, accounts=100)
    _, positions = _tables(out)
    assert positions.filter(pl.col("qty") > 0)["qty"].sum() == 81_234_567
    assert positions.filter(pl.col("qty") > 0).height == 50  # the 00:00 row's ratio 1
    assert any("metrics.parquet row 2 (2024-08-01T00:00:00Z), count_long_short_ratio" in line for line in lines)
    error = _fault(out, at="2024-08-01T00:05:00Z")
    assert error.problems == ["row 3, column count_long_short_ratio: must be a positive decimal (value: None)"]


@pytest.mark.parametrize("content", [pytest.param(b"PK\x03\x04 not really a zip", id="a broken zip"),
                                     pytest.param(b"\xff\xfe\x00binary", id="binary bytes")])
def test_a_metrics_file_that_is_not_a_metrics_csv_is_named_not_a_traceback(tmp_path, content):
    out = _dataset(tmp_path / "ds")
    path = tmp_path / "m.zip"
    path.write_bytes(content)
    error = _fault(out, metrics=path)
    assert error.path == str(path)
    assert "missing from the header" in error.problems[0] or "unreadable" in error.problems[0]
