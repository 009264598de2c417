"""The default synthetic crash day (`backtest generate crash-day`, seed 1) replayed with the
default rules: leveraged longs are liquidated in a cascade into the thinning book, the
insurance fund absorbs what it can and ADL takes the rest. The headline figures are pinned,
so a change of behaviour shows up here as a diff to explain, not as silent drift."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from backtest.cli import main

pytestmark = pytest.mark.slow

# `backtest run` of `backtest generate crash-day OUT` (4 hours, 1,000,000 instructions,
# 2,000 accounts, seed 1). Update only with a reason in the commit message.
PINNED = {
    "count": 775,  # liquidations (parcels): the leveraged longs, as the mark falls 25%
    "accounts": 774,
    "bankruptcy_notional": 3_655_784_469_893_190,  # 36.6M USDT taken over
    "worst_slippage": 180_298_768_069,  # 1,803 USDT worse than bankruptcy on one parcel
    "fund_opening": 5_000_000_000_000,  # 50,000 USDT
    "fund_low": 0,  # the floor, reached during the sell-off
    "fund_low_ts": 1_700_006_400_000_000_000,  # 1 h 46 min 40 s in: 11 minutes into the sell-off
    "fund_close": 74_427_862_286,  # 744.3 USDT
    "adl_count": 886,
    "adl_notional": 2_659_701_117_229_686,  # 26.6M USDT deleveraged
}


@pytest.fixture(scope="module")
def crash_run(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("crash")
    assert main(["generate", "crash-day", str(root / "day")]) == 0
    assert main(["run", str(root / "day"), "--out", str(root / "run")]) == 0
    return root / "day", root / "run"


def test_the_headline_figures_are_pinned(crash_run):
    _, run = crash_run
    summary = json.loads((run / "summary.json").read_text())
    figures = summary["liquidation"]
    assert {k: figures[k] for k in PINNED} == PINNED
    for asset in summary["conservation"].values():
        assert asset["gap_at_last_marks"] == 0 and asset["gap_entry_cost"] == 0


def test_liquidations_cascade_over_many_marks_and_adl_hits_profitable_shorts(crash_run):
    day, run = crash_run
    liquidations = pl.read_parquet(run / "liquidations.parquet")
    # The thinnest accounts (up to 200x, entries up to 500 ticks from the first mark) go
    # at the first mark, on both sides; then the sell-off liquidates only longs, at many
    # mark updates as the price falls: a cascade, nearly all of it longs (a few accounts
    # that traded into thin shorts go too).
    falling = liquidations.filter(pl.col("mark_price") < 299_000)
    assert falling.height >= 400 and (falling["qty"] > 0).mean() > 0.9
    assert falling["ts"].n_unique() >= 5
    adl = pl.read_parquet(run / "adl.parquet").with_columns(pl.col("account").cast(pl.String))
    opening = pl.read_parquet(day / "positions.parquet")
    shorts = set(opening.filter(pl.col("qty") < 0)["account"])
    # ADL reaches the shorts: mostly the opening shorts, plus accounts that sold into the
    # crash; ranks are exact fractions, best first within each ADL.
    hit = set(adl["account"]) - {"insurance_fund"}
    assert len(hit & shorts) > 0.8 * len(hit)
    assert (adl["qty"] > 0).all()
    for _, rows in adl.filter(pl.col("rank_value").is_not_null()).sort("seq").group_by("liquidation_id"):
        values = rows["rank_value"].to_list()
        assert values == sorted(values, reverse=True)
    fund = pl.read_parquet(run / "insurance_fund.parquet")
    assert fund["balance"].min() >= 0  # the floor held through the cascade
    # No liquidated account ends below zero.
    final = pl.read_parquet(run / "accounts_final.parquet")
    liquidated = set(liquidations["account"])
    assert (final.filter(pl.col("account").is_in(list(liquidated)))["balance"] >= 0).all()


def test_the_strict_rules_keep_the_fund_whole_on_the_demo_day(crash_run, tmp_path, capsys):
    """`make demo`'s diff: examples/strict.toml (twice the maintenance rates, 20x, a 2% band,
    a takeover cap) liquidates earlier, with margin left, so the fund gains where the
    default rules drain it to its floor; the cap sends more to ADL. Pinned direction."""
    day, run = crash_run
    strict = Path(__file__).resolve().parents[2] / "examples" / "strict.toml"
    assert main(["run", str(day), "--out", str(tmp_path / "strict"), "--rules", str(strict)]) == 0
    capsys.readouterr()
    assert main(["diff", str(run), str(tmp_path / "strict"), "--out", str(tmp_path / "diff.html"),
                 "--json"]) == 0
    diff = json.loads(capsys.readouterr().out)
    figures = {f["figure"]: f for f in diff["figures"]}
    assert diff["same_dataset"]
    assert figures["fund low"]["b"] == PINNED["fund_opening"] > figures["fund low"]["a"] == PINNED["fund_low"]
    assert figures["fund close"]["delta"] > 0
    assert figures["worst slippage (minor units)"]["delta"] < 0  # a 2% band, not 5%
    assert figures["ADL notional"]["delta"] > 0
    assert diff["fund"]["gap"] > 0
    assert diff["liquidated"]["only_a"] and diff["liquidated"]["only_b"]  # different accounts, too
    assert {r["key"] for r in diff["rules"]} == {
        "rules.insurance_fund.max_takeover", "rules.liquidation.band", "rules.margin_tiers.BTCUSDT",
        "rules.max_leverage.BTCUSDT"}
    assert (tmp_path / "diff.html").is_file()
