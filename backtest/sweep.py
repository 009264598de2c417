"""`backtest sweep`: every (dataset, rule set) pair as an independent `backtest run`, on a
local process pool or a Ray cluster, then one comparison table of all of them.

Why: the questions DESIGN.md asks ("what if the maintenance margin were twice as high, on
each of these days?") are many replays that share nothing. Each is one process running
`backtest.run.run_replay` into its own run folder, so they scale out without any
coordination beyond a list of tasks, and the comparison is one polars query over the run
folders' summary.json files.

Layout of the output folder DIR (docs/sweep.md has the columns):
    DIR/runs/<dataset>/<rules>/   one run folder per pair (appears only when complete)
    DIR/failures.json             the runs that failed in this sweep, with their errors
    DIR/sweep.parquet             one row per pair, sorted by (dataset, rules)
    DIR/sweep.html                the same table and one bar chart per key figure
`<dataset>` is the dataset folder's name, `<rules>` the rule file's stem, or `dataset` for
the dataset's own rules (`--rules dataset`, or no --rules at all).

Rules this module keeps:
- Determinism: a run's outputs depend only on its dataset and rules, and the table is
  built from the run folders in sorted (dataset, rules) order after all runs end, so the
  same sweep gives byte-identical sweep.parquet and sweep.html whether it ran serially
  (--jobs 1), on the pool or on Ray, in any completion order. Nothing measured by a clock
  goes into a file.
- Resume: a run is skipped when its folder holds a summary.json whose dataset_sha256 is the
  dataset's current one and a rules.toml equal to the rules it would use now. A crashed
  sweep leaves only hidden `.NAME.partial-PID` staging folders (datasets/folders.py),
  which the next run of that pair replaces.
- Failure: an exception inside one run is caught in the worker and comes back as data
  (status "failed", the error's text); the other runs go on, and the next sweep retries it.
  Bad input of the sweep itself (a missing dataset or rule file, two datasets with the same
  folder name) is an InputError before anything starts.
- Ray is optional and imported only with --ray; every node must have this project
  installed and see the datasets and DIR at the same absolute paths (a shared filesystem).
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import socket
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import polars as pl

from matching.errors import InputError

OWN_RULES = "dataset"  # the variant name (and --rules token) for the dataset's own rules
RUNS = "runs"
RAY_PIN = "ray==2.60.0"
STATUS_OK, STATUS_FAILED, STATUS_SKIPPED = "ok", "failed", "skipped"

# sweep.parquet, in column order: (name, dtype, where it comes from in summary.json).
FIGURES: tuple[tuple[str, pl.DataType, tuple[str, ...]], ...] = (
    ("instructions", pl.Int64, ("instructions",)),
    ("fills", pl.Int64, ("fills",)),
    ("margin_calls", pl.Int64, ("margin_calls",)),
    ("liquidations", pl.Int64, ("liquidation", "count")),
    ("liquidated_accounts", pl.Int64, ("liquidation", "accounts")),
    ("liquidated_notional", pl.Int64, ("liquidation", "bankruptcy_notional")),
    ("worst_slippage", pl.Int64, ("liquidation", "worst_slippage")),
    ("worst_slippage_bps", pl.Float64, ("liquidation", "worst_slippage_bps")),
    ("fund_asset", pl.String, ("liquidation", "fund_asset")),
    ("fund_opening", pl.Int64, ("liquidation", "fund_opening")),
    ("fund_low", pl.Int64, ("liquidation", "fund_low")),
    ("fund_low_ts", pl.Int64, ("liquidation", "fund_low_ts")),
    ("fund_close", pl.Int64, ("liquidation", "fund_close")),
    ("adl_count", pl.Int64, ("liquidation", "adl_count")),
    ("adl_notional", pl.Int64, ("liquidation", "adl_notional")),
)
SCHEMA: dict[str, pl.DataType] = {
    "dataset": pl.String, "rules": pl.String, "status": pl.String, "error": pl.String,
    "run": pl.String, "dataset_name": pl.String,
    **{name: dtype for name, dtype, _ in FIGURES},
    "fees": pl.Int64, "conservation_gap": pl.Int64, "outputs_sha256": pl.String,
}
# The bar charts of sweep.html: (column, title, money in the fund asset's whole units?).
CHARTS = (
    ("liquidations", "Liquidations (count)", False),
    ("liquidated_notional", "Liquidated notional at bankruptcy (whole units)", True),
    ("worst_slippage_bps", "Worst slippage from bankruptcy (bps; positive = worse)", False),
    ("fund_low", "Insurance fund low (whole units)", True),
    ("fund_close", "Insurance fund close (whole units)", True),
    ("adl_count", "ADL fills (count)", False),
    ("adl_notional", "ADL notional (whole units)", True),
    ("fees", "Fees collected (whole units)", True),
    ("margin_calls", "Margin calls (count)", False),
    ("fills", "Fills (count)", False),
)


@dataclass(frozen=True)
class SweepConfig:
    """What `backtest sweep` was asked: `rule_files` None stands for the dataset's own rules."""
    datasets: tuple[Path, ...]
    rule_files: tuple[Path | None, ...]
    out: Path
    jobs: int
    ray_address: str | None = None


