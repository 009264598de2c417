"""The 2025-10-10 crash day, replayed as examples/crash-2025-10-10/run.sh does it: Binance's
bookDepth bands rebuilt into a coarse book (the `market`'s liquidity), marks from the
mark-price klines, 10,000 accounts holding a stated 80,000 BTC of open interest, the rules
of examples/crash-2025-10-10/rules.toml (a 10M USDT fund). The figures below are what that
replay gives; they move only when a rule of the book model or of clearing changes, and a
change should say why.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import polars as pl
import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = Path("/work/shared/data/binance-futures-crash-2025-10-10")
USDT = 10**8

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not SRC.is_dir(), reason="shared data not present")]


def utc(text: str) -> int:
    return int(pl.Series([text]).str.to_datetime(time_unit="ns").dt.epoch("ns")[0])


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("crash-2025-10-10")
    done = subprocess.run([str(ROOT / "examples/crash-2025-10-10/run.sh"), str(SRC), str(work)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return work / "run"


def test_the_cascade_comes_at_the_crash(run):
    liquidations = pl.read_parquet(run / "liquidations.parquet")
    assert liquidations.height == 3_755
    # The largest 5-minute burst of takeovers opens at 21:10 UTC, as the mark falls from
    # about 114,000 towards the day's low of 101,877.7 (the 21:20 bar).
    bursts = (liquidations.group_by((pl.col("ts") // (300 * 10**9)) * 300 * 10**9)
              .agg(pl.len().alias("n")).sort("n", descending=True))
    assert bursts.row(0) == (utc("2025-10-10 21:10:00"), 1_278)


def test_liquidation_fills_walk_the_rebuilt_book(run):
    fills = pl.read_parquet(run / "fills.parquet")
    window = fills.filter((pl.col("kind") == "liquidation")
                          & pl.col("ts").is_between(utc("2025-10-10 21:10:00"), utc("2025-10-10 21:30:00"),
                                                    closed="left"))
    # Every one against the recorded liquidity (nobody else rests in a market-data replay
    # without orders), 345 fills over 2,693.629 BTC, from 114,510.0 down to 106,404.8.
    assert window["maker_account"].unique().to_list() == ["market"]
    assert (window.height, window["qty"].sum(), window["price"].max(), window["price"].min()) == \
        (345, 2_693_629, 1_145_100, 1_064_048)


def test_the_fund_runs_out_and_adl_takes_the_rest(run):
    summary = json.loads((run / "summary.json").read_text())
    figures = summary["liquidation"]
    assert figures["fund_opening"] == 10_000_000 * USDT
    # The fund is spent at 21:16:40 (0.07 USDT left); what the book cannot take at a price
    # the fund can pay is deleveraged: 2,939 ADL fills, 2.24B USDT of notional, 931 in the
    # 19:20 burst and 2,008 from 21:15.
    assert figures["fund_low_ts"] == utc("2025-10-10 21:16:40")
    assert figures["fund_low"] == figures["fund_close"] == 7_297_280
    assert (figures["adl_count"], figures["adl_notional"]) == (2_939, 224_236_099_090_872_000)
    adl = pl.read_parquet(run / "adl.parquet")
    by_burst = adl.group_by(pl.col("ts") >= utc("2025-10-10 21:00:00")).len().sort("ts").rows()
    assert by_burst == [(False, 931), (True, 2_008)]
    assert summary["replay"] == "market_data"
    conservation = summary["conservation"]["USDT"]
    assert conservation["gap_at_last_marks"] == conservation["gap_entry_cost"] == 0
