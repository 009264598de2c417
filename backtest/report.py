"""`report.html`: one self-contained page of a run's figures and plots.

The plots are inline SVG drawn here (no script, no web font, no network), so the file opens
offline and is byte-identical for identical runs. Floats appear only in the drawing.

Plots: mark and index price with liquidation markers; book depth near the touch (the run's
book_depth samples); insurance fund balance over time; liquidations
per minute (count and notional); ADL fills over time; slippage from bankruptcy (histogram,
basis points); the accounts that lost most (realised PnL, fees and funding from the ledger).
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import polars as pl

WIDTH, HEIGHT, PAD = 760, 240, 84
NS_PER_MIN = 60_000_000_000
COLORS = {"line": "#1f5f99", "marker": "#c0392b", "bar": "#2e7d32", "bar2": "#8e44ad", "line2": "#e67e22"}


def _scale(values: list[float], lo: float | None = None) -> tuple[float, float]:
    low = min(values) if lo is None else lo
    high = max(values)
    if high == low:
        high = low + 1
    return low, high


def _axes(title: str, x_label: str, y_lo: float, y_hi: float, y_fmt: str) -> list[str]:
    parts = [f'<text x="{PAD}" y="16" class="title">{html.escape(title)}</text>',
             f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - 8}" y2="{HEIGHT - PAD}" class="axis"/>',
             f'<line x1="{PAD}" y1="24" x2="{PAD}" y2="{HEIGHT - PAD}" class="axis"/>',
             f'<text x="{WIDTH - 8}" y="{HEIGHT - 12}" class="label" text-anchor="end">{html.escape(x_label)}</text>']
    for frac in (0.0, 0.5, 1.0):
        y = HEIGHT - PAD - frac * (HEIGHT - PAD - 24)
        value = y_lo + frac * (y_hi - y_lo)
        parts.append(f'<text x="{PAD - 4}" y="{y + 4:.1f}" class="label" text-anchor="end">{value:{y_fmt}}</text>')
    return parts


def _svg(parts: list[str], name: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
            f'width="{WIDTH}" height="{HEIGHT}" data-plot="{name}">' + "".join(parts) + "</svg>")


def _xy(x: float, y: float, x_lo: float, x_hi: float, y_lo: float, y_hi: float) -> tuple[float, float]:
    px = PAD + (x - x_lo) / (x_hi - x_lo) * (WIDTH - PAD - 8)
    py = HEIGHT - PAD - (y - y_lo) / (y_hi - y_lo) * (HEIGHT - PAD - 24)
    return px, py


def line_plot(name: str, title: str, xs: list[float], ys: list[float], *, y_fmt: str = ",.0f",
              markers: list[tuple[float, float]] = (), x_label: str = "minutes from the start",
              x_range: tuple[float, float] | None = None,
              more: list[tuple[str, list[float], list[float], str]] = (), label: str = "") -> str:
    """A line through (xs, ys), with optional red markers at (x, y); `x_range` puts
    several plots on one time axis; `more` adds lines (legend label, xs, ys, colour) on the
    same axes, and `label` names the first line in the legend."""
    if not xs:
        return _svg([f'<text x="{PAD}" y="16" class="title">{html.escape(title)}: no data</text>'], name)
    all_xs = xs + [x for _, mx, _, _ in more for x in mx]
    all_ys = ys + [y for _, _, my, _ in more for y in my]
    x_lo, x_hi = x_range if x_range and x_range[1] > x_range[0] else _scale(all_xs + [m[0] for m in markers])
    y_lo, y_hi = _scale(all_ys + [m[1] for m in markers])
    parts = _axes(title, x_label, y_lo, y_hi, y_fmt)
    for frac in (0.0, 0.5, 1.0):
        x = x_lo + frac * (x_hi - x_lo)
        px, _ = _xy(x, y_lo, x_lo, x_hi, y_lo, y_hi)
        parts.append(f'<text x="{px:.1f}" y="{HEIGHT - PAD + 14}" class="label" text-anchor="middle">{x:,.0f}</text>')
    lines = [(label, xs, ys, COLORS["line"])] + list(more)
    right = WIDTH - 8  # the legend runs right to left on the title's line, above the plot
    for legend, lx, ly, color in lines:
        points = " ".join(f"{px:.1f},{py:.1f}" for px, py in (_xy(x, y, x_lo, x_hi, y_lo, y_hi) for x, y in zip(lx, ly)))
        parts.append(f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="1.5"/>')
    for legend, _, _, color in reversed(lines):
        if legend:
            parts.append(f'<text x="{right}" y="16" class="label" text-anchor="end" '
                         f'style="fill:{color};font-weight:bold">{html.escape(legend)}</text>')
            right -= 6 * len(legend) + 14
    for x, y in markers:
        px, py = _xy(x, y, x_lo, x_hi, y_lo, y_hi)
        parts.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.5" fill="{COLORS["marker"]}" fill-opacity="0.6"/>')
    return _svg(parts, name)


def bar_plot(name: str, title: str, labels: list[str], values: list[float], *, y_fmt: str = ",.0f",
             color: str = COLORS["bar"], x_label: str = "") -> str:
    """Vertical bars, one per label (labels drawn under the first, middle and last)."""
    if not values:
        return _svg([f'<text x="{PAD}" y="16" class="title">{html.escape(title)}: no data</text>'], name)
    y_lo, y_hi = _scale([0.0] + values, lo=min(0.0, min(values)))
    parts = _axes(title, x_label, y_lo, y_hi, y_fmt)
    width = (WIDTH - PAD - 8) / len(values)
    for i, value in enumerate(values):
        x0 = PAD + i * width
        _, y_top = _xy(0, max(value, 0), 0, 1, y_lo, y_hi)
        _, y_bottom = _xy(0, min(value, 0), 0, 1, y_lo, y_hi)
        parts.append(f'<rect x="{x0 + 0.5:.1f}" y="{y_top:.1f}" width="{max(width - 1, 0.5):.1f}" '
                     f'height="{max(y_bottom - y_top, 0.5):.1f}" fill="{color}"><title>'
                     f'{html.escape(labels[i])}: {value:{y_fmt}}</title></rect>')
    for i in sorted({0, len(values) // 2, len(values) - 1}):
        parts.append(f'<text x="{PAD + (i + 0.5) * width:.1f}" y="{HEIGHT - PAD + 14}" class="label" '
                     f'text-anchor="middle">{html.escape(labels[i])}</text>')
    return _svg(parts, name)


NS_PER_S = 1_000_000_000
STYLE = ("body{font-family:sans-serif;max-width:800px;margin:2em auto;color:#222}"
         "table{border-collapse:collapse;margin-bottom:1.5em}th,td{padding:2px 10px;text-align:left;"
         "border-bottom:1px solid #ddd;font-size:13px}svg{display:block;margin:1em 0;background:#fafafa}"
         ".title{font-size:13px;font-weight:bold}.label{font-size:10px;fill:#555}.axis{stroke:#999}")


def time_unit(span_ns: int) -> tuple[int, str]:
    """The x axis unit: seconds for a replay under 10 minutes, minutes otherwise."""
    return (NS_PER_S, "seconds from the start") if span_ns < 10 * NS_PER_MIN else (NS_PER_MIN, "minutes from the start")


def time_bucket(span_ns: int) -> tuple[int, str]:
    """Bars per time bucket: a minute on a long replay, else about 30 buckets of whole seconds."""
    if span_ns >= 30 * NS_PER_MIN:
        return NS_PER_MIN, "minute"
    seconds = max(1, -(-span_ns // (30 * NS_PER_S)))
    return seconds * NS_PER_S, f"{seconds} s"


def build_report(run: Path, dataset: Path | None) -> str:
    """The report page of run folder `run` (marks from `dataset` when given)."""
    summary = json.loads((run / "summary.json").read_text())
    liq = pl.read_parquet(run / "liquidations.parquet")
    fund = pl.read_parquet(run / "insurance_fund.parquet").with_columns(pl.col("asset").cast(pl.String))
    adl = pl.read_parquet(run / "adl.parquet")
    ledger = pl.scan_parquet(run / "ledger.parquet")
    depth = pl.read_parquet(run / "book_depth.parquet") if (run / "book_depth.parquet").exists() else None
    marks = (pl.read_parquet(dataset / "marks.parquet")
             if dataset is not None and (dataset / "marks.parquet").exists() else None)
    starts = [f["ts"].min() for f in (liq, fund, adl) if f.height]
    if marks is not None and marks.height:
        starts.append(marks["ts"].min())
    start = min(starts) if starts else 0
    ends = [f["ts"].max() for f in (liq, fund, adl) if f.height]
    if marks is not None and marks.height:
        ends.append(marks["ts"].max())
    span = (max(ends) - start) if ends else 0
    unit, x_label = time_unit(span)
    bucket, bucket_label = time_bucket(span)

    def _minutes(ts: pl.Series, start: int) -> list[float]:
        return [(t - start) / unit for t in ts.to_list()]

    axis = (0.0, span / unit)

    headline = summary.get("liquidation", {})
    plots = []

    if marks is not None and marks.height:
        symbol = marks["symbol"].cast(pl.String)[0]
        series = marks.filter(pl.col("symbol").cast(pl.String) == symbol)
        points = liq.filter(pl.col("symbol") == symbol).drop_nulls("mark_price")
        index = series.drop_nulls("index_price") if "index_price" in series.columns else series.clear()
        plots.append(line_plot(
            "mark", f"{symbol} mark and index price (ticks), liquidations (red)",
            _minutes(series["ts"], start), [float(v) for v in series["mark_price"]],
            markers=list(zip(_minutes(points["ts"], start), [float(v) for v in points["mark_price"]])),
            x_label=x_label, x_range=axis, label="mark",
            more=[("index", _minutes(index["ts"], start), [float(v) for v in index["index_price"]],
                   COLORS["line2"])] if index.height else []))
    if depth is not None and depth.height:
        symbol = depth["symbol"][0]
        own_depth = depth.filter(pl.col("symbol") == symbol)
        times = _minutes(own_depth["ts"], start)
        plots.append(line_plot(
            "depth", f"{symbol} book depth within 1% of the mark (lots resting)", times,
            [float(v) for v in own_depth["bid_qty"]], x_label=x_label, x_range=axis, label="bids",
            more=[("asks", times, [float(v) for v in own_depth["ask_qty"]], COLORS["marker"])]))
    asset = headline.get("fund_asset", "USDT")
    own = fund.filter(pl.col("asset") == asset)
    opening = headline.get("fund_opening", 0)
    xs = [0.0] + _minutes(own["ts"], start) + [axis[1]]
    ys = [opening / 1e8] + [v / 1e8 for v in own["balance"]]
    ys.append(ys[-1])  # flat to the end of the replay
    plots.append(line_plot("fund", f"Insurance fund balance ({asset}, whole units)", xs, ys,
                           y_fmt=",.2f", x_label=x_label, x_range=axis))
    if liq.height:
        # Every bucket of the replay, empty ones included, so the bars are a time axis.
        buckets = pl.DataFrame({"minute": pl.int_range(0, span // bucket + 1, eager=True)})
        per_minute = (buckets.join(
            liq.with_columns(((pl.col("ts") - start) // bucket).alias("minute"))
            .group_by("minute").agg(pl.len().alias("count"),
                                    pl.col("bankruptcy_notional").sum().alias("notional")),
            on="minute", how="left").fill_null(0).sort("minute"))
        labels = [f"{m * bucket // unit}" for m in per_minute["minute"]]
        plots.append(bar_plot("liquidations_count", f"Liquidations per {bucket_label} (count)", labels,
                              [float(v) for v in per_minute["count"]], x_label=x_label))
        plots.append(bar_plot("liquidations_notional",
                              f"Liquidated notional per {bucket_label} (at bankruptcy, whole units)",
                              labels, [v / 1e8 for v in per_minute["notional"]], x_label=x_label,
                              color=COLORS["bar2"]))
        slip = liq.drop_nulls("slippage_bps")["slippage_bps"].to_list()
        if slip:
            lo, hi = min(slip), max(slip)
            width = (hi - lo) / 20 or 1.0
            counts = [0] * 20
            for v in slip:
                counts[min(19, int((v - lo) / width))] += 1
            plots.append(bar_plot("slippage", "Slippage from bankruptcy price (bps; positive = worse)",
                                  [f"{lo + i * width:.0f}" for i in range(20)], [float(c) for c in counts],
                                  x_label="bps"))
    else:
        plots.append(_svg([f'<text x="{PAD}" y="16" class="title">Liquidations: none in this run</text>'],
                          "liquidations_count"))
    if adl.height:
        per_fill = adl.sort("seq")
        cumulative, total = [], 0
        for v in per_fill["notional"]:
            total += v
            cumulative.append(total / 1e8)
        plots.append(line_plot("adl", "ADL: cumulative notional deleveraged (whole units)",
                               _minutes(per_fill["ts"], start), cumulative, y_fmt=",.0f", x_label=x_label,
                               x_range=axis))
    else:
        plots.append(_svg([f'<text x="{PAD}" y="16" class="title">ADL: none in this run</text>'], "adl"))
    losers = (ledger.filter(pl.col("kind").cast(pl.String).is_in(["realised_pnl", "fee", "funding",
                                                                    "liquidation_fee"]))
              .with_columns(pl.col("account").cast(pl.String))
              .filter(~pl.col("account").is_in(["fees", "rounding", "insurance_fund", "interest",
                                                "conversion", "market"]))
              .group_by("account").agg(pl.col("amount").sum()).sort("amount", "account").head(15)
              .collect())
    plots.append(bar_plot("losers", "Accounts that lost most (realised PnL + fees + funding, whole units)",
                          losers["account"].to_list(), [v / 1e8 for v in losers["amount"]],
                          color=COLORS["marker"]))

    rows = [("dataset", summary.get("dataset")), ("instructions", summary.get("instructions")),
            ("fills", summary.get("fills"))]
    if summary.get("replay") == "market_data":  # say what the book was, and how our orders queued
        rows[1:1] = [("replay", "market data (the recorded book is the market account's)"),
                     ("recorded depth and trade rows", summary.get("inputs", {}).get("market_rows")),
                     ("queue model", summary.get("rules", {}).get("queue_model"))]
    rows += [(f"liquidation {k}", v) for k, v in sorted(headline.items())]
    rows += [(f"conservation {a} gap", f["gap_at_last_marks"]) for a, f in sorted(summary.get("conservation", {}).items())]
    table = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(f'{v:,}' if isinstance(v, int) else str(v))}</td></tr>"
                    for k, v in rows)
    return ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>backtest report: "
            f"{html.escape(str(summary.get('dataset')))}</title><style>{STYLE}</style></head><body>"
            f"<h1>{html.escape(str(summary.get('dataset')))}</h1><table>{table}</table>"
            + "".join(plots) + "</body></html>\n")


def write_report(run: Path, dataset: Path | None) -> Path:
    path = run / "report.html"
    path.write_text(build_report(run, dataset), encoding="utf-8")
    return path
