"""`make bench-check`: fail CI on a real regression of the matcher's hot loop without
flaking on a noisy shared machine.

Why not compare seconds: on CI's two shared cores the same code moves +-20% run to run
(README, Performance) and a slower machine moves every figure, so a fixed time limit either
flakes or sleeps through a regression. What is stable is how long the matcher takes
*relative to* a fixed pure-Python calibration workload run in the same process, right next
to it: contention, frequency scaling and a slower CPU slow both about equally. The
calibration reads random records of a list of tuples larger than a core's L2 cache, as the
workloads read their books, orders and accounts: a neighbour's cache traffic and the
scheduler's interruptions slow both alike too (a cache-resident calibration, used before
2026-12-06, left the ratio 1.4-1.6x higher loaded than quiet).

How (docs/bench.md has the measurements behind the choices):
- Workloads (WORKLOADS): the matcher replaying a realistic stream (the mix of
  `datasets.order_streams.realistic_stream`) and an adversarial one (deep books swept
  whole), and the replay loop (pre-trade checks, matching, clearing, funding, margin
  checks: `backtest run` without its reading and writing) over a generated clearing
  stream, fed in batches of BATCH instructions and drained after each batch.
- Before every batch, a calibration chunk (`calibration`, seeded with the batch's index);
  both are timed in CPU time of this thread (time the scheduler gives other processes
  does not count), garbage collector paused. ROUNDS rounds after one warm-up round,
  which is dropped.
- A workload's ratio: for each batch the median over rounds of (batch time / its
  calibration chunk's time), then the mean over batches (`judge`).
- `bench/baseline.json` stores that ratio per workload, measured on CI's machine kind
  with neighbours running (two more gates); the gate fails when a ratio exceeds
  THRESHOLD x its baseline (1.5: a 2x slower hot loop fails, quiet or loaded; the ratio's
  noise across runs and loads, 0.84-1.09x of the baseline, does not).
- `--slowdown 2` replays every batch into a second matcher (or replay) as well, from its
  own copy of the input (twice the work) to show the gate failing; `--update-baseline`
  rewrites the baseline (review it).

Exit codes: 0 pass, 1 a workload regressed, 2 bad baseline file. Output (stdout) is a
table of ratios; the verdict depends on timings, so it is the one output here that is not
byte-reproducible.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path

BASELINE = Path(__file__).with_name("baseline.json")
THRESHOLD = 1.5  # fail when a ratio is more than this many times its baseline
ROUNDS = 9
BATCH = 16_384  # instructions per batch: the unit the calibration is interleaved with
CALIBRATION_RECORDS = 65_536  # the calibration's records: about 10 MB of tuples (see `calibration`)
CALIBRATION_CHUNK = 16_384  # reads per calibration chunk: about one batch's time


@dataclass(frozen=True)
class Verdict:
    """One workload's result: its ratio against the calibration, and the limit."""

    workload: str
    ratio: float  # workload CPU time / calibration CPU time (see `judge`)
    baseline: float
    limit: float  # baseline x threshold
    spread: float  # max / min of the whole rounds' ratios (how noisy this run was)

    @property
    def passed(self) -> bool:
        return self.ratio <= self.limit

    @property
    def slowdown(self) -> float:
        """How many times slower than the baseline (below 1: faster)."""
        return self.ratio / self.baseline


def judge(workload: str, workload_s: Sequence[Sequence[float]],
          calibration_s: Sequence[Sequence[float]], baseline: float, *,
          threshold: float = THRESHOLD) -> Verdict:
    """The verdict from paired CPU times, indexed [round][batch]: batch j of round r was
    timed right after its calibration chunk. The ratio is the mean over batches of the
    median over rounds of workload / calibration (medians drop the rounds a neighbour
    disturbed; the mean over batches averages what is left). Pure."""
    shape = [len(row) for row in workload_s]
    if not shape or not shape[0] or shape != [len(row) for row in calibration_s] \
            or len(set(shape)) != 1:
        raise ValueError(f"need paired timings [round][batch] of one shape: workload={shape} "
                         f"calibration={[len(row) for row in calibration_s]}")
    if baseline <= 0 or threshold <= 1:
        raise ValueError(f"baseline must be > 0 and threshold > 1: baseline={baseline} "
                         f"threshold={threshold}")
    per_batch = [statistics.median(w[j] / c[j] for w, c in zip(workload_s, calibration_s))
                 for j in range(shape[0])]
    per_round = [sum(w) / sum(c) for w, c in zip(workload_s, calibration_s)]
    return Verdict(workload, statistics.fmean(per_batch), baseline, baseline * threshold,
                   max(per_round) / min(per_round))


