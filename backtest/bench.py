"""`backtest bench`: the matcher's throughput, and the `match` pipeline's, as numbers."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import matching.engine
from backtest.match import gc_paused, run_match
from datasets.generate import write_order_dataset
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
            dataset = write_order_dataset(Path(tmp) / "dataset", kind="realistic", n=n, seed=seed)
        manifest = load_manifest(dataset)
        orders = dataset / "orders.parquet"
        messages = check_orders(orders)
        batches = load_orders(orders, default_stp=manifest.default_stp)
        rates = matcher_rate(batches, manifest.matcher_rules(), rounds)
        start = time.perf_counter()
        run_match(dataset, Path(tmp) / "run")
        pipeline = messages / (time.perf_counter() - start)
    return {
        "dataset": manifest.name,
        "messages": messages,
        "rounds": rounds,
        "matcher_msgs_per_s": round(statistics.median(rates)),
        "matcher_msgs_per_s_best": round(max(rates)),
        # Until the full replay exists, the replay figure is `backtest match` end to end:
        # read and check the Parquet file, match, write every output table.
        "replay_events_per_s": round(pipeline),
        "replay": "match",
        "matcher_compiled": not matching.engine.__file__.endswith(".py"),
    }
