"""bench/replay_loop.py measures what `backtest run` replays: as many output sequence
numbers as the run's tables hold, and the same records every time."""

from __future__ import annotations

import polars as pl

from bench.replay_loop import main, one_round
from datasets.generate import write_clearing_dataset


def test_the_loop_benchmark_replays_what_a_run_writes(tmp_path, capfd):
    from backtest.run import run_replay

    dataset = write_clearing_dataset(tmp_path / "d", n=4_000, seed=2, accounts=40)
    cpu, records, seq, digest = one_round(dataset)
    assert cpu > 0 and records > 4_000
    assert one_round(dataset)[1:] == (records, seq, digest)
    run_replay(dataset, tmp_path / "run")
    written = max(pl.read_parquet(t, columns=["seq"])["seq"].max() or 0
                  for t in (tmp_path / "run").glob("*.parquet") if "seq" in pl.read_parquet_schema(t))
    assert seq == written
    assert main([str(dataset), "--rounds", "1"]) == 0
    assert capfd.readouterr().out.startswith("loop ")
