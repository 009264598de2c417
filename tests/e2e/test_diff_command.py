"""`backtest diff`: one dataset under two rule sets, and the refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from backtest.cli import main
from backtest.diff import fund_gap


@pytest.fixture(scope="module")
def day(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("diff") / "day"
    assert main(["generate", "crash-day", str(out), "--n", "60000", "--accounts", "600", "--seed", "2"]) == 0
    return out


@pytest.fixture(scope="module")
def default_run(day, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "default"
    assert main(["run", str(day), "--out", str(out)]) == 0
    return out


def _diff(capsys, *args: str) -> dict:
    capsys.readouterr()
    assert main(["diff", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_a_run_against_its_own_rerun_differs_in_nothing(day, default_run, tmp_path, capsys):
    again = tmp_path / "again"
    assert main(["run", str(day), "--out", str(again)]) == 0
    diff = _diff(capsys, str(default_run), str(again), "--out", str(tmp_path / "d.html"))
    assert diff["same_dataset"]
    assert all(f["a"] == f["b"] for f in diff["figures"])
    assert all(f["delta"] in (0, None) for f in diff["figures"])
    assert all(t["same"] for t in diff["tables"]) and len(diff["tables"]) >= 13
    assert diff["rules"] == []
    assert diff["liquidated"]["only_a"] == diff["liquidated"]["only_b"] == []
    assert diff["fund"]["max_abs_gap"] == 0


def test_a_bigger_fund_shows_as_a_fund_path_gap_and_a_rule_key(day, default_run, tmp_path, capsys):
    rules = tmp_path / "fund.toml"
    rules.write_text("insurance_fund = { opening = 9_000_000_000_000 }\n")
    bigger = tmp_path / "bigger"
    assert main(["run", str(day), "--out", str(bigger), "--rules", str(rules)]) == 0
    diff = _diff(capsys, str(default_run), str(bigger), "--out", str(tmp_path / "d.html"))
    assert [r["key"] for r in diff["rules"]] == ["rules.insurance_fund.opening"]
    assert diff["rules"][0]["b"] == 9_000_000_000_000
    figures = {f["figure"]: f for f in diff["figures"]}
    a_close, b_close = figures["fund close"]["a"], figures["fund close"]["b"]
    assert figures["fund close"]["delta"] == b_close - a_close
    # Every figure's delta is B - A where both are integers.
    for f in diff["figures"]:
        if f["delta"] is not None:
            assert f["delta"] == f["b"] - f["a"], f
    # The fund paths start 40,000 USDT apart; the largest gap is at least that.
    assert diff["fund"]["max_abs_gap"] >= 4_000_000_000_000
    changed = {t["table"] for t in diff["tables"] if not t["same"]}
    assert "insurance_fund" in changed


def test_runs_of_different_datasets_are_refused_unless_forced(day, default_run, tmp_path, capsys):
    other = tmp_path / "other"
    assert main(["generate", "crash-day", str(other), "--n", "20000", "--accounts", "200", "--seed", "9"]) == 0
    other_run = tmp_path / "other-run"
    assert main(["run", str(other), "--out", str(other_run)]) == 0
    capsys.readouterr()
    page = tmp_path / "refused.html"
    assert main(["diff", str(default_run), str(other_run), "--out", str(page)]) == 2
    err = capsys.readouterr().err
    assert "runs of different datasets" in err and "--force" in err
    assert not page.exists()
    forced = _diff(capsys, str(default_run), str(other_run), "--out", str(page), "--force")
    assert not forced["same_dataset"]
    assert "different datasets" in page.read_text()


def test_a_folder_that_is_not_a_run_is_named(default_run, tmp_path, capsys):
    assert main(["diff", str(default_run), str(tmp_path), "--out", str(tmp_path / "d.html")]) == 2
    assert "summary.json is missing" in capsys.readouterr().err


def test_the_fund_gap_compares_both_paths_at_every_change_of_either():
    a = pl.DataFrame({"ts": [10, 30], "balance": [90, 50]})
    b = pl.DataFrame({"ts": [20], "balance": [120]})
    # Grid 10, 20, 30: A 90, 90, 50; B 100 (opening), 120, 120: gaps 10, 30, 70.
    assert fund_gap(a, b, 100, 100) == {"max_abs_gap": 70, "at_ts": 30, "gap": 70}
    assert fund_gap(a.clear(), b.clear(), 100, 130) == {"max_abs_gap": 30, "at_ts": None, "gap": 30}
    # Paths that end level still differ by their openings until the first change.
    level = pl.DataFrame({"ts": [10], "balance": [150]})
    assert fund_gap(level, level, 100, 1_000) == {"max_abs_gap": 900, "at_ts": None, "gap": 900}


def test_a_run_of_an_older_version_is_named_not_diffed(default_run, tmp_path, capsys):
    old = tmp_path / "old"
    shutil.copytree(default_run, old)
    summary = json.loads((old / "summary.json").read_text())
    del summary["dataset_sha256"]
    (old / "summary.json").write_text(json.dumps(summary))
    (old / "adl.parquet").unlink()
    assert main(["diff", str(default_run), str(old), "--out", str(tmp_path / "d.html")]) == 2
    err = capsys.readouterr().err
    assert "an older version" in err and "adl.parquet" in err and "dataset_sha256" in err


def test_funds_in_different_assets_get_no_gap_and_no_fund_deltas(default_run, tmp_path, capsys):
    other = tmp_path / "usdc"
    shutil.copytree(default_run, other)
    summary = json.loads((other / "summary.json").read_text())
    summary["liquidation"]["fund_asset"] = "USDC"
    (other / "summary.json").write_text(json.dumps(summary))
    fund = pl.read_parquet(other / "insurance_fund.parquet").with_columns(pl.lit("USDC").alias("asset"))
    fund.write_parquet(other / "insurance_fund.parquet")
    diff = _diff(capsys, str(default_run), str(other), "--out", str(tmp_path / "d.html"))
    assert diff["fund"]["gap"] is None and "different assets" in diff["fund"]["note"]
    figures = {f["figure"]: f for f in diff["figures"]}
    assert figures["fund close"]["delta"] is None and figures["fund low"]["delta"] is None
    assert "A USDT, B USDC" in (tmp_path / "d.html").read_text()