@dataclass(frozen=True)
class Task:
    """One (dataset, rules) pair; paths are absolute strings so any worker can use them."""
    dataset: str           # the dataset folder's name
    rules: str             # the rule file's stem, or OWN_RULES
    dataset_path: str
    rules_path: str | None  # None: the dataset's own rules
    run: str               # the run folder, relative to DIR: runs/<dataset>/<rules>


@dataclass(frozen=True)
class SweepResult:
    table: pl.DataFrame    # what sweep.parquet holds
    statuses: dict[str, str]  # run -> ok | failed | skipped, this sweep
    parquet: Path
    html: Path
    failures: Path


def plan_sweep(cfg: SweepConfig) -> list[Task]:
    """The sweep's tasks in (dataset, rules) order; InputError (naming the argument or the
    file) for anything that would make the whole sweep meaningless."""
    problems = []
    if cfg.jobs < 1:
        problems.append(f"--jobs: {cfg.jobs}; at least 1")
    if not cfg.datasets:
        problems.append("DATASETS: give at least one dataset folder")
    if problems:
        raise InputError("backtest sweep", problems)
    from datasets.manifest import load_manifest
    from datasets.rules import read_rule_file

    datasets: dict[str, Path] = {}
    for path in cfg.datasets:
        load_manifest(path)  # raises InputError naming dataset.toml
        name = path.resolve().name
        if name in datasets and datasets[name] != path.resolve():
            problems.append(f"two datasets named {name!r}: {datasets[name]} and {path.resolve()}; "
                            "run folders are named after the dataset folder, so give each a distinct name")
        datasets[name] = path.resolve()
    variants: dict[str, Path | None] = {}
    for path in cfg.rule_files or (None,):
        if path is not None:
            read_rule_file(path)  # raises InputError: file not found, not TOML, unknown key
        name = OWN_RULES if path is None else path.stem
        if path is not None and name == OWN_RULES:
            problems.append(f"{path}: a rule file may not be named {OWN_RULES}.toml, the variant "
                            "name of the dataset's own rules; rename it")
            continue
        here = None if path is None else path.resolve()
        if name in variants and variants[name] != here:
            both = " and ".join("the dataset's own rules" if p is None else str(p) for p in (variants[name], here))
            problems.append(f"two rule sets named {name!r}: {both}; run folders are named after the "
                            f"rule file's stem ({OWN_RULES!r} is the dataset's own rules), so rename one")
        variants[name] = here
    if problems:
        raise InputError("backtest sweep", problems)
    return [Task(d, r, str(dp), None if rp is None else str(rp), f"{RUNS}/{d}/{r}")
            for d, dp in sorted(datasets.items()) for r, rp in sorted(variants.items())]


def _expected_rules(task: Task) -> str | None:
    """The rules.toml a run of `task` would write now; None if they cannot be worked out
    (the run itself will then fail and say why)."""
    from datasets.manifest import load_manifest
    from datasets.rules import dump_rules, merge_rules, read_rule_file

    try:
        rules = load_manifest(Path(task.dataset_path)).rules
        if task.rules_path is not None:
            rules = merge_rules(rules, read_rule_file(Path(task.rules_path)))
        return dump_rules(rules)
    except Exception:  # noqa: BLE001 - any fault here is the run's to report, not the plan's
        return None


def is_complete(task: Task, out: Path, dataset_sha256: str) -> bool:
    """True when DIR/<task.run> is a finished run of this dataset's current content under
    the rules the task would use now (so a changed rule file or dataset is run again)."""
    run = out / task.run
    try:
        summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
        used = (run / "rules.toml").read_text(encoding="utf-8")
    except (OSError, ValueError):
        return False
    return summary.get("dataset_sha256") == dataset_sha256 and used == _expected_rules(task)


def run_task(dataset_path: str, rules_path: str | None, run_path: str) -> dict:
    """One replay, in whichever process runs it: {"status": "ok"} or {"status": "failed",
    "error": text}. Catches every Exception so one bad run cannot stop the sweep."""
    from backtest.run import run_replay

    try:
        run_replay(Path(dataset_path), Path(run_path),
                   rules_file=None if rules_path is None else Path(rules_path))
    except Exception as exc:  # noqa: BLE001 - reported as data, see the module docstring
        return {"status": STATUS_FAILED, "error": f"{type(exc).__name__}: {exc}"}
    return {"status": STATUS_OK, "error": None}


