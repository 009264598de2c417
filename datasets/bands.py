"""`backtest generate depth DATASET --from-bands`: a coarse exogenous book from depth bands.

Binance's archive publishes `bookDepth` for days that have no tick-level depth: every ~30 s,
the cumulative quantity and notional resting within +-1..5% of the mid. The binance
importer keeps it as the `depth_bands` table (ts, seq, symbol, percentage, depth in lots,
notional in minor units of the settle asset). This module turns it into a `depth` table
(DESIGN.md's contract: ts, seq, symbol, side, price, qty, snapshot) that a market-data
replay (matching/market.py) can trade against, written into the dataset folder in place.
docs/market-data.md says the same for users.

The spread (state here, test in tests/datasets/test_bands.py):
- Snapshots. Every band timestamp of a symbol is one snapshot: all its rows share that ts,
  `snapshot = true`, and each row has its own seq, increasing through the file (rows
  ordered by ts, symbol, bids best first, then asks best first). A snapshot replaces the
  book (the replay removes the levels it does not name).
- The mid. The symbol's last mark (`marks.mark_price`) at or before the band's ts; the
  first mark when none is that early. The mark is not Binance's mid (the book's, unknown):
  the notional check below measures how far apart they are.
- Bands. Band k (k = 1..5; percentage -k for bids, +k for asks) covers the prices between
  (k-1)% and k% from the mid: asks mid x (100+k-1)/100 < p <= mid x (100+k)/100, bids
  mid x (100-k)/100 <= p < mid x (100-k+1)/100, so "within k%" is exactly the inclusive
  Binance reading and band 1 never touches the mid (bids < mid < asks). When a band of a
  snapshot is missing, the next one present covers from the last present edge.
- Lots. A band's own lots are depth_k - depth_{k-1} (cumulative, so the difference; 0
  before band 1). A recording that is not monotone (depth_k < depth_{k-1}) gives 0 lots,
  and the summary counts such bands.
- Levels. The band's M ticks (the integer prices in its range above) are cut into
  L = min(N, M) equal runs and one level sits at the outer end of each run: level j
  (j = 1..L, j = 1 nearest the mid) at ask A - 1 + ceil(j x M / L) or bid H + 1 -
  ceil(j x M / L), with A the band's lowest ask tick and H its highest bid tick. The
  evenly spaced points are rounded away from the mid (asks up, bids down), on the grid,
  distinct (runs are at least one tick long), level L at the band's outer edge.
- Split. The own lots over the L levels: lots // L each, and the remainder one more lot
  each to the levels nearest the mid. Levels left with 0 lots are not written (a depth
  row of 0 lots removes a level). A band with no tick inside (a price under 100 ticks)
  cannot hold its lots: they are dropped and counted.
- The notional check (linear instruments): a band's own notional / (own lots x K) is the
  average price Binance's book had inside the band; the summary compares it with the
  spread's average price (sum p x q / sum q) in basis points of the mid, and counts bands
  whose recorded average lies outside the band's own price range.

Inputs are checked first: `depth_bands` (columns, nulls, percentage in +-1..5, depth and
notional >= 0, ts in order, one row per (ts, symbol, percentage)) and `marks`; every fault
names file, row and column. The dataset folder is rewritten through a staging folder
(datasets.folders.rewritten_folder): every other file is kept (hard-linked), and a failure
leaves it as it was. A `depth.parquet` this command did not write (a recording's) is
never overwritten.

Everything is one polars query (no Python loop per row); same inputs, same bytes.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from datasets.folders import rewritten_folder
from datasets.manifest import load_manifest
from datasets.tables import INT, MARKS, STR, RowCheck, TableSpec, load_table, table_faults
from matching.errors import InputError

HELP = "a coarse exogenous book (depth.parquet) from the depth_bands table"
DESCRIPTION = """\
Write depth.parquet into the dataset folder DATASET from its depth_bands table (what
`backtest import binance` makes of the archive's bookDepth files: cumulative size within
+-1..5% of the mid, every ~30 s) and its marks table: every band timestamp becomes one
snapshot of the book, the mid is the last mark at or before it, and each band's own lots
(depth_k - depth_{k-1}) are spread over --levels-per-band evenly spaced prices inside the
band, lots split evenly with the remainder nearest the mid. Every other file of DATASET is
kept; a depth.parquet this command did not write is never replaced. Same inputs, same
bytes. docs/market-data.md has every rule."""
EPILOG = ("example:\n  backtest import binance ../shared/data/binance-futures-crash-2025-10-10 "
          "data/crash --klines mark\n  backtest generate depth data/crash --from-bands")

DEFAULT_LEVELS = 20
MAX_BAND = 5  # Binance's bookDepth publishes +-1..5 %
GENERATED_KEY = b"backtest.generated"
GENERATED_VALUE = b"generate depth --from-bands"
DEPTH_SCHEMA = pa.schema([("ts", pa.int64()), ("seq", pa.int64()), ("symbol", pa.string()),
                          ("side", pa.string()), ("price", pa.int64()), ("qty", pa.int64()),
                          ("snapshot", pa.bool_())])

BANDS = TableSpec(
    "depth_bands",
    {"ts": (INT, True), "seq": (INT, True), "symbol": (STR, True), "percentage": (INT, True),
     "depth": (INT, True), "notional": (INT, True)},
    not_null=("ts", "seq", "symbol", "percentage", "depth", "notional"), enums={},
    non_negative=("depth", "notional"), ordered_ts=True,
    unique=(("ts", "symbol", "percentage"),))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from-bands", action="store_true", required=True,
                        help="build the book from DATASET/depth_bands.parquet (the only source so far)")
    parser.add_argument("--levels-per-band", type=int, default=DEFAULT_LEVELS, metavar="N",
                        help=f"price levels each band is spread over (default {DEFAULT_LEVELS}); "
                             "fewer when the band holds fewer ticks")
    parser.add_argument("--symbol", help="only this symbol of depth_bands (default: every symbol it has)")


# ---------------------------------------------------------------------------------------
# The spread, one band at a time: the reference the vectorised query is tested against.


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def band_ticks(mid: int, inner: int, outer: int, *, ask: bool) -> tuple[int, int]:
    """(first, last) tick of the band inner%..outer% from `mid` (ticks), first nearest
    the mid; empty when the count `abs(last - first) + 1` would be <= 0 (see band_prices).

    >>> band_ticks(100_000, 0, 1, ask=True)
    (100001, 101000)
    >>> band_ticks(100_000, 0, 1, ask=False)
    (99999, 99000)
    """
    if ask:  # mid(100+inner)/100 < p <= mid(100+outer)/100
        return mid * (100 + inner) // 100 + 1, mid * (100 + outer) // 100
    # mid(100-outer)/100 <= p < mid(100-inner)/100
    return _ceil_div(mid * (100 - inner), 100) - 1, _ceil_div(mid * (100 - outer), 100)


def band_prices(mid: int, inner: int, outer: int, levels: int, *, ask: bool) -> list[int]:
    """The level prices of one band, nearest the mid first (module doc: L = min(N, M)
    runs of the band's M ticks, a level at the outer end of each).

    >>> band_prices(1_000, 0, 1, 4, ask=True)
    [1003, 1005, 1008, 1010]
    >>> band_prices(1_000, 0, 1, 4, ask=False)
    [997, 995, 992, 990]
    >>> band_prices(150, 0, 1, 20, ask=True)  # 1% of 150 ticks: one tick, one level
    [151]
    """
    first, last = band_ticks(mid, inner, outer, ask=ask)
    m = last - first + 1 if ask else first - last + 1
    n = min(levels, m)
    if ask:
        return [first - 1 + _ceil_div(j * m, n) for j in range(1, n + 1)]
    return [first + 1 - _ceil_div(j * m, n) for j in range(1, n + 1)]


def split_lots(lots: int, levels: int) -> list[int]:
    """`lots` over `levels` levels, nearest the mid first: lots // levels each, the
    remainder one more each to the nearest.

    >>> split_lots(10, 4)
    [3, 3, 2, 2]
    >>> split_lots(2, 4)
    [1, 1, 0, 0]
    """
    q, r = divmod(lots, levels)
    return [q + (1 if j < r else 0) for j in range(levels)]


# ---------------------------------------------------------------------------------------
# The vectorised build


@dataclass(frozen=True)
class BandBook:
    """The depth rows and what the summary reports."""

    depth: pl.DataFrame  # DEPTH_SCHEMA columns, in file order
    stats: dict  # counts and the notional check, per the summary


def _mids(bands: pl.DataFrame, marks: pl.DataFrame) -> pl.DataFrame:
    """`bands` with `mid` (the last mark at or before ts, else the first mark of the
    symbol) and `mid_first` (true where the first mark stood in)."""
    marks = marks.select("symbol", pl.col("ts").alias("mark_ts"), pl.col("mark_price").alias("mid"))
    first = marks.group_by("symbol", maintain_order=True).first().select(
        "symbol", pl.col("mid").alias("first_mid"))
    joined = (bands.sort("symbol", "ts", maintain_order=True)
              .join_asof(marks.sort("symbol", "mark_ts", maintain_order=True), left_on="ts",
                         right_on="mark_ts", by="symbol", strategy="backward",
                         check_sortedness=False)  # sorted just above, within each symbol
              .join(first, on="symbol", how="left"))
    return (joined.with_columns(pl.col("mid").is_null().alias("mid_first"),
                                pl.col("mid").fill_null(pl.col("first_mid")))
            .drop("first_mid", "mark_ts").sort("order"))


def build_depth(bands: pl.DataFrame, marks: pl.DataFrame, *, levels: int,
                notional_factor: dict[str, int | None]) -> BandBook:
    """The depth rows of `bands` (checked depth_bands rows) with mids from `marks`
    (checked marks rows), `levels` levels per band. notional_factor[symbol] is K (minor
    units per tick x lot) for a linear instrument, None where the notional check does not
    apply. Pure; one polars query."""
    b = bands.select("ts", "symbol", "percentage", "depth", "notional").with_row_index("order")
    b = _mids(b, marks)
    ask = pl.col("percentage") > 0
    k = pl.col("percentage").abs()
    snapshot = ["symbol", "ts", "ask"]
    b = (b.with_columns(ask.alias("ask"), k.alias("k"))
         .sort("symbol", "ts", "ask", "k", maintain_order=True)
         .with_columns(pl.col("k").shift(1, fill_value=0).over(snapshot).alias("inner"),
                       pl.col("depth").shift(1, fill_value=0).over(snapshot).alias("depth_before"),
                       pl.col("notional").shift(1, fill_value=0).over(snapshot).alias("notional_before")))
    mid, inner, outer = pl.col("mid"), pl.col("inner"), pl.col("k")
    raw = pl.col("depth") - pl.col("depth_before")
    b = b.with_columns(
        raw.clip(lower_bound=0).alias("own"),
        (raw < 0).alias("clipped"),
        (pl.col("notional") - pl.col("notional_before")).alias("own_notional"),
        # band_ticks, both sides: `first` nearest the mid
        pl.when(pl.col("ask")).then(mid * (100 + inner) // 100 + 1)
          .otherwise(-((-(mid * (100 - inner))) // 100) - 1).alias("first"),
        pl.when(pl.col("ask")).then(mid * (100 + outer) // 100)
          .otherwise(-((-(mid * (100 - outer))) // 100)).alias("last"),
    ).with_columns(pl.when(pl.col("ask")).then(pl.col("last") - pl.col("first"))
                   .otherwise(pl.col("first") - pl.col("last")).add(1)
                   .clip(lower_bound=0).alias("m"))
    b = b.with_columns(pl.min_horizontal(pl.lit(levels, pl.Int64), pl.col("m")).alias("n"))
    b = b.with_columns((pl.col("m") <= 0).alias("no_tick"),
                       ((pl.col("m") > 0) & (pl.col("m") < levels)).alias("narrow"))

    rows = (b.filter(pl.col("n") > 0)
            .with_columns(pl.int_ranges(1, pl.col("n") + 1, dtype=pl.Int64).alias("j"))
            .explode("j"))
    run_end = -((-(pl.col("j") * pl.col("m"))) // pl.col("n"))  # ceil(j M / L)
    rows = rows.with_columns(
        pl.when(pl.col("ask")).then(pl.col("first") - 1 + run_end)
          .otherwise(pl.col("first") + 1 - run_end).alias("price"),
        (pl.col("own") // pl.col("n") + (pl.col("j") <= pl.col("own") % pl.col("n")).cast(pl.Int64))
        .alias("qty"),
    ).filter(pl.col("qty") > 0)
    side_key = pl.when(pl.col("ask")).then(pl.col("price")).otherwise(-pl.col("price"))
    depth = (rows.with_columns(side_key.alias("key"))
             .sort("ts", "symbol", "ask", "key")
             .with_row_index("seq", offset=1)
             .select(pl.col("ts").cast(pl.Int64), pl.col("seq").cast(pl.Int64), pl.col("symbol"),
                     pl.when(pl.col("ask")).then(pl.lit("ask")).otherwise(pl.lit("bid")).alias("side"),
                     pl.col("price").cast(pl.Int64), pl.col("qty").cast(pl.Int64),
                     pl.lit(True).alias("snapshot")))
    return BandBook(depth, _stats(b, rows, levels, notional_factor))


def _stats(b: pl.DataFrame, rows: pl.DataFrame, levels: int,
           notional_factor: dict[str, int | None]) -> dict:
    """Counts per symbol and the notional check (module doc)."""
    out: dict = {}
    for symbol in sorted(b["symbol"].unique().to_list()):
        sb = b.filter(pl.col("symbol") == symbol)
        sr = rows.filter(pl.col("symbol") == symbol)
        clipped = sb.filter(pl.col("clipped"))
        first_clip = clipped.sort("order").row(0, named=True) if clipped.height else None
        stats = {
            "snapshots": sb["ts"].n_unique(),
            "bands": sb.height,
            "rows": sr.height,
            "lots": int(sr["qty"].sum() or 0),
            "band_lots": int(sb["own"].sum() or 0),
            "clipped": clipped.height,
            "first_clipped": None if first_clip is None else (first_clip["ts"], first_clip["percentage"]),
            "narrow": int(sb["narrow"].sum()),
            "no_tick": int(sb["no_tick"].sum()),
            "dropped_lots": int(sb.filter(pl.col("no_tick"))["own"].sum() or 0),
            "mid_first": int(sb.unique("ts").filter(pl.col("mid_first")).height),
            "notional": None,
        }
        factor = notional_factor.get(symbol)
        if factor:
            stats["notional"] = _notional_check(sb, sr, factor)
        out[symbol] = stats
    return out


def _notional_check(sb: pl.DataFrame, sr: pl.DataFrame, factor: int) -> dict:
    """Recorded average price of each band's own lots (own notional / (own lots x K))
    against the spread's (sum p q / sum q): |difference| in bp of the mid (floats: a
    report figure, never state), and the bands whose recorded average lies outside the
    band's own price range."""
    spread = (sr.group_by("order").agg(((pl.col("price") * pl.col("qty")).sum() / pl.col("qty").sum())
                                       .alias("spread_avg")))
    x = (sb.filter((pl.col("own") > 0) & (pl.col("own_notional") > 0))
         .join(spread, on="order", how="inner")
         .with_columns((pl.col("own_notional") / (pl.col("own") * factor)).alias("recorded_avg")))
    if x.height == 0:
        return {"bands": 0}
    x = x.with_columns(((pl.col("recorded_avg") - pl.col("spread_avg")).abs() / pl.col("mid") * 10_000)
                       .alias("bp"),
                       (pl.col("recorded_avg") < pl.min_horizontal("first", "last") - 1)
                       .alias("below"),
                       (pl.col("recorded_avg") > pl.max_horizontal("first", "last") + 1)
                       .alias("above"))
    worst = x.sort("bp", descending=True).row(0, named=True)
    outside = x.filter(pl.col("below") | pl.col("above"))
    # One book cannot average higher within 1% below its mid than within 1% above it.
    inner = x.filter(pl.col("k") == 1).select("ts", "ask", "recorded_avg")
    crossed = (inner.filter(~pl.col("ask")).join(inner.filter(pl.col("ask")), on="ts", suffix="_ask")
               .filter(pl.col("recorded_avg") >= pl.col("recorded_avg_ask")).sort("ts"))
    return {"bands": x.height, "median_bp": float(x["bp"].median()), "max_bp": float(worst["bp"]),
            "worst": (worst["ts"], worst["percentage"]), "outside": outside.height,
            "outside_ts": outside["ts"].n_unique(), "crossed": crossed.height,
            "first_crossed": crossed["ts"][0] if crossed.height else None}


