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


CLEARING_RULES = """\
fees = {{ maker = 20_000, taker = 50_000 }}
fee_tiers = [[10_000, 40_000], [-5_000, 30_000]]
margin_tiers.BTCUSDT = [
  [0, 400_000, 0], [5_000_000_000_000, 500_000, 5_000_000_000],
  [25_000_000_000_000, 1_000_000, 130_000_000_000],
]
max_leverage.BTCUSDT = 50
funding = {{ interval_s = {interval_s}, cap = 300_000, floor = -300_000 }}
"""


CRASH_RULES = """\
liquidation = {{ execution = "sweep", band = 5_000_000 }}
insurance_fund = {{ opening = 5_000_000_000_000, floor = 0 }}
adl = {{ ranking = "bitmex" }}
"""
CRASH_WINDOW = (0.3, 0.6)  # the sell-off, as fractions of the day's instructions
CRASH_CALM_SHARE = 0.4  # the calm before the sell-off, as a share of the day's span
CRASH_MINUTES = 15  # the sell-off lasts this long (a tenth of the day if that is shorter)
# The crash day's population: leverage (x) and weight. Long liquidation prices spread from
# about 1.6% under entry (50x) to 19.6% (5x); 3x and below survive the 25% fall.
CRASH_LEVERAGE = ((1, 6), (2, 8), (3, 10), (5, 16), (10, 22), (20, 18), (25, 10), (50, 10))
NS_PER_S = 1_000_000_000


