"""`backtest diff RUN_A RUN_B`: one dataset under two rule sets, figure by figure and
table by table.

What a risk engineer asks of a rule change, answered from the two run folders alone:
- headline figures side by side with the change (B - A): fills, margin calls,
  liquidations (count, accounts, notional at bankruptcy, worst slippage), the insurance
  fund (low, when, close), ADL (fills, notional), fees collected;
- which accounts were liquidated in one run and not the other, and likewise for the
  accounts ADL deleveraged (the victims);
- the fund's path: both balance paths on one time grid (every time either changed), the
  largest gap between them and when;
- every table: rows and content hash in each run, same or different;
- the rules each run used (rules.toml), key by key where they differ.

`diff.html` overlays the two runs' plots (backtest/report.py draws them); `--json` prints
the same content as one object for CI. Runs of different datasets (their summary's
`dataset_sha256`, a hash of the input tables) are refused unless forced: a diff of two
days says nothing about a rule.
"""

from __future__ import annotations

import html
import json
import tomllib
from pathlib import Path

import polars as pl

from backtest.report import COLORS, STYLE, line_plot, time_bucket, time_unit
from matching.errors import InputError

HEADLINE = (  # (label, path into summary.json)
    ("fills", ("fills",)),
    ("margin calls", ("margin_calls",)),
    ("liquidations", ("liquidation", "count")),
    ("accounts liquidated", ("liquidation", "accounts")),
    ("liquidated notional at bankruptcy", ("liquidation", "bankruptcy_notional")),
    ("worst slippage (minor units)", ("liquidation", "worst_slippage")),
    ("fund low", ("liquidation", "fund_low")),
    ("fund low at ts", ("liquidation", "fund_low_ts")),
    ("fund close", ("liquidation", "fund_close")),
    ("ADL fills", ("liquidation", "adl_count")),
    ("ADL notional", ("liquidation", "adl_notional")),
    ("rejected orders", ("events", "rejected")),
)


RUN_TABLES = ("insurance_fund", "liquidations", "adl")


def _load_run(run: Path) -> dict:
    path = run / "summary.json"
    if not path.is_file():
        raise InputError(str(run), ["not a run folder of `backtest run`: summary.json is missing"])
    summary = json.loads(path.read_text())
    if summary.get("command") != "run":
        raise InputError(str(path), [f"command: {summary.get('command')!r}; backtest diff compares "
                                     "folders of `backtest run`"])
    missing = [f"{t}.parquet" for t in RUN_TABLES if not (run / f"{t}.parquet").is_file()]
    missing += [f"summary.json: {k}" for k in ("liquidation", "dataset_sha256") if k not in summary]
    if missing:
        raise InputError(str(run), [f"a run folder of an older version (no {', '.join(missing)}): "
                                    "replay it again with this version to diff it"])
    return summary


def _figure(summary: dict, keys: tuple[str, ...]):
    value = summary
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _delta(a, b):
    return b - a if isinstance(a, int) and isinstance(b, int) and not isinstance(a, bool) else None


def _flatten(table: dict, prefix: str = "") -> dict[str, object]:
    flat = {}
    for key, value in table.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _accounts(run: Path, table: str, column: str) -> set[str]:
    path = run / f"{table}.parquet"
    if not path.is_file():
        return set()
    return set(pl.read_parquet(path, columns=[column])[column].cast(pl.String).to_list())


def _fund_path(run: Path, asset: str, opening: int) -> pl.DataFrame:
    """The fund's balance after the last change at each ts (opening before any)."""
    frame = pl.read_parquet(run / "insurance_fund.parquet", columns=["ts", "seq", "asset", "balance"])
    frame = frame.filter(pl.col("asset").cast(pl.String) == asset).sort("ts", "seq")
    return frame.group_by("ts", maintain_order=True).agg(pl.col("balance").last())


