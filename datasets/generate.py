"""Write generated order streams as dataset folders (`dataset.toml` + `orders.parquet`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from datasets.order_streams import START_NS, OrderColumns, adversarial_stream, realistic_stream
from datasets.orders import write_orders

STREAM_KINDS = ("realistic", "adversarial")

MANIFEST = """\
[dataset]
name = "{name}"
start_ns = {start_ns}
end_ns = {end_ns}
provenance = "{provenance}"

[assets.USDT]
minor_unit = "0.00000001"
stable = true

[instruments.BTCUSDT]
kind = "linear_perpetual"
base = "BTC"
settle = "USDT"
tick_size = "0.1"
lot_size = "0.001"
min_qty = 1

[rules]
stp = "cancel_taker"
"""


def make_stream(kind: str, n: int, seed: int,
                progress: Callable[[int], None] | None = None) -> OrderColumns:
    if kind == "realistic":
        return realistic_stream(n, seed=seed, progress=progress)
    if kind == "adversarial":
        return adversarial_stream(n, seed=seed)
    raise ValueError(f"unknown stream kind: {kind!r}; one of {', '.join(STREAM_KINDS)}")


def write_order_dataset(out: Path, *, kind: str, n: int, seed: int,
                        progress: Callable[[int], None] | None = None) -> Path:
    """Generate `n` instructions of `kind` with `seed` into dataset folder `out`;
    `progress(done)` is called as instructions are generated."""
    cols = make_stream(kind, n, seed, progress)
    out.mkdir(parents=True, exist_ok=True)
    name = f"{kind}-orders-{n}-seed{seed}"
    provenance = f"backtest generate orders --kind {kind} --n {n} --seed {seed}"
    (out / "dataset.toml").write_text(MANIFEST.format(
        name=name, start_ns=START_NS, end_ns=(cols.ts[-1] if n else START_NS) + 1,
        provenance=provenance))
    write_orders(cols, out / "orders.parquet")
    return out