def crash_timeline(n: int, hours: float) -> tuple[tuple[int, int], ...]:
    """The crash day's (end instruction, duration ns) segments: CRASH_CALM_SHARE of the
    span before the sell-off, CRASH_MINUTES for it (at most a tenth of the span), the rest
    after; the instructions split by CRASH_WINDOW, so the sell-off is the busiest time."""
    span = int(hours * 3600) * NS_PER_S
    calm = int(span * CRASH_CALM_SHARE)
    crash = min(CRASH_MINUTES * 60 * NS_PER_S, span // 10)
    start, end = (int(f * n) for f in CRASH_WINDOW)
    return ((start, calm), (end, crash), (n, span - calm - crash))


def write_clearing_dataset(out: Path, *, n: int, seed: int, accounts: int,
                           progress: Callable[[int], None] | None = None,
                           crash: bool = False, hours: float = 4.0) -> Path:
    """The realistic order stream from `accounts` accounts, plus what clearing needs:
    every account funded and holding a position (longs and shorts pairwise, so they net to
    zero; leverage 1x..200x, so some accounts meet margin calls as the mark walks), a mark
    per second (the generating book's mid), funding from a `funding` table every 4 s and
    from premium samples (one per second, 3 s interval) at the boundaries the table does
    not cover, and deposits and withdrawals (some too large, so refused).

    With `crash`, the synthetic crash day over `hours`: a calm book for 40% of the span,
    then a sell-off of 25% in 15 minutes (30% to 60% of the instructions: makers pull their
    bids, sellers hit what is left) and a recovery of 45% of the fall
    (datasets/order_streams.py); accounts leveraged by CRASH_LEVERAGE, a mark per second
    and an index that follows it with a lag, hourly funding (a `funding` row every two
    hours, premium samples every 10 s for the hours between), an insurance fund of
    50,000 USDT and liquidations swept inside a 5% band: leveraged longs are liquidated in
    a cascade into the thin book and ADL reaches the profitable shorts."""
    import random

    import polars as pl

    from datasets.tables import write_table

    cols = realistic_stream(n, seed=seed, accounts=accounts, progress=progress,
                            crash=CRASH_WINDOW if crash else None,
                            timeline=crash_timeline(n, hours) if crash else None)
    out.mkdir(parents=True, exist_ok=True)
    end_ns = (cols.ts[-1] if n else START_NS) + 1
    if crash:
        name = f"crash-day-{hours:g}h-{n}-accounts{accounts}-seed{seed}"
        provenance = (f"backtest generate crash-day --hours {hours:g} --n {n} --accounts {accounts} "
                      f"--seed {seed}")
    else:
        name = f"clearing-orders-{n}-accounts{accounts}-seed{seed}"
        provenance = (f"backtest generate orders --clearing --n {n} --accounts {accounts} "
                      f"--seed {seed}")
    (out / "dataset.toml").write_text(
        MANIFEST.format(name=name, start_ns=START_NS, end_ns=end_ns, provenance=provenance)
        + CLEARING_RULES.format(interval_s=3600 if crash else 3) + (CRASH_RULES.format() if crash else ""))
    write_orders(cols, out / "orders.parquet")
    rng = random.Random(f"clearing-{seed}")
    names = [f"acct{i:05d}" for i in range(accounts)]  # realistic_stream's account names
    mid = cols.mids[0][2] if cols.mids else 300_000
    k = 10_000  # BTCUSDT minor units per tick x lot
    levers, weights = zip(*CRASH_LEVERAGE)
    acct_rows, pos_rows = [], []
    for i, account in enumerate(names):
        qty = rng.randint(100, 3_000)  # lots: 0.1 .. 3 BTC
        pair = names[i ^ 1] if (i ^ 1) < len(names) else None
        if pair is None:
            qty = 0  # an odd one out holds no position
        sign = 1 if i % 2 == 0 else -1
        entry = mid + rng.randint(-500, 500)
        if crash:
            leverage = rng.choices(levers, weights)[0]
        else:
            leverage = rng.choice((1, 2, 5, 10, 20, 25, 50, 100, 150, 200))
        balance = qty * entry * k // leverage + rng.randint(0, 10**10)
        acct_rows.append((account, "USDT", balance, "single_asset", rng.choice((0, 0, 0, 1, 2))))
        pos_rows.append((account, "BTCUSDT", sign * qty, entry))
    # Pairs (2j, 2j+1) hold equal and opposite quantities.
    for j in range(0, len(pos_rows) - 1, 2):
        pos_rows[j + 1] = pos_rows[j + 1][:2] + (-pos_rows[j][2],) + pos_rows[j + 1][3:]
    schema = {"account": pl.String, "asset": pl.String, "balance": pl.Int64,
              "margin_mode": pl.String, "fee_tier": pl.Int64}
    write_table(pl.DataFrame(acct_rows, schema=schema, orient="row"), out / "accounts.parquet")
    write_table(pl.DataFrame(pos_rows, schema={"account": pl.String, "symbol": pl.String,
                                               "qty": pl.Int64, "entry_price": pl.Int64},
                             orient="row"), out / "positions.parquet")
    if crash:
        marks, index = [], None
        for ts, symbol, mid in cols.mids:
            index = mid if index is None else index + (mid - index) // 8  # lags the mark
            marks.append((ts, symbol, mid, index))
        funding_every, premium_every = 7200 * NS_PER_S, 10 * NS_PER_S
    else:
        marks = [(ts, s, m, m) for ts, s, m in cols.mids]
        funding_every, premium_every = 4 * NS_PER_S, NS_PER_S
    write_table(pl.DataFrame(marks, schema={"ts": pl.Int64, "symbol": pl.String,
                                            "mark_price": pl.Int64, "index_price": pl.Int64},
                             orient="row"), out / "marks.parquet")
    funding = [(START_NS + t, "BTCUSDT", rng.randint(-100, 100), 1_000_000)
               for t in range(funding_every, end_ns - START_NS + 1, funding_every)]
    write_table(pl.DataFrame(funding, schema={"ts": pl.Int64, "symbol": pl.String, "rate": pl.Int64,
                                              "scale": pl.Int64}, orient="row"),
                out / "funding.parquet")
    premium = [(ts, "BTCUSDT", rng.randint(-40_000, 60_000)) for ts, _, _, _ in marks
               if (ts - START_NS) % premium_every == 0]
    write_table(pl.DataFrame(premium, schema={"ts": pl.Int64, "symbol": pl.String,
                                              "premium": pl.Int64}, orient="row"),
                out / "premium_index.parquet")
    transfers = []
    ts = START_NS
    for seq in range(max(1, n // 1_000)):
        ts += rng.randint(1, 2 * (end_ns - START_NS) // max(1, n // 1_000))
        if ts >= end_ns:
            break
        kind = "deposit" if rng.random() < 0.5 else "withdraw"
        transfers.append((ts, seq, rng.choice(names), kind, "USDT", rng.randint(1, 10**12)))
    write_table(pl.DataFrame(transfers, schema={"ts": pl.Int64, "seq": pl.Int64, "account": pl.String,
                                                "kind": pl.String, "asset": pl.String,
                                                "amount": pl.Int64}, orient="row"),
                out / "transfers.parquet")
    return out