def _failed(exc: BaseException) -> dict:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return {"status": STATUS_FAILED, "error": f"{type(exc).__name__}: {first}".rstrip(": ")}


def _execute_local(todo: list[Task], out: Path, jobs: int,
                   on_result: Callable[[Task, dict], None]) -> None:
    """Serially in this process (jobs == 1) or on a spawn-started process pool (polars'
    thread pool does not survive fork safely)."""
    if jobs == 1 or len(todo) <= 1:
        for task in todo:
            on_result(task, run_task(task.dataset_path, task.rules_path, str(out / task.run)))
        return
    with ProcessPoolExecutor(max_workers=min(jobs, len(todo)), mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(run_task, t.dataset_path, t.rules_path, str(out / t.run)): t for t in todo}
        try:
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in sorted(done, key=lambda f: futures[f].run):
                    try:
                        result = future.result()
                    except Exception as exc:  # noqa: BLE001 - a worker that died (BrokenProcessPool)
                        result = _failed(exc)
                    on_result(futures[future], result)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def _execute_ray(todo: list[Task], out: Path, address: str,
                 on_result: Callable[[Task, dict], None]) -> None:
    """Each task as a Ray task (one CPU each) on the cluster at `address`."""
    import logging

    import ray

    owned = not ray.is_initialized()
    if owned:
        try:
            ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise InputError("--ray", [f"could not connect to a Ray cluster at {address}: {exc}"]) from None
    try:
        remote = ray.remote(num_cpus=1)(run_task)
        refs = {remote.remote(t.dataset_path, t.rules_path, str(out / t.run)): t for t in todo}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                try:
                    result = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - a task or node that died
                    result = _failed(exc)
                on_result(refs[ref], result)
    finally:
        if owned:
            ray.shutdown()  # disconnects this driver; the cluster keeps running


def check_ray(address: str) -> None:
    """InputError unless ray imports and, for a host:port address, something listens there
    (ray.init itself retries for minutes). Other forms (auto, ray://...) go to Ray as they are."""
    try:
        import ray  # noqa: F401
    except ImportError:
        raise InputError("--ray", [f"ray is not installed: pip install '{RAY_PIN}' "
                                   "(or the project's `ray` extra)"]) from None
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or "/" in host:
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as exc:
        raise InputError("--ray", [f"no Ray head answers at {address}: {exc}; start one with "
                                   "`ray start --head --port=PORT` or check the address"]) from None


def _get(summary: dict, keys: tuple[str, ...]):
    for key in keys:
        if not isinstance(summary, dict):
            return None
        summary = summary.get(key)
    return summary


def _row(task: Task, status: str, error: str | None, out: Path) -> dict:
    """One row of sweep.parquet from a run folder's summary.json (figures null when failed)."""
    row = {name: None for name in SCHEMA}
    row.update(dataset=task.dataset, rules=task.rules, status=status, error=error, run=task.run)
    if status != STATUS_OK:
        return row
    summary = json.loads((out / task.run / "summary.json").read_text(encoding="utf-8"))
    row["dataset_name"] = summary.get("dataset")
    for name, _, keys in FIGURES:
        row[name] = _get(summary, keys)
    row["fees"] = (summary.get("fees_collected") or {}).get(row["fund_asset"], 0)
    gaps = [abs(v) for figures in (summary.get("conservation") or {}).values()
            for k, v in figures.items() if k.startswith("gap_")]
    row["conservation_gap"] = max(gaps, default=0)
    tables = json.dumps(summary.get("tables", {}), sort_keys=True)
    row["outputs_sha256"] = hashlib.sha256(tables.encode()).hexdigest()
    return row


def sweep_table(tasks: list[Task], failures: dict[str, str], out: Path) -> pl.DataFrame:
    """The comparison table: one query over every task's run folder (a run that failed in
    this sweep, or has no complete folder, is a `failed` row with its error)."""
    rows = []
    for task in tasks:
        if task.run in failures:
            rows.append(_row(task, STATUS_FAILED, failures[task.run], out))
        elif not (out / task.run / "summary.json").is_file():
            rows.append(_row(task, STATUS_FAILED, "no complete run folder", out))
        else:
            rows.append(_row(task, STATUS_OK, None, out))
    return (pl.LazyFrame(rows, schema=SCHEMA, orient="row")
            .sort("dataset", "rules")
            .collect())