def fund_gap(a: pl.DataFrame, b: pl.DataFrame, opening_a: int, opening_b: int) -> dict:
    """Both fund paths on the union of their change times, each starting from its opening
    balance: the largest |B - A| and when (at_ts None: at the openings, before any change)."""
    times = pl.concat([a.select("ts"), b.select("ts")])
    before = (times["ts"].min() - 1) if times.height else 0  # the openings, before any change
    a = pl.concat([pl.DataFrame({"ts": [before], "balance": [opening_a]}), a.select("ts", "balance")])
    b = pl.concat([pl.DataFrame({"ts": [before], "balance": [opening_b]}), b.select("ts", "balance")])
    grid = pl.concat([a.select("ts"), b.select("ts")]).unique().sort("ts")
    joined = (grid.join(a.rename({"balance": "a"}), on="ts", how="left")
              .join(b.rename({"balance": "b"}), on="ts", how="left")
              .with_columns(pl.col("a").forward_fill(), pl.col("b").forward_fill())
              .with_columns((pl.col("b") - pl.col("a")).alias("gap")))
    row = joined.with_columns(pl.col("gap").abs().alias("abs")).sort("abs", "ts", descending=[True, False]).head(1)
    at = int(row["ts"][0])
    return {"max_abs_gap": int(row["abs"][0]), "at_ts": None if at == before else at, "gap": int(row["gap"][0])}


def compare(run_a: Path, run_b: Path, *, force: bool = False) -> dict:
    """The diff of two run folders as one JSON-ready dict (sorted, deterministic)."""
    sa, sb = _load_run(run_a), _load_run(run_b)
    same_data = sa["dataset_sha256"] == sb["dataset_sha256"]
    if not same_data and not force:
        raise InputError(str(run_b), [
            f"runs of different datasets: {run_a} replayed {sa.get('dataset')!r} "
            f"(inputs {str(sa.get('dataset_sha256'))[:12]}), {run_b} replayed {sb.get('dataset')!r} "
            f"(inputs {str(sb.get('dataset_sha256'))[:12]}); a diff compares one dataset under two "
            "rule sets (--force to diff anyway)"])
    figures = []
    for label, keys in HEADLINE:
        a, b = _figure(sa, keys), _figure(sb, keys)
        timestamp = label.endswith(" ts")  # a time, not an amount: no delta
        figures.append({"figure": label, "a": a, "b": b, "delta": None if timestamp else _delta(a, b)})
    for asset in sorted(set(sa.get("fees_collected", {})) | set(sb.get("fees_collected", {}))):
        a, b = sa.get("fees_collected", {}).get(asset), sb.get("fees_collected", {}).get(asset)
        figures.append({"figure": f"fees collected ({asset})", "a": a, "b": b, "delta": _delta(a, b)})

    liq_a, liq_b = _accounts(run_a, "liquidations", "account"), _accounts(run_b, "liquidations", "account")
    adl_a, adl_b = _accounts(run_a, "adl", "account"), _accounts(run_b, "adl", "account")
    la, lb = sa["liquidation"], sb["liquidation"]
    asset = la["fund_asset"]
    opening_a, opening_b = la["fund_opening"], lb["fund_opening"]
    if lb["fund_asset"] != asset:  # amounts in two assets: no difference to take
        gap = {"max_abs_gap": None, "at_ts": None, "gap": None,
               "note": f"the funds hold different assets: A {asset}, B {lb['fund_asset']}"}
        for f in figures:
            if f["figure"].startswith("fund "):
                f["delta"] = None
    else:
        gap = fund_gap(_fund_path(run_a, asset, opening_a), _fund_path(run_b, asset, opening_b),
                       opening_a, opening_b)

    tables = []
    ta, tb = sa.get("tables", {}), sb.get("tables", {})
    for name in sorted(set(ta) | set(tb)):
        a, b = ta.get(name), tb.get(name)
        tables.append({"table": name, "rows_a": a and a["rows"], "rows_b": b and b["rows"],
                       "same": a is not None and b is not None and a["sha256"] == b["sha256"]})
    rules_a, rules_b = (_flatten(tomllib.loads((r / "rules.toml").read_text())) if (r / "rules.toml").is_file()
                        else {} for r in (run_a, run_b))
    rules = [{"key": k, "a": rules_a.get(k), "b": rules_b.get(k)}
             for k in sorted(set(rules_a) | set(rules_b)) if rules_a.get(k) != rules_b.get(k)]
    return {
        "a": str(run_a), "b": str(run_b), "dataset_a": sa.get("dataset"), "dataset_b": sb.get("dataset"),
        "same_dataset": same_data,
        "figures": figures,
        "liquidated": {"only_a": sorted(liq_a - liq_b), "only_b": sorted(liq_b - liq_a),
                       "both": len(liq_a & liq_b)},
        "adl_victims": {"only_a": sorted(adl_a - adl_b), "only_b": sorted(adl_b - adl_a),
                        "both": len(adl_a & adl_b)},
        "fund": {"asset": asset, **gap},
        "tables": tables,
        "rules": rules,
    }


