"""`backtest match`: the matcher alone over a dataset's `orders`, no clearing."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import polars as pl

from backtest.outputs import MatchOutputWriter, write_book_final, write_summary
from datasets.folders import staged_folder
from datasets.manifest import load_manifest
from datasets.orders import check_orders, iter_order_batches
from matching import Matcher


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector around a hot loop.

    The matcher allocates one record per event and one object per resting order and
    makes no reference cycles that outlive an instruction (an order's link to its level is
    cut when it leaves the book), so reference counting frees everything; without the
    pause, generation scans over the live book took about a third of the run (perf).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class Laps:
    """Wall seconds per stage of a run (`backtest bench` reports them; nothing is written to
    a run folder, so outputs stay byte-identical). `lap(stage)` charges the time since the
    previous lap (or since construction) to `stage`; a stage lapped once per batch sums."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - self._last
        self._last = now


def run_match(
    dataset: Path, out: Path, *, progress: Callable[[int, int], None] | None = None,
    laps: Laps | None = None,
) -> dict:
    """Replay `dataset`'s orders through the matcher into run folder `out`; return the
    summary. Raises InputError (nothing written) on a bad manifest or orders file.
    `progress(done, total)` is called after each batch of instructions. `laps` gets the
    wall time of the stages: check, read, match, write (the main thread's share of the
    writing, and the wait for the writer thread at the end), finish."""
    laps = Laps() if laps is None else laps
    manifest = load_manifest(dataset)
    orders_path = dataset / "orders.parquet"
    total = check_orders(orders_path)
    matcher = Matcher(manifest.matcher_rules())
    factors = {s: i.notional_factor for s, i in manifest.instruments.items()}
    with staged_folder(out) as stage:
        writer = MatchOutputWriter(stage, factors)
        done = 0
        laps.lap("check")
        with gc_paused():
            for batch in iter_order_batches(orders_path, default_stp=manifest.default_stp):
                laps.lap("read")
                matcher.apply_columns(*batch)
                laps.lap("match")
                writer.write_records(matcher.out)
                matcher.out.clear()
                laps.lap("write")
                done += len(batch[0])
                if progress is not None:
                    progress(done, total)
        writer.close()
        laps.lap("write")
        levels = write_book_final(matcher, stage / "book_final.parquet")
        summary = {
            "command": "match",
            "dataset": manifest.name,
            "instructions": total,
            "fills": writer.fill_rows,
            "order_events": writer.event_rows,
            "book_levels": levels,
            "resting_orders": len(matcher.orders),
        }
        summary.update(_event_counts(stage))
        summary = write_summary(stage, summary)  # with every table's rows and hash
    laps.lap("finish")
    return summary


def _event_counts(folder: Path) -> dict:
    """Counts by event and by reason, and traded quantity, from the written tables."""
    events = pl.scan_parquet(folder / "order_events.parquet").select(
        pl.col("event").cast(pl.String), pl.col("reason").cast(pl.String))
    by_event = events.group_by("event").len().sort("event").collect(engine="streaming")
    by_reason = (events.drop_nulls("reason").group_by("event", "reason").len()
                 .sort("event", "reason").collect(engine="streaming"))
    fills = (pl.scan_parquet(folder / "fills.parquet")
             .select(pl.col("qty").sum(), pl.col("notional").cast(pl.Int128).sum())
             .collect(engine="streaming"))
    qty, notional = fills.row(0)
    return {
        "events": {str(e): int(n) for e, n in by_event.iter_rows()},
        "reasons": {f"{e}:{r}": int(n) for e, r, n in by_reason.iter_rows()},
        "fill_qty_lots": int(qty or 0),
        "fill_notional_minor": int(notional or 0),
    }