@cache
def calibration_records(size: int = CALIBRATION_RECORDS) -> list[tuple[int, int, int]]:
    """The calibration's records: `size` tuples of three ints (none of them small enough to be
    a cached int object), from a linear congruential generator with a fixed seed. Built
    once per process, outside the clock; never changed after."""
    x = 99991
    records = []
    for i in range(size):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        records.append((x % 100_000 + 1000, i + 1000, x % 977 + 1000))
    return records


def calibration(n: int = CALIBRATION_CHUNK, seed: int = 0) -> int:
    """A fixed pure-Python workload with a book's memory behaviour: `n` reads of a record at
    a random index of a list of CALIBRATION_RECORDS tuples (about 10 MB: more than a core's
    L2 cache, so most reads miss it, as the matcher's and the replay's do), each read
    allocating a new tuple record appended to a list that is cleared every 4,096, driven
    by a linear congruential generator seeded with `seed` (the batch index: chunk j does
    the same work in every round and run). Do not change it: every baseline ratio is
    measured against it. Returns a checksum (deterministic) so none of the work is dead."""
    records = calibration_records()
    size = len(records)
    x = 12345 + seed
    out: list[tuple[int, int, int]] = []
    check = 0
    for i in range(n):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        record = records[x % size]
        check += record[1]
        out.append((record[0], record[2] + i, x % 977))
        if len(out) >= 4096:
            out.clear()
    return check


# A workload for `measure`: called with `slowdown` before each round, it builds that round's
# fresh state (`slowdown` copies of it, each given every batch) outside the clock and
# returns one step per batch, each timed right after its calibration chunk.
Workload = Callable[[int], list[Callable[[], None]]]


def _matcher_batch(matchers: list, batches: list[list[list]]) -> None:
    for m, batch in zip(matchers, batches):  # slowdown > 1: the same work again on purpose
        m.apply_columns(*batch)
        m.out.clear()


def _own_copy(column: list) -> list:
    """`column` with its own int objects (`v + 0` allocates one for any int not cached),
    so a second matcher reads its input from memory as the first does, not from the cache
    the first one just warmed: --slowdown 2 is then twice the work, cache misses included."""
    return [v + 0 if type(v) is int else v for v in column]


def _matcher_round(cols) -> Workload:
    """The matcher over `cols` (an order stream), BATCH instructions at a time."""
    from matching import Matcher, SymbolRules
    args = cols.matcher_args()
    copies = [[[a[i:i + BATCH] for a in args] for i in range(0, len(cols), BATCH)]]

    def fresh(slowdown: int) -> list[Callable[[], None]]:
        while len(copies) < slowdown:  # built once, outside the clock
            copies.append([[_own_copy(c) for c in batch] for batch in copies[0]])
        matchers = [Matcher({"BTCUSDT": SymbolRules()}) for _ in range(slowdown)]
        return [partial(_matcher_batch, matchers, [copy[j] for copy in copies[:slowdown]])
                for j in range(len(copies[0]))]
    return fresh


def realistic_workload() -> Workload:
    from datasets.order_streams import realistic_stream
    return _matcher_round(realistic_stream(200_000, seed=1))


def adversarial_workload() -> Workload:
    from datasets.order_streams import adversarial_stream
    return _matcher_round(adversarial_stream(200_000, seed=1))


def _replay_batch(replays: list, j: int) -> None:
    for replay, batches in replays:  # slowdown > 1: the same work again on purpose
        replay.orders(batches[j])
        replay.out.clear()


def replay_workload() -> Workload:
    """The replay loop (`backtest run` without reading or writing: pre-trade checks,
    matching, clearing, funding, margin checks) over a generated clearing stream of 100k
    instructions, 2,000 accounts each holding a position, BATCH instructions at a time."""
    import tempfile
    from backtest.bench import prepare_replay
    from datasets.generate import write_clearing_dataset
    folder = tempfile.TemporaryDirectory(prefix="bench-gate-")
    dataset = write_clearing_dataset(Path(folder.name) / "d", n=100_000, seed=1, accounts=2_000)

    def fresh(slowdown: int, folder: tempfile.TemporaryDirectory = folder) -> list[Callable[[], None]]:
        # (`folder` held here: the dataset is deleted when the workload is)
        replays = [prepare_replay(dataset, batch_rows=BATCH) for _ in range(slowdown)]
        return [partial(_replay_batch, replays, j) for j in range(len(replays[0][1]))]
    return fresh