def _fmt(value, figure: str = "") -> str:
    if value is None:
        return ""
    if isinstance(value, int) and not isinstance(value, bool) and not figure.endswith(" ts"):
        return f"{value:,}"
    return html.escape(str(value))


def fund_text(fund: dict) -> str:
    """The fund gap in words (the page and the command line)."""
    if fund["gap"] is None:
        return fund["note"]
    when = "at the opening balances" if fund["at_ts"] is None else f"at ts {fund['at_ts']}"
    return f"largest gap B - A: {fund['gap']:+,} {fund['asset']} minor units, {when}"


def _signed(delta: int | None) -> str:
    return "" if delta is None else f"{delta:+,}"


def _names(accounts: list[str], limit: int = 40) -> str:
    shown = ", ".join(accounts[:limit])
    more = f" and {len(accounts) - limit:,} more" if len(accounts) > limit else ""
    return html.escape(shown + more) if accounts else "none"


def build_diff_html(diff: dict, run_a: Path, run_b: Path) -> str:
    """diff.html: the figures and lists of `diff`, and the two runs' series overlaid."""
    label_a, label_b = f"A: {run_a.name}", f"B: {run_b.name}"
    fund_a = pl.read_parquet(run_a / "insurance_fund.parquet").with_columns(pl.col("asset").cast(pl.String))
    fund_b = pl.read_parquet(run_b / "insurance_fund.parquet").with_columns(pl.col("asset").cast(pl.String))
    liq_a, liq_b = pl.read_parquet(run_a / "liquidations.parquet"), pl.read_parquet(run_b / "liquidations.parquet")
    adl_a, adl_b = pl.read_parquet(run_a / "adl.parquet"), pl.read_parquet(run_b / "adl.parquet")
    depth_a, depth_b = (pl.read_parquet(r / "book_depth.parquet") if (r / "book_depth.parquet").is_file() else None
                        for r in (run_a, run_b))
    asset = diff["fund"]["asset"]
    sa, sb = (json.loads((r / "summary.json").read_text()) for r in (run_a, run_b))
    times = [f["ts"] for f in (fund_a, fund_b, liq_a, liq_b, adl_a, adl_b, depth_a, depth_b)
             if f is not None and f.height]
    start = min(int(t.min()) for t in times) if times else 0
    end = max(int(t.max()) for t in times) if times else 0
    span = end - start
    unit, x_label = time_unit(span)
    axis = (0.0, span / unit)

    def x(ts: pl.Series) -> list[float]:
        return [(t - start) / unit for t in ts.to_list()]

    def fund_series(frame: pl.DataFrame, figures: dict) -> tuple[list[float], list[float]]:
        own = frame.filter(pl.col("asset") == figures["fund_asset"])
        xs = [0.0] + x(own["ts"]) + [axis[1]]
        ys = [figures["fund_opening"] / 1e8] + [v / 1e8 for v in own["balance"]]
        return xs, ys + [ys[-1]]

    plots = []
    fa, fb = fund_series(fund_a, sa["liquidation"]), fund_series(fund_b, sb["liquidation"])
    assets = asset if sb["liquidation"]["fund_asset"] == asset else f"A {asset}, B {sb['liquidation']['fund_asset']}"
    plots.append(line_plot("fund", f"Insurance fund balance ({assets}, whole units)", fa[0], fa[1],
                           y_fmt=",.2f", x_label=x_label, x_range=axis, label=label_a,
                           more=[(label_b, fb[0], fb[1], COLORS["line2"])]))
    bucket, bucket_label = time_bucket(span)
    buckets = span // bucket + 1

    def per_bucket(frame: pl.DataFrame) -> list[float]:
        counts = [0.0] * buckets
        for t in frame["ts"].to_list():
            counts[(t - start) // bucket] += 1
        return counts

    centres = [(i + 0.5) * bucket / unit for i in range(buckets)]
    plots.append(line_plot("liquidations_count", f"Liquidations per {bucket_label} (count)",
                           centres, per_bucket(liq_a), x_label=x_label, x_range=axis, label=label_a,
                           more=[(label_b, centres, per_bucket(liq_b), COLORS["line2"])]))

    def cumulative(frame: pl.DataFrame) -> tuple[list[float], list[float]]:
        frame = frame.sort("seq")
        xs, ys, total = [0.0], [0.0], 0
        for t, v in zip(x(frame["ts"]), frame["notional"].to_list()):
            total += v
            xs.append(t)
            ys.append(total / 1e8)
        return xs + [axis[1]], ys + [ys[-1]]

    ca, cb = cumulative(adl_a), cumulative(adl_b)
    plots.append(line_plot("adl", "ADL: cumulative notional deleveraged (whole units)", ca[0], ca[1],
                           x_label=x_label, x_range=axis, label=label_a,
                           more=[(label_b, cb[0], cb[1], COLORS["line2"])]))
    if depth_a is not None and depth_b is not None and depth_a.height and depth_b.height:
        symbol = min(depth_a["symbol"].unique().to_list())  # one symbol: the first by name
        da, db = (d.filter(pl.col("symbol") == symbol) for d in (depth_a, depth_b))
        plots.append(line_plot("depth", f"{symbol} bid lots within 1% of the mark", x(da["ts"]),
                               [float(v) for v in da["bid_qty"]], x_label=x_label, x_range=axis,
                               label=label_a, more=[(label_b, x(db["ts"]),
                                                     [float(v) for v in db["bid_qty"]], COLORS["line2"])]))

    head = "".join(
        f"<tr><th>{html.escape(f['figure'])}</th><td>{_fmt(f['a'], f['figure'])}</td><td>{_fmt(f['b'], f['figure'])}</td>"
        f"<td>{_signed(f['delta'])}</td></tr>" for f in diff["figures"])
    tables = "".join(
        f"<tr><th>{html.escape(t['table'])}</th><td>{_fmt(t['rows_a'])}</td><td>{_fmt(t['rows_b'])}</td>"
        f"<td>{'same' if t['same'] else 'differs'}</td></tr>" for t in diff["tables"])
    rules = "".join(f"<tr><th>{html.escape(r['key'])}</th><td>{html.escape(json.dumps(r['a']))}</td>"
                    f"<td>{html.escape(json.dumps(r['b']))}</td></tr>" for r in diff["rules"]) or \
        "<tr><td colspan=3>the same rules</td></tr>"
    fund = diff["fund"]
    liq, adl = diff["liquidated"], diff["adl_victims"]
    warn = "" if diff["same_dataset"] else "<p><b>Warning: the two runs replayed different datasets (--force).</b></p>"
    body = (
        f"<h1>diff: {html.escape(str(run_a))} vs {html.escape(str(run_b))}</h1>{warn}"
        f"<p>dataset: {html.escape(str(diff['dataset_a']))}</p>"
        "<h2>Headline figures</h2><table><tr><th></th><th>A</th><th>B</th><th>B - A</th></tr>"
        f"{head}</table>"
        f"<h2>Rules that differ</h2><table><tr><th>key</th><th>A</th><th>B</th></tr>{rules}</table>"
        f"<h2>Accounts liquidated</h2><p>in both: {liq['both']:,}; only in A ({len(liq['only_a']):,}): "
        f"{_names(liq['only_a'])}; only in B ({len(liq['only_b']):,}): {_names(liq['only_b'])}</p>"
        f"<h2>ADL victims</h2><p>in both: {adl['both']:,}; only in A ({len(adl['only_a']):,}): "
        f"{_names(adl['only_a'])}; only in B ({len(adl['only_b']):,}): {_names(adl['only_b'])}</p>"
        f"<h2>Insurance fund</h2><p>{html.escape(fund_text(fund))}</p>"
        + "".join(plots)
        + f"<h2>Tables</h2><table><tr><th></th><th>rows A</th><th>rows B</th><th></th></tr>{tables}</table>")
    return ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>backtest diff</title>"
            f"<style>{STYLE}</style></head><body>{body}</body></html>\n")


def write_diff(run_a: Path, run_b: Path, out: Path, *, force: bool = False) -> dict:
    """Compare, write diff.html to `out`, return the diff."""
    diff = compare(run_a, run_b, force=force)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    partial.write_text(build_diff_html(diff, run_a, run_b), encoding="utf-8")
    partial.replace(out)
    return diff