def _units(tasks: list[Task], table: pl.DataFrame) -> dict[str, float]:
    """Per dataset: whole units per minor unit of its fund asset (for the charts)."""
    from datasets.manifest import load_manifest

    paths = {t.dataset: t.dataset_path for t in tasks}
    units = {}
    for dataset, asset in table.filter(pl.col("status") == STATUS_OK).select("dataset", "fund_asset").unique(
            maintain_order=True).iter_rows():
        spec = load_manifest(Path(paths[dataset])).assets.get(asset)
        units[dataset] = float(spec.minor_unit) if spec is not None else 1.0
    return units


def sweep_html(table: pl.DataFrame, units: dict[str, float]) -> str:
    """sweep.html: the table, then one bar chart per key figure (one bar per completed run,
    labelled dataset/rules). Inline SVG, no script: it opens offline."""
    from backtest.report import COLORS, STYLE, bar_plot

    ok = table.filter(pl.col("status") == STATUS_OK)
    labels = [f"{d}/{r}" for d, r in ok.select("dataset", "rules").iter_rows()]
    plots = []
    for column, title, money in CHARTS:
        values = [0.0 if v is None else float(v) * (units.get(d, 1.0) if money else 1.0)
                  for d, v in ok.select("dataset", column).iter_rows()]
        plots.append(bar_plot(column, title, labels, values, y_fmt=",.2f" if money or column.endswith("bps") else ",.0f",
                              x_label="run (dataset/rules)",
                              color=COLORS["bar2"] if money else COLORS["bar"]))
    shown = [c for c in table.columns if c not in ("run", "outputs_sha256")]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in shown)

    def cell(v) -> str:
        text = "" if v is None else f"{v:,}" if isinstance(v, int) else f"{v:,.2f}" if isinstance(v, float) else str(v)
        return f"<td>{html.escape(text)}</td>"

    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in table.select(shown).iter_rows())
    failed = table.filter(pl.col("status") != STATUS_OK).height
    style = STYLE.replace("max-width:800px", "max-width:none") + "td{white-space:nowrap}"
    return ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>backtest sweep</title>"
            f"<style>{style}</style></head><body><h1>backtest sweep: {table.height:,} runs, "
            f"{failed:,} failed</h1><p>Money in minor units of the fund asset in the table; "
            "charts in whole units.</p>"
            f"<table><tr>{head}</tr>{body}</table>" + "".join(plots) + "</body></html>\n")


def run_sweep(cfg: SweepConfig, *, on_plan: Callable[[int, int], None] | None = None,
              on_result: Callable[[Task, dict], None] | None = None) -> SweepResult:
    """Plan, skip what is complete, run the rest (locally or on Ray), then write
    failures.json, sweep.parquet and sweep.html. `on_plan(total, skipped)` once before the
    runs start; `on_result(task, result)` after each run (in completion order)."""
    from backtest.run import dataset_sha256

    tasks = plan_sweep(cfg)
    if cfg.ray_address is not None:
        check_ray(cfg.ray_address)
    out = cfg.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    hashes = {t.dataset: dataset_sha256(Path(t.dataset_path)) for t in tasks}
    statuses: dict[str, str] = {}
    failures: dict[str, str] = {}
    todo = []
    for task in tasks:
        if is_complete(task, out, hashes[task.dataset]):
            statuses[task.run] = STATUS_SKIPPED
        else:
            todo.append(task)
    if on_plan is not None:
        on_plan(len(tasks), len(tasks) - len(todo))

    def record(task: Task, result: dict) -> None:
        statuses[task.run] = result["status"]
        if result["status"] != STATUS_OK:
            failures[task.run] = result["error"] or "unknown error"
        if on_result is not None:
            on_result(task, result)

    if cfg.ray_address is not None:
        _execute_ray(todo, out, cfg.ray_address, record)
    else:
        _execute_local(todo, out, cfg.jobs, record)
    by_run = {t.run: t for t in tasks}
    (out / "failures.json").write_text(json.dumps(
        [{"dataset": by_run[r].dataset, "rules": by_run[r].rules, "run": r, "error": e}
         for r, e in sorted(failures.items())], indent=2) + "\n", encoding="utf-8")
    table = sweep_table(tasks, failures, out)
    parquet = out / "sweep.parquet"
    table.write_parquet(parquet, compression="zstd", statistics=False)
    page = out / "sweep.html"
    page.write_text(sweep_html(table, _units(tasks, table)), encoding="utf-8")
    return SweepResult(table, dict(sorted(statuses.items())), parquet, page, out / "failures.json")


def default_jobs() -> int:
    """--jobs default: every CPU this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)