# name -> builder of the workload (its inputs built once, before any timing)
WORKLOADS: dict[str, Callable[[], Workload]] = {
    "realistic_200k": realistic_workload,
    "adversarial_200k": adversarial_workload,
    "replay_100k": replay_workload,
}


def measure(workload: Workload, *, rounds: int = ROUNDS, slowdown: int = 1
            ) -> tuple[list[list[float]], list[list[float]]]:
    """CPU seconds of this thread, [round][batch], for the workload's batches and for the
    calibration chunk timed right before each (after the first round: a warm-up, dropped).
    CPU time, not wall time: time the scheduler gives other processes is not counted."""
    calibration_records()  # built before the clock starts
    clock = time.thread_time
    work: list[list[float]] = []
    calib: list[list[float]] = []
    for r in range(rounds + 1):
        steps = workload(slowdown)
        w_round, c_round = [], []
        gc.collect()
        gc.disable()
        try:
            for j, step in enumerate(steps):
                start = clock()
                calibration(CALIBRATION_CHUNK, j)
                mid = clock()
                step()
                end = clock()
                c_round.append(mid - start)
                w_round.append(end - mid)
        finally:
            gc.enable()
        if r:
            work.append(w_round)
            calib.append(c_round)
    return work, calib


def load_baseline(path: Path) -> dict[str, float]:
    """Workload -> baseline ratio from `path`; InputError naming the problem otherwise."""
    from matching.errors import InputError
    try:
        data = json.loads(path.read_text())
        ratios = data["ratios"]
    except FileNotFoundError:
        raise InputError(str(path), ["no baseline: run `python -m bench.gate "
                                     "--update-baseline` on CI's machine kind"]) from None
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise InputError(str(path), [f"not a baseline file: {exc}"]) from None
    problems = [f"key ratios.{name}: missing" for name in WORKLOADS if name not in ratios]
    problems += [f"key ratios.{name}: not a positive number: {v!r}" for name, v in ratios.items()
                 if not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0]
    if problems:
        raise InputError(str(path), problems)
    return {name: float(ratios[name]) for name in WORKLOADS}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gate", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--slowdown", type=int, default=1,
                        help="do each workload's work this many times (to show the gate failing)")
    parser.add_argument("--baseline", type=Path, default=BASELINE)
    parser.add_argument("--update-baseline", action="store_true",
                        help="write the measured ratios as the new baseline")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.slowdown < 1:
        parser.error("--rounds and --slowdown must be >= 1")
    from matching.errors import InputError
    import matching.engine
    compiled = not matching.engine.__file__.endswith(".py")
    baseline: dict[str, float] = {}
    if not args.update_baseline:
        try:
            baseline = load_baseline(args.baseline)
        except InputError as exc:
            print(exc, file=sys.stderr)
            return 2
    start = time.perf_counter()
    measured: dict[str, tuple[list[list[float]], list[list[float]]]] = {}
    for name, build in WORKLOADS.items():
        measured[name] = measure(build(), rounds=args.rounds, slowdown=args.slowdown)
    if args.update_baseline:
        ratios = {name: round(judge(name, *measured[name], 1.0).ratio, 4) for name in WORKLOADS}
        args.baseline.write_text(json.dumps({
            "ratios": ratios, "rounds": args.rounds,
            "python": platform.python_version(), "machine": platform.machine(),
            "matcher_compiled": compiled,
        }, indent=2, sort_keys=True) + "\n")
        print(f"wrote {args.baseline}: {ratios}")
        return 0
    failed = False
    print(f"bench-check: matcher {'compiled' if compiled else 'PURE PYTHON'}, "
          f"{args.rounds} rounds, threshold {THRESHOLD}x baseline"
          + (f", slowdown x{args.slowdown} on purpose" if args.slowdown > 1 else ""))
    for name, (work, calib) in measured.items():
        v = judge(name, work, calib, baseline[name])
        failed |= not v.passed
        print(f"  {name:18} ratio {v.ratio:.3f} (baseline {v.baseline:.3f}, limit {v.limit:.3f})"
              f" = {v.slowdown:.2f}x baseline, spread {v.spread:.2f}, "
              f"workload {statistics.median(sum(w) for w in work):.3f} s CPU  "
              f"{'ok' if v.passed else 'REGRESSION'}")
    print(f"bench-check: {'FAIL' if failed else 'pass'} in {time.perf_counter() - start:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
