"""`backtest run` end to end: a generated dataset with thousands of accounts, every one
holding a position, replayed with clearing; money is checked from the output files alone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from backtest.cli import main

RUN_TABLES = ["accounts_final", "adl", "book_depth", "book_final", "fills", "funding", "insurance_fund", "interest", "ledger",
              "liquidations", "margin_calls", "order_events", "positions_final", "repayments", "transfer_events"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "clearing-100k"
    assert main(["generate", "orders", str(out), "--clearing", "--n", "100000",
                 "--accounts", "3000", "--seed", "5"]) == 0
    return out


@pytest.fixture(scope="module")
def run(dataset, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "run"
    assert main(["run", str(dataset), "--out", str(out)]) == 0
    return out


def _read(run: Path, name: str) -> pl.DataFrame:
    frame = pl.read_parquet(run / f"{name}.parquet")
    return frame.with_columns(pl.col(c).cast(pl.String) for c, t in frame.schema.items()
                              if t == pl.Categorical)


def test_ledger_sums_are_final_minus_opening_balances(run):
    ledger = _read(run, "ledger").group_by("account", "asset").agg(pl.col("amount").sum())
    final = _read(run, "accounts_final")
    joined = final.join(ledger, on=["account", "asset"], how="full", coalesce=True).fill_null(0)
    assert joined.height == final.height  # no ledger account missing from accounts_final
    bad = joined.filter(pl.col("balance") - pl.col("opening_balance") != pl.col("amount"))
    assert bad.is_empty(), bad
    assert final["account"].n_unique() >= 3000


def test_conservation_identity_at_the_last_mark_from_files_alone(run, dataset):
    k = 10_000  # BTCUSDT: 0.1 x 0.001 / 1e-8
    mark = pl.read_parquet(dataset / "marks.parquet")["mark_price"][-1]
    final = _read(run, "accounts_final")
    positions = _read(run, "positions_final")
    opening_positions = pl.read_parquet(dataset / "positions.parquet")
    transfers = _read(run, "transfer_events").filter(pl.col("status") == "applied")

    def unrealised(qty: pl.Series, cost: pl.Series) -> int:
        return sum(q * mark * k - c if q > 0 else c - abs(q) * mark * k for q, c in zip(qty, cost))

    opening_cost = [abs(q) * p * k for q, p in zip(opening_positions["qty"], opening_positions["entry_price"])]
    deposits = transfers.filter(pl.col("kind") == "deposit")["amount"].sum()
    withdrawals = transfers.filter(pl.col("kind") == "withdraw")["amount"].sum()
    left = final["balance"].sum() + unrealised(positions["qty"], positions["entry_cost"])
    right = (final["opening_balance"].sum() + unrealised(opening_positions["qty"], pl.Series(opening_cost))
             + deposits - withdrawals)
    assert left == right
    assert positions["qty"].sum() == 0  # positions net to zero per symbol (one symbol here)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["conservation"]["USDT"]["gap_at_last_marks"] == 0
    assert summary["conservation"]["USDT"]["gap_entry_cost"] == 0
    assert summary["conservation"]["USDT"]["deposits"] == deposits > 0
    assert summary["conservation"]["USDT"]["withdrawals"] == withdrawals > 0


def test_fees_funding_and_references_tie_out(run):
    fills = _read(run, "fills")
    ledger = _read(run, "ledger")
    fees_balance = ledger.filter(pl.col("account") == "fees")["amount"].sum()
    assert fees_balance == fills["taker_fee"].sum() + fills["maker_fee"].sum() > 0
    assert (fills["maker_fee"] < 0).any()  # fee tier 2 has a maker rebate
    assert set(fills["kind"]) <= {"trade", "liquidation", "takeover", "adl"}
    # Every fill's ledger entries name it; the fee entries equal the fill's fees.
    fee_entries = (ledger.filter((pl.col("kind") == "fee") & (pl.col("account") != "fees"))
                   .with_columns(pl.col("reference").str.strip_prefix("fill:").cast(pl.Int64).alias("seq"))
                   .group_by("seq").agg(pl.col("amount").sum()))
    joined = fee_entries.join(fills.select("seq", "taker_fee", "maker_fee"), on="seq", how="left")
    assert joined["taker_fee"].null_count() == 0
    assert (joined["amount"] == -(joined["taker_fee"] + joined["maker_fee"])).all()
    funding = _read(run, "funding")
    assert set(funding["source"]) == {"table", "premium_index"}
    per_time = funding.group_by("ts", "symbol").agg(pl.col("amount").sum(), pl.len())
    assert (per_time["amount"] == 0).all()  # the residue row makes each payment exact
    assert (per_time["len"] > 2_500).all()  # nearly every account holds a position, plus rounding
    assert (funding.filter(pl.col("account") == "rounding")["amount"] >= 0).all()


def test_sequence_numbers_are_one_counter_across_every_table(run):
    summary = json.loads((run / "summary.json").read_text())
    seqs = []
    for name in ("fills", "order_events", "ledger", "funding", "margin_calls", "transfer_events",
                 "adl", "insurance_fund"):
        seqs += _read(run, name)["seq"].to_list()
        assert summary["tables"][name]["rows"] == pl.read_parquet(run / f"{name}.parquet").height
    assert sorted(seqs) == list(range(1, len(seqs) + 1))


def test_margin_calls_and_pretrade_rejects_happen_with_their_figures(run):
    calls = _read(run, "margin_calls")
    assert calls.height > 0
    assert (calls["equity"] <= calls["maintenance_margin"]).all()
    assert set(calls["trigger"]) <= {"mark", "fill", "funding", "transfer"}
    summary = json.loads((run / "summary.json").read_text())
    assert summary["reasons"]["rejected:insufficient_margin"] > 0
    transfers = _read(run, "transfer_events")
    assert {"insufficient_balance", "insufficient_margin"} <= set(transfers["reason"].drop_nulls())


def test_two_runs_are_byte_identical(dataset, run, tmp_path):
    again = tmp_path / "again"
    assert main(["run", str(dataset), "--out", str(again)]) == 0
    names = sorted(p.name for p in run.iterdir())
    assert names == sorted([f"{t}.parquet" for t in RUN_TABLES] + ["report.html", "rules.toml", "summary.json"])
    for name in names:
        assert (run / name).read_bytes() == (again / name).read_bytes(), name


@pytest.mark.parametrize("table, frame, message", [
    ("accounts", pl.DataFrame({"account": ["a"], "asset": ["USDT"], "balance": [1],
                               "margin_mode": ["portfolio"], "fee_tier": [0]}),
     "row 1, column margin_mode: unknown value"),
    ("accounts", pl.DataFrame({"account": ["a", "a"], "asset": ["USDT", "USDT"], "balance": [1, -2]}),
     "row 2, column balance: must be >= 0"),
    ("positions", pl.DataFrame({"account": ["a"], "symbol": ["BTCUSDT"], "qty": [5], "entry_price": [1]}),
     "do not net to zero"),
    ("marks", pl.DataFrame({"ts": [2, 1], "symbol": ["BTCUSDT", "ETHUSDT"], "mark_price": [1, 1]}),
     "row 2, column ts: goes backwards"),
    ("transfers", pl.DataFrame({"ts": [1], "seq": [1], "account": ["a"], "kind": ["gift"],
                                "asset": ["USDT"], "amount": [5]}),
     "row 1, column kind: unknown value"),
])
def test_bad_tables_exit_2_naming_file_row_and_column(dataset, tmp_path, capsys, table, frame, message):
    broken = tmp_path / "broken"
    shutil.copytree(dataset, broken)
    frame.write_parquet(broken / f"{table}.parquet")
    assert main(["run", str(broken), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert f"{table}.parquet" in err and message in err, err
    assert not (tmp_path / "run").exists()


def test_missing_margin_tiers_exit_2_naming_the_key(dataset, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(dataset, broken)
    toml = (broken / "dataset.toml").read_text()
    (broken / "dataset.toml").write_text(toml.replace("margin_tiers.BTCUSDT", "margin_tiers.ETHUSDT"))
    assert main(["run", str(broken), "--out", str(tmp_path / "run")]) == 2
    assert "rules.margin_tiers.BTCUSDT: missing" in capsys.readouterr().err


def test_bench_json_reports_the_run_against_the_matcher(dataset, capsys):
    assert main(["bench", "--dataset", str(dataset), "--json", "--rounds", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["messages"] == 100_000
    assert result["replay_events_per_s"] > 0
    ratio = result["replay_events_per_s"] / result["matcher_msgs_per_s"]
    assert abs(result["replay_to_matcher"] - ratio) <= 0.001
    # The loop alone (nothing read or written inside the clock) is faster than the whole
    # run, and slower than the matcher it contains.
    assert result["replay_events_per_s"] < result["replay_loop_msgs_per_s"] < result["matcher_msgs_per_s"]
    loop_ratio = result["replay_loop_msgs_per_s"] / result["matcher_msgs_per_s"]
    assert abs(result["replay_loop_to_matcher"] - loop_ratio) <= 0.001
    # Where the end-to-end time went: every stage lapped, and the stages are the whole run.
    stages = result["replay_stages_s"]
    assert set(stages) == {"check", "read", "replay", "write", "finish"}  # (--json sorts keys)
    assert all(seconds > 0 for seconds in stages.values())
    assert abs(result["messages"] / sum(stages.values()) / result["replay_events_per_s"] - 1) < 0.01
    assert set(result["match_pipeline_stages_s"]) == {"check", "read", "match", "write", "finish"}


def test_a_small_crash_day_gives_the_same_bytes_with_and_without_the_adl_rank_cache(tmp_path):
    from backtest.run import run_replay

    day = tmp_path / "crash"
    assert main(["generate", "crash-day", str(day), "--n", "150000", "--accounts", "1500",
                 "--seed", "3"]) == 0
    cached = run_replay(day, tmp_path / "cached")
    plain = run_replay(day, tmp_path / "plain", adl_cache=False)
    assert cached["liquidation"]["adl_count"] > 20  # the cache had work to do
    assert cached == plain  # every table's content hash included


def test_a_rule_file_overrides_keys_and_the_run_records_the_rules_it_used(dataset, run, tmp_path):
    import tomllib

    override = tmp_path / "ioc.toml"
    override.write_text('liquidation = { execution = "ioc_at_bankruptcy" }\n'
                        'insurance_fund = { opening = 1_000_000_000 }\n')
    out = tmp_path / "ioc"
    assert main(["run", str(dataset), "--out", str(out), "--rules", str(override)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rules"]["execution"] == "ioc_at_bankruptcy"
    assert summary["liquidation"]["fund_opening"] == 1_000_000_000
    used = tomllib.loads((out / "rules.toml").read_text())["rules"]
    assert used["liquidation"]["execution"] == "ioc_at_bankruptcy"
    assert used["margin_tiers"] == tomllib.loads((dataset / "dataset.toml").read_text())["rules"]["margin_tiers"]
    # The recorded rules reproduce the run byte for byte.
    again = tmp_path / "again"
    assert main(["run", str(dataset), "--out", str(again), "--rules", str(out / "rules.toml")]) == 0
    for name in sorted(p.name for p in out.iterdir()):
        assert (out / name).read_bytes() == (again / name).read_bytes(), name
    # Without a rule file the run records the manifest's rules as they are.
    assert tomllib.loads((run / "rules.toml").read_text())["rules"] == \
        tomllib.loads((dataset / "dataset.toml").read_text())["rules"]


@pytest.mark.parametrize("text, message", [
    ("liquidation = { execution = \"fast\" }\n", "rules.liquidation.execution: 'fast'"),
    ("liquidaton = { execution = \"sweep\" }\n", "liquidaton: unknown key"),
    ("insurance_fund = { floor = \"0\" }\n", "rules.insurance_fund.floor: must be an integer"),
])
def test_a_bad_rule_file_exits_2_naming_the_key_and_the_file(dataset, tmp_path, capsys, text, message):
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    assert main(["run", str(dataset), "--out", str(tmp_path / "run"), "--rules", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.toml" in err and message in err, err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", ["strict.toml", "ioc.toml"])
def test_the_example_rule_files_apply_to_the_generated_day(dataset, tmp_path, name):
    examples = Path(__file__).resolve().parents[2] / "examples"
    assert main(["run", str(dataset), "--out", str(tmp_path / "run"), "--rules", str(examples / name)]) == 0


def test_the_report_is_one_self_contained_page_with_every_plot(dataset, run, tmp_path):
    import re

    page = (run / "report.html").read_text()
    plots = re.findall(r'data-plot="(\w+)"', page)
    assert plots == ["mark", "depth", "fund", "liquidations_count", "liquidations_notional", "slippage", "adl", "losers"]
    # Nothing to fetch: no scripts, stylesheets, images or fonts from anywhere.
    assert "<script" not in page and "<link" not in page and "<img" not in page
    assert re.findall(r"https?://[^\s\"']+", page) == ["http://www.w3.org/2000/svg"] * len(plots)
    # Every plot drew something (a line or bars); ADL may honestly have nothing to show.
    summary = json.loads((run / "summary.json").read_text())
    for svg in re.findall(r"<svg.*?</svg>", page):
        if 'data-plot="adl"' in svg and summary["liquidation"]["adl_count"] == 0:
            assert "ADL: none in this run" in svg
            continue
        assert "<polyline" in svg or "<rect" in svg, svg[:200]
    # `backtest report` rewrites the same bytes.
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    (copy / "report.html").unlink()
    assert main(["report", str(copy), "--dataset", str(dataset)]) == 0
    assert (copy / "report.html").read_bytes() == (run / "report.html").read_bytes()


@pytest.mark.parametrize("old, new, message", [
    ("fee_tiers = [[10_000, 40_000], [-5_000, 30_000]]", "fee_tiers = 5",
     "rules.fee_tiers: expected an array of [maker, taker] rows, got 5"),
    ("max_leverage.BTCUSDT = 50", "max_leverage.BTCUSDT = 50\nmargin_tiers.ETHUSDT = 7",
     "rules.margin_tiers.ETHUSDT: not an instrument of [instruments] (BTCUSDT)"),
    ("[instruments.BTCUSDT]", "[instruments]\nBTCUSDT = 5\n[instruments.ETHUSDT]",
     "instruments.BTCUSDT: expected a table [instruments.BTCUSDT], got 5"),
])
def test_a_manifest_of_the_wrong_shape_exits_2_naming_the_key(dataset, tmp_path, capsys, old, new, message):
    copy = tmp_path / "data"
    shutil.copytree(dataset, copy)
    text = (copy / "dataset.toml").read_text()
    assert old in text
    (copy / "dataset.toml").write_text(text.replace(old, new, 1))
    assert main(["run", str(copy), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "dataset.toml" in err and message in err, err