# ---------------------------------------------------------------------------------------
# The command


def _ours(path: Path) -> bool:
    """Was `path` (a depth.parquet) written by this command?"""
    try:
        meta = pq.read_schema(path).metadata or {}
    except (pa.ArrowInvalid, OSError):
        return False
    return meta.get(GENERATED_KEY) == GENERATED_VALUE


def _iso(ns: int) -> str:
    """UTC `YYYY-MM-DD HH:MM:SS` of ns since the epoch (a summary's time)."""
    return datetime.fromtimestamp(ns // 1_000_000_000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def run(out: Path, options: argparse.Namespace, progress: Callable[[int, int | None], None]) -> list[str]:
    """Write depth.parquet from depth_bands into dataset folder `out`; return the summary."""
    if not (out / "dataset.toml").is_file():
        raise InputError(str(out), ["not a dataset folder: dataset.toml is missing (import the "
                                    "bookDepth files with `backtest import binance` first)"])
    levels = options.levels_per_band
    if levels < 1:
        raise InputError("--levels-per-band", [f"at least 1 level per band (value: {levels})"])
    manifest = load_manifest(out)
    bands_path, marks_path = out / "depth_bands.parquet", out / "marks.parquet"
    for path, what in ((bands_path, "the bookDepth bands"), (marks_path, "the mids")):
        if not path.is_file():
            raise InputError(str(path), [f"file not found: {what} come from it (`backtest import "
                                         "binance` writes it from bookDepth and mark-price klines)"])
    symbols = set(manifest.instruments)
    band_checks = [RowCheck(~pl.col("percentage").abs().is_between(1, MAX_BAND), "percentage",
                            f"must be -{MAX_BAND}..-1 (bids) or 1..{MAX_BAND} (asks)")]
    faults = table_faults(bands_path, BANDS, known={"symbol": symbols}, extra=band_checks)
    if faults:
        raise InputError(str(bands_path), faults)
    bands = pl.read_parquet(bands_path).with_columns(pl.col("symbol").cast(pl.String))
    if options.symbol is not None:
        if options.symbol not in symbols:
            raise InputError("--symbol", [f"{options.symbol!r} is not an instrument of {manifest.path} "
                                          f"(one of {', '.join(sorted(symbols))})"])
        bands = bands.filter(pl.col("symbol") == options.symbol)
    wanted = sorted(bands["symbol"].unique().to_list())
    if not wanted:
        raise InputError(str(bands_path), [f"no rows{' of ' + options.symbol if options.symbol else ''}: "
                                           "nothing to build a book from"])
    marks = load_table(marks_path, MARKS, known={"symbol": symbols})
    marks = marks.filter(pl.col("symbol").is_in(wanted)).select("ts", "symbol", "mark_price")
    missing = [s for s in wanted if s not in set(marks["symbol"].to_list())]
    if missing:
        raise InputError(str(marks_path), [f"no mark of {s}: the mid of its bands comes from "
                                           "marks (import its mark-price klines)" for s in missing])
    depth_path = out / "depth.parquet"
    replaced = depth_path.exists()
    if replaced and not _ours(depth_path):
        raise InputError(str(depth_path), ["a depth table this command did not write (a recording's "
                                           "depth?): it is not replaced; move it away first to build "
                                           "a book from the bands"])
    progress(0, bands.height)
    factor = {s: (manifest.instruments[s].notional_factor
                  if manifest.instruments[s].kind == "linear_perpetual" else None) for s in wanted}
    book = build_depth(bands, marks, levels=levels, notional_factor=factor)
    table = book.depth.to_arrow().cast(DEPTH_SCHEMA).replace_schema_metadata(
        {GENERATED_KEY: GENERATED_VALUE})
    with rewritten_folder(out, ("depth.parquet",)) as stage:
        pq.write_table(table, stage / "depth.parquet", compression="zstd", row_group_size=65_536)
    progress(bands.height, bands.height)
    return _summary(out, book, levels, replaced)


def _summary(out: Path, book: BandBook, levels: int, replaced: bool) -> list[str]:
    lines = []
    for symbol, s in book.stats.items():
        lines.append(f"{symbol}: {s['snapshots']:,} snapshots (one per bookDepth timestamp) from "
                     f"{s['bands']:,} bands, up to {levels} levels per band -> {s['rows']:,} depth rows, "
                     f"{s['lots']:,} lots")
        lines.append(f"{symbol} mid: the last mark at or before each snapshot"
                     + (f"; {s['mid_first']:,} snapshot(s) earlier than the first mark used the first mark"
                        if s["mid_first"] else ""))
        clip = ("" if not s["clipped"] else
                f" (first at {_iso(s['first_clipped'][0])}, percentage {s['first_clipped'][1]})")
        lines.append(f"{symbol} non-monotone bands (depth_k < depth_k-1) given 0 lots: {s['clipped']:,}{clip}; "
                     f"bands narrower than {levels} ticks (one level per tick): {s['narrow']:,}; "
                     f"bands with no tick inside: {s['no_tick']:,}"
                     + (f" ({s['dropped_lots']:,} lots dropped)" if s["no_tick"] else ""))
        n = s["notional"]
        if n is None:
            lines.append(f"{symbol} notional check: skipped (not a linear instrument)")
        elif n["bands"]:
            lines.append(f"{symbol} notional check over {n['bands']:,} bands: recorded average price vs "
                         f"the spread's, median {n['median_bp']:.1f} bp of the mid, max {n['max_bp']:.1f} bp "
                         f"({_iso(n['worst'][0])}, percentage {n['worst'][1]}); {n['outside']:,} bands "
                         f"(in {n['outside_ts']:,} snapshots) whose recorded average lies outside the "
                         "band's price range around the mark")
            if n["crossed"]:
                lines.append(f"{symbol} crossed bands: {n['crossed']:,} snapshots whose -1% band averages "
                             f"at or above the +1% band (no single book does that; first at "
                             f"{_iso(n['first_crossed'])}): the recording's bid bands there are kept "
                             "as published, their lots placed below the mark all the same")
    rows = sum(s["rows"] for s in book.stats.values())
    lines.append(f"wrote depth.parquet ({rows:,} rows, snapshot = true) into {out}"
                 + (", replacing the one this command wrote before" if replaced else ""))
    return lines
