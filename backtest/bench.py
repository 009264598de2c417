"""`backtest bench`: throughput figures for the README, as numbers.

- `matcher_msgs_per_s`: the matcher alone, instructions loaded before the clock starts
  (median of the rounds).
- `match_pipeline_msgs_per_s`: `backtest match` end to end (check, read, match, write).
- `replay_events_per_s`: `backtest run` end to end (check every table, pre-trade checks,
  match, clear, fund, margin checks, write every table), when the dataset has what
  clearing needs (rules with margin tiers); otherwise null.
- `replay_loop_msgs_per_s`: the replay loop alone, measured like the matcher: instructions
  and the other tables loaded before the clock starts, records drained, nothing written
  (one round: a second one in the same process runs on a fragmented heap). With
  `matcher_msgs_per_s` it gives what clearing costs the loop, I/O aside:
  `replay_loop_to_matcher`.
- `match_pipeline_stages_s`, `replay_stages_s`: where the two end-to-end figures' wall
  time went, in seconds per stage (backtest.match.Laps; run_match's and run_replay's
  docstrings say what each stage holds).
Without --dataset: a generated realistic stream with clearing tables (2,000 accounts, every
one holding a position), so all three figures come from the same instructions.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import matching.engine
from backtest.match import Laps, gc_paused, run_match
from backtest.replay import Replay
from backtest.run import _depth_interval, _load_clearing, _load_events, liquidation_rules, run_replay
from datasets.generate import write_clearing_dataset
from datasets.manifest import load_manifest
from datasets.orders import check_orders, iter_order_batches, load_orders
from datasets.rules import load_rules
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


def prepare_replay(dataset: Path, batch_rows: int | None = None) -> tuple[Replay, list[tuple[list, ...]]]:
    """A replay of an order-flow dataset set up as `backtest run` sets it up (rules, events,
    opening state, safe ranges armed), and its order batches read: everything the replay
    loop needs before the clock starts."""
    manifest = load_manifest(dataset)
    rules = load_rules(manifest.rules, sorted(manifest.instruments), str(manifest.path),
                       sorted({i.settle for i in manifest.instruments.values()}), assets=sorted(manifest.assets))
    sizes = {} if batch_rows is None else {"batch_rows": batch_rows}
    batches = list(iter_order_batches(dataset / "orders.parquet", default_stp=manifest.default_stp,
                                      reduce_only=True, **sizes))
    events, _ = _load_events(dataset, manifest, rules)
    clearing, _ = _load_clearing(dataset, manifest, rules)
    replay = Replay(Matcher(manifest.matcher_rules()), clearing, events, liquidation_rules(manifest, rules),
                    depth_every_ns=_depth_interval(events), interest_rates=rules.interest_rates,
                    conversion_spread=rules.conversion_spread)
    for account in sorted(clearing.positions):
        replay.watch.check(account)
    return replay, batches


def replay_loop(dataset: Path, digest=None) -> tuple[float, float, int, int]:
    """The replay loop alone over an order-flow dataset: `Replay.orders` per batch, then
    `Replay.until(None)`, with the orders, events and opening state loaded before the clock
    starts (prepare_replay) and the records drained after each batch, never written.
    Returns (wall seconds, main-thread CPU seconds, records, the last output sequence
    number); `digest` (a hashlib object), when given, is fed every record's repr outside
    the clock."""
    replay, batches = prepare_replay(dataset)
    records = 0
    wall = cpu = 0.0
    with gc_paused():  # as backtest run does
        for batch in [*batches, None]:
            start, start_cpu = time.perf_counter(), time.thread_time()
            if batch is None:
                replay.until(None)
            else:
                replay.orders(batch)
            wall += time.perf_counter() - start
            cpu += time.thread_time() - start_cpu
            records += len(replay.out)
            if digest is not None:
                digest.update(repr(replay.out).encode())
            replay.out.clear()
    return wall, cpu, records, replay.seq


def _stages(laps: Laps) -> dict[str, float]:
    return {stage: round(seconds, 3) for stage, seconds in laps.seconds.items()}


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
        match_laps = Laps()
        run_match(dataset, Path(tmp) / "match", laps=match_laps)
        pipeline = messages / sum(match_laps.seconds.values())
        replay = loop = run_laps = None
        if "margin_tiers" in manifest.rules:
            run_laps = Laps()
            run_replay(dataset, Path(tmp) / "run", laps=run_laps)
            replay = round(messages / sum(run_laps.seconds.values()))
            loop = round(messages / replay_loop(dataset)[0])
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
        "replay_loop_msgs_per_s": loop,
        "replay_loop_to_matcher": None if loop is None else round(loop / statistics.median(rates), 3),
        "match_pipeline_stages_s": _stages(match_laps),
        "replay_stages_s": None if run_laps is None else _stages(run_laps),
        "matcher_compiled": not matching.engine.__file__.endswith(".py"),
    }
