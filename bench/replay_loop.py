"""The replay loop alone: `Replay.orders` and `Replay.until` over an order-flow dataset's
instructions, loaded before the clock starts, records drained after each batch and never
written. The README's "replay loop alone" figure; `backtest bench` measures the whole run.

    .venv/bin/python -m bench.replay_loop DATASET [--rounds 3]

Each round runs in a fresh process (a second round in the same process is slower: the
first round's objects fragment the heap) and prints the main thread's CPU seconds (the
background threads of `backtest run` do not exist here) and a hash of every record, so two
builds can be compared for speed and for identical output in one go. Figures move +-20%
on the shared 2-core machine: compare builds by interleaving their rounds.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
from pathlib import Path

from backtest.bench import replay_loop


def one_round(dataset: Path) -> tuple[float, int, int, str]:
    """(main-thread CPU seconds of the loop, records, the last output sequence number,
    sha256 of the records' reprs) for one replay (backtest/bench.py's `replay_loop`)."""
    digest = hashlib.sha256()
    _, cpu, records, seq = replay_loop(dataset, digest)
    return cpu, records, seq, digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.replay_loop", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path, help="an order-flow dataset folder with orders.parquet")
    parser.add_argument("--rounds", type=int, default=3, help="fresh processes, one round each (default 3)")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a child's single round
    args = parser.parse_args(argv)
    if args.one:
        cpu, records, _, digest = one_round(args.dataset)
        print(f"loop {cpu:.2f} s CPU, {records:,} records, sha256 {digest[:16]}", flush=True)
        return 0
    for _ in range(args.rounds):
        done = subprocess.run([sys.executable, "-m", "bench.replay_loop", str(args.dataset), "--one"])
        if done.returncode:
            return done.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
