"""`backtest sweep`: 2 datasets x 3 rule sets, serially, on the process pool and on a local Ray
head started by the test itself, giving byte-identical sweep.parquet; resume after a crash;
a failed run reported without stopping the others; bad input refused before anything runs.

The Ray case is skipped only when ray is not importable and BACKTEST_REQUIRE_RAY is not "1"
(CI sets it after installing the `ray` extra, so there a missing ray is a failure).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import pytest

from backtest.cli import main

ROOT = Path(__file__).resolve().parents[2]
RULES = ["dataset", str(ROOT / "examples" / "strict.toml"), str(ROOT / "examples" / "ioc.toml")]
REQUIRE_RAY = os.environ.get("BACKTEST_REQUIRE_RAY") == "1"

try:
    import ray  # noqa: F401
    HAVE_RAY = True
except ImportError:
    if REQUIRE_RAY:
        raise RuntimeError("ray is not importable but BACKTEST_REQUIRE_RAY=1 (install the `ray` extra)") from None
    HAVE_RAY = False


@pytest.fixture(scope="module")
def days(tmp_path_factory) -> list[Path]:
    """Two tiny crash days (seeds 1 and 2)."""
    base = tmp_path_factory.mktemp("sweep-data")
    out = []
    for seed in (1, 2):
        day = base / f"day{seed}"
        assert main(["generate", "crash-day", str(day), "--n", "20000", "--accounts", "200",
                     "--seed", str(seed)]) == 0
        out.append(day)
    return out


def sweep(days: list[Path], out: Path, *extra: str, rules: list[str] = RULES) -> int:
    return main(["sweep", *map(str, days), "--rules", *rules, "--out", str(out), *extra])


@pytest.fixture(scope="module")
def serial(days, tmp_path_factory) -> Path:
    """The reference sweep, run serially in this process."""
    out = tmp_path_factory.mktemp("sweep-serial")
    assert sweep(days, out, "--jobs", "1") == 0
    return out


def test_a_sweep_writes_one_ok_row_per_dataset_and_rule_set_in_sorted_order(serial):
    table = pl.read_parquet(serial / "sweep.parquet")
    assert table.select("dataset", "rules").rows() == [
        (d, r) for d in ("day1", "day2") for r in ("dataset", "ioc", "strict")]
    assert table["status"].to_list() == ["ok"] * 6
    assert table["error"].null_count() == 6
    assert table["conservation_gap"].to_list() == [0] * 6
    assert (table["liquidations"] > 0).all() and (table["fills"] > 0).all()
    for run in table["run"]:
        summary = json.loads((serial / run / "summary.json").read_text())
        row = table.filter(pl.col("run") == run).row(0, named=True)
        assert row["fund_low"] == summary["liquidation"]["fund_low"]
        assert row["adl_notional"] == summary["liquidation"]["adl_notional"]
        assert row["fees"] == summary["fees_collected"]["USDT"]
    assert json.loads((serial / "failures.json").read_text()) == []


def test_each_rule_file_is_applied_to_its_own_runs(serial):
    table = pl.read_parquet(serial / "sweep.parquet")
    for day in ("day1", "day2"):
        rows = {r["rules"]: r for r in table.filter(pl.col("dataset") == day).iter_rows(named=True)}
        assert len({r["outputs_sha256"] for r in rows.values()}) == 3
        assert "ioc_at_bankruptcy" in (serial / rows["ioc"]["run"] / "rules.toml").read_text()
        assert "max_leverage" in (serial / rows["strict"]["run"] / "rules.toml").read_text()


def test_the_own_rules_run_is_the_same_replay_as_backtest_run_without_rules(days, serial, tmp_path):
    plain = tmp_path / "plain"
    assert main(["run", str(days[0]), "--out", str(plain)]) == 0
    swept = json.loads((serial / "runs" / "day1" / "dataset" / "summary.json").read_text())
    assert json.loads((plain / "summary.json").read_text())["tables"] == swept["tables"]


def test_the_pool_gives_the_same_parquet_and_page_bytes_as_the_serial_sweep(days, serial, tmp_path):
    out = tmp_path / "pool"
    assert sweep(days, out, "--jobs", "2") == 0
    assert (out / "sweep.parquet").read_bytes() == (serial / "sweep.parquet").read_bytes()
    assert (out / "sweep.html").read_bytes() == (serial / "sweep.html").read_bytes()


def test_the_page_has_a_row_and_a_bar_per_run_and_a_chart_per_key_figure(serial):
    page = (serial / "sweep.html").read_text()
    assert page.count("<tr>") == 1 + 6
    for figure in ("liquidations", "fund_low", "fund_close", "adl_notional", "fees", "worst_slippage_bps"):
        assert f'data-plot="{figure}"' in page
    assert page.count("<title>day1/strict:") == 10  # one bar in each chart
    assert "<script" not in page and "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_a_rerun_skips_complete_runs_and_a_crashed_run_is_redone(days, serial, tmp_path, capsys):
    out = tmp_path / "resume"
    shutil.copytree(serial, out)
    before = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/*/summary.json")}
    # A crash mid-run leaves no run folder, only a hidden staging folder.
    shutil.rmtree(out / "runs" / "day2" / "ioc")
    (out / "runs" / "day2" / ".ioc.partial-999999").mkdir()
    capsys.readouterr()
    assert sweep(days, out, "--jobs", "1") == 0
    assert "1 replayed, 5 skipped" in capsys.readouterr().out
    after = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/*/summary.json")}
    redone = [p for p in after if before.get(p) != after[p]]
    assert [p.relative_to(out).as_posix() for p in redone] == ["runs/day2/ioc/summary.json"]
    assert (out / "sweep.parquet").read_bytes() == (serial / "sweep.parquet").read_bytes()


def test_a_run_whose_rules_changed_since_is_not_taken_as_complete(days, serial, tmp_path, capsys):
    out = tmp_path / "changed"
    shutil.copytree(serial / "runs" / "day1", out / "runs" / "day1")
    rules = tmp_path / "strict.toml"
    rules.write_text((ROOT / "examples" / "strict.toml").read_text())
    capsys.readouterr()
    assert sweep(days[:1], out, "--jobs", "1", rules=[str(rules)]) == 0
    assert "0 replayed, 1 skipped" in capsys.readouterr().out
    rules.write_text("liquidation = { band = 3_000_000 }\n")
    assert sweep(days[:1], out, "--jobs", "1", rules=[str(rules)]) == 0
    assert "1 replayed, 0 skipped" in capsys.readouterr().out
    assert "band = 3000000" in (out / "runs" / "day1" / "strict" / "rules.toml").read_text().replace("_", "")


def test_a_failed_run_is_reported_and_does_not_stop_the_others(days, tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('stp = "sideways"\n')
    out = tmp_path / "failing"
    assert sweep(days[:1], out, "--jobs", "2", rules=[str(bad), "dataset"]) == 1
    printed = capsys.readouterr()
    assert "1 replayed, 0 skipped (already complete), 1 failed" in printed.out
    assert "runs/day1/bad" in printed.err
    failures = json.loads((out / "failures.json").read_text())
    assert [(f["run"], "stp: unknown value 'sideways'" in f["error"]) for f in failures] == [("runs/day1/bad", True)]
    table = pl.read_parquet(out / "sweep.parquet")
    assert table.select("rules", "status").rows() == [("bad", "failed"), ("dataset", "ok")]
    assert table.filter(pl.col("status") == "failed")["fills"].to_list() == [None]
    assert not (out / "runs" / "day1" / "bad").exists()
    assert (out / "runs" / "day1" / "dataset" / "summary.json").is_file()


@pytest.mark.parametrize("args, message", [
    pytest.param(["{missing}", "--jobs", "1"], "dataset.toml", id="a dataset folder without dataset.toml"),
    pytest.param(["{day}", "--jobs", "0"], "--jobs: 0", id="no workers"),
    pytest.param(["{day}", "--rules", "{missing}/r.toml"], "file not found", id="a missing rule file"),
    pytest.param(["{day}", "--rules", "{root}/examples/strict.toml", "{other}/strict.toml"],
                 "two rule sets named 'strict'", id="two rule files with one stem"),
    pytest.param(["{day}", "--rules", "{other}/dataset.toml"], "may not be named dataset.toml",
                 id="a rule file named like the dataset's own rules"),
    pytest.param(["{day}", "{copy}/day1"], "two datasets named 'day1'", id="two datasets with one folder name"),
])
def test_bad_input_exits_2_before_any_run_starts(days, tmp_path, capsys, args, message):
    other = tmp_path / "other"
    other.mkdir()
    (other / "strict.toml").write_text("liquidation = { band = 3_000_000 }\n")
    (other / "dataset.toml").write_text("liquidation = { band = 3_000_000 }\n")
    shutil.copytree(days[0], tmp_path / "copy" / "day1")
    names = dict(day=days[0], missing=tmp_path / "nothing", root=ROOT, other=other, copy=tmp_path / "copy")
    out = tmp_path / "out"
    assert main(["sweep", *(a.format(**names) for a in args), "--out", str(out)]) == 2
    assert message in capsys.readouterr().err.replace("\n", " ")
    assert not (out / "runs").exists()


def test_ray_that_is_not_installed_is_bad_input_naming_the_pin(days, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    assert sweep(days[:1], tmp_path / "out", "--ray", "127.0.0.1:6379") == 2
    assert "ray is not installed: pip install 'ray==" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_ray_address_where_nothing_listens_fails_fast_as_bad_input(days, tmp_path, capsys):
    if not HAVE_RAY:
        pytest.skip("ray is not installed (the `ray` extra)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free once closed: nothing listens there
    started = time.monotonic()
    assert sweep(days[:1], tmp_path / "out", "--ray", f"127.0.0.1:{port}") == 2
    assert time.monotonic() - started < 20
    assert "no Ray head answers at 127.0.0.1:" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.fixture()
def ray_head(tmp_path):
    """A Ray head on 127.0.0.1 in its own session, stopped (the whole session) afterwards."""
    if not HAVE_RAY:
        pytest.skip("ray is not installed (the `ray` extra); CI sets BACKTEST_REQUIRE_RAY=1")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    temp = Path(tempfile.mkdtemp(prefix="bt-ray-", dir="/tmp"))  # socket paths must stay short
    log = tmp_path / "ray-head.log"
    ray_cli = Path(sys.executable).with_name("ray")
    with log.open("w") as fh:
        head = subprocess.Popen(
            [str(ray_cli), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
             "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats",
             "--object-store-memory=100000000", f"--temp-dir={temp}"],
            stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while "Ray runtime started" not in log.read_text():
            assert head.poll() is None, f"ray start exited: {log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"ray start timed out: {log.read_text()[-2000:]}"
            time.sleep(0.2)
        yield f"127.0.0.1:{port}", temp
    finally:
        head.terminate()  # `ray start --block` stops the processes it started on SIGTERM
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(head.pid, signal.SIGKILL)  # anything of that session still alive
        except ProcessLookupError:
            pass
        head.wait()
        shutil.rmtree(temp, ignore_errors=True)


def test_a_sweep_on_a_local_ray_head_gives_the_serial_sweeps_parquet_bytes(days, serial, ray_head, tmp_path):
    address, temp = ray_head
    out = tmp_path / "ray"
    assert sweep(days, out, "--ray", address) == 0
    # The replays ran in the head's worker processes, not here.
    assert list((temp / "session_latest" / "logs").glob("python-core-worker-*"))
    assert (out / "sweep.parquet").read_bytes() == (serial / "sweep.parquet").read_bytes()
    assert (out / "sweep.html").read_bytes() == (serial / "sweep.html").read_bytes()
    assert pl.read_parquet(out / "sweep.parquet")["status"].to_list() == ["ok"] * 6
