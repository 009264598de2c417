"""`backtest bench`: throughput figures for the README, as numbers.

- `matcher_msgs_per_s`: the matcher alone, instructions loaded before the clock starts
  (median of the rounds).
- `match_pipeline_msgs_per_s`: `backtest match` end to end (check, read, match, write).
- `replay_events_per_s`: `backtest run` end to end (check every table, pre-trade checks,
  match, clear, fund, margin checks, write every table), when the dataset has what
  clearing needs (rules with margin tiers); otherwise null.
Without --dataset: a generated realistic stream with clearing tables (2,000 accounts, every
one holding a position), so all three figures come from the same instructions.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import matching.engine
from backtest.match import gc_paused, run_match
from backtest.run import run_replay
from datasets.generate import write_clearing_dataset
from datasets.manifest import load_manifest
from datasets.orders import check_orders, load_orders
from matching import Matcher


def matcher_rate(batches: list[tuple[list, ...]], rules: dict, rounds: int) -> list[float]:
    """Instructions per second of the matcher alone, one figure per round (a fresh book
    each round). Records are drained after each batch, as a replay does."""
    n = sum(len(b[0]) for b in batches)
    rates = []
    for _ in range(rounds):
        matcher = Matcher(rules)
        out = matcher.out
        with gc_paused():
            start = time.perf_counter()
            for batch in batches:
                matcher.apply_columns(*batch)
                out.clear()
            elapsed = time.perf_counter() - start
        rates.append(n / elapsed)
    return rates


def run_bench(dataset: Path | None, *, rounds: int = 3, n: int = 1_000_000, seed: int = 1) -> dict:
    """Measure on `dataset`, or on a generated realistic stream of `n` instructions."""
    with tempfile.TemporaryDirectory(prefix="backtest-bench-") as tmp:
        if dataset is None:
            dataset = write_clearing_dataset(Path(tmp) / "dataset", n=n, seed=seed, accounts=2_000)
        manifest = load_manifest(dataset)
        orders = dataset / "orders.parquet"
        messages = check_orders(orders)
        batches = load_orders(orders, default_stp=manifest.default_stp)
        rates = matcher_rate(batches, manifest.matcher_rules(), rounds)
        start = time.perf_counter()
        run_match(dataset, Path(tmp) / "match")
        pipeline = messages / (time.perf_counter() - start)
        replay = None
        if "margin_tiers" in manifest.rules:
            start = time.perf_counter()
            run_replay(dataset, Path(tmp) / "run")
            replay = round(messages / (time.perf_counter() - start))
    return {
        "dataset": manifest.name,
        "messages": messages,
        "rounds": rounds,
        "matcher_msgs_per_s": round(statistics.median(rates)),
        "matcher_msgs_per_s_best": round(max(rates)),
        "match_pipeline_msgs_per_s": round(pipeline),
        "replay_events_per_s": replay,
        "replay_to_matcher": None if replay is None else round(replay / statistics.median(rates), 3),
        "replay_to_match_pipeline": None if replay is None else round(replay / pipeline, 3),
        "matcher_compiled": not matching.engine.__file__.endswith(".py"),
    }
