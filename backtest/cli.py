"""The `backtest` command. Data goes to stdout, progress and errors to stderr.

Exit status: 0 success, 1 a run that failed, 2 bad input or usage (the message names the
file, and the row and column where there is one).
"""

from __future__ import annotations

import argparse
import importlib
import json
from collections.abc import Callable, Sequence
from typing import Any
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from matching.errors import BacktestError, InputError

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2

DESCRIPTION = """\
Exchange matching and clearing backtester: replays a day of orders (or recorded market
data) through a deterministic price-time matcher. Same inputs, byte-identical outputs.
"""


@dataclass(frozen=True)
class Config:
    command: str
    dataset: Path | None = None
    out: Path | None = None
    kind: str = "realistic"
    n: int = 100_000
    seed: int = 1
    rounds: int = 3
    json: bool = False
    what: str = "orders"
    clearing: bool = False
    accounts: int = 500
    rules: Path | None = None
    hours: float = 4.0


def _parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(prog="backtest", description=DESCRIPTION, formatter_class=fmt)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    g = sub.add_parser("generate", help="write a synthetic dataset folder", formatter_class=fmt,
                       description="Write a deterministic synthetic dataset folder.",
                       epilog="example:\n  backtest generate orders data/orders-1m --n 1000000 --seed 7")
    gsub = g.add_subparsers(dest="what", required=True, metavar="WHAT")
    go = gsub.add_parser("orders", formatter_class=fmt,
                         help="an order stream for the matcher (dataset.toml + orders.parquet)",
                         description="An order stream: realistic (55%% adds near the touch, 35%% "
                                     "cancels, 5%% amends, 5%% marketable) or adversarial (deep "
                                     "books swept level by level). Same seed, same bytes.",
                         epilog="example:\n  backtest generate orders data/demo --n 200000")
    go.add_argument("out", type=Path, metavar="OUT", help="dataset folder to write")
    go.add_argument("--kind", choices=("realistic", "adversarial"), default="realistic")
    go.add_argument("--n", type=int, default=100_000, help="instructions (default 100000)")
    go.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    go.add_argument("--accounts", type=int, default=500, help="accounts placing orders (default 500)")
    go.add_argument("--clearing", action="store_true",
                    help="also write what `backtest run` clears with: accounts (all funded), "
                         "positions (every account holds one), marks, funding, premium_index, "
                         "transfers, and margin and fee rules in dataset.toml")

    gc_ = gsub.add_parser("crash-day", formatter_class=fmt,
                          help="the synthetic crash day: a calm book, a 25%% sell-off in 15 "
                               "minutes, a partial recovery; leveraged accounts, marks, "
                               "funding, an insurance fund",
                          description="The deterministic synthetic crash day `make demo` "
                                      "replays, over --hours (default 4): the realistic order "
                                      "stream from --accounts accounts, calm for 40%% of the "
                                      "span, then a sell-off of 25%% in 15 minutes (makers pull "
                                      "their bids, sellers hit what is left; 30%% of the "
                                      "instructions) and a recovery of 45%% of the fall. Every "
                                      "account funded at 1x..50x (a stated distribution, "
                                      "datasets/generate.py CRASH_LEVERAGE) and holding a "
                                      "position; a mark per second with a lagging index; "
                                      "hourly funding; transfers; a 50,000 USDT insurance "
                                      "fund and sweep liquidation. Same seed, same bytes.",
                          epilog="examples:\n  backtest generate crash-day data/crash\n"
                                 "  backtest generate crash-day data/day24 --hours 24 --n 5000000")
    gc_.add_argument("out", type=Path, metavar="OUT", help="dataset folder to write")
    gc_.add_argument("--n", type=int, default=1_000_000, help="instructions (default 1000000)")
    gc_.add_argument("--accounts", type=int, default=2_000, help="accounts (default 2000)")
    gc_.add_argument("--hours", type=float, default=4.0, help="the day's span in hours (default 4)")
    gc_.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    _add_population(gsub, fmt)
    _add_depth(gsub, fmt)

    v = sub.add_parser("validate", help="check a dataset folder, replay nothing", formatter_class=fmt,
                       description="Every check a replay makes before it starts, and nothing "
                                   "replayed: dataset.toml (instruments, assets, rules) and every "
                                   "table present. Every fault is listed with file, row (1-based) "
                                   "and column; exit status 2 if there is any.",
                       epilog="example:\n  backtest validate data/crash-day")
    v.add_argument("dataset", type=Path, metavar="DATASET")

    cb = sub.add_parser("check-book", help="replay depth alone: does it reproduce the recorded top of book?",
                        formatter_class=fmt,
                        description="""\
Replay DATASET/depth.parquet alone (no orders, no trades) through the market-data book
(matching/market.py) and compare the replayed best bid and ask, price and size, with the
recording:
  (a) by update id: each recorded_book_ticker row whose update_id is a depth_messages
      update_id, right after that message's last depth row. Both describe the book after
      the same venue update: every difference is a replay error, 100% is expected;
  (b) by time: every recorded_book_ticker row against the book after all depth rows with
      ts <= its ts. The two streams are stamped independently (a depth message aggregates
      updates and is stamped after them), so this rate is low on a busy book; the report
      classes each ticker by its update id against the last depth update applied and
      measures how much later the depth stream delivers a ticker's update.
Without recorded_book_ticker, each snapshot's own top of book is the reference ("no
bookTicker: top of book per snapshot only"). The pass is timed: depth rows per second
with the comparisons; --bench N times the replay alone. Exit status 0 when the check ran
(whatever the rates), 2 on bad input (file, row and column named). docs/market-data.md
explains the readings.""",
                        epilog="examples:\n"
                               "  backtest import binance ../shared/data/binance-usdm-ws-hftbacktest/"
                               "btcusdt_20240808.gz data/btc\n"
                               "  backtest check-book data/btc\n"
                               "  backtest check-book data/btc --json\n"
                               "  backtest check-book data/depth-day --bench 3")
    cb.add_argument("dataset", type=Path, metavar="DATASET")
    cb.add_argument("--json", action="store_true", help="print the report as one JSON object")
    cb.add_argument("--bench", type=int, default=0, metavar="ROUNDS",
                    help="only time the depth-only replay (no comparison), ROUNDS times, and "
                         "report depth rows per second (median and best)")

    _add_importers(sub, fmt)

    r = sub.add_parser("run", help="the whole replay: pre-trade checks, matching, clearing, liquidation",
                       formatter_class=fmt,
                       description="Replay DATASET (orders, marks, funding or premium_index, "
                                   "transfers, accounts, positions) through pre-trade checks, "
                                   "the matcher and clearing: fees, positions, realised PnL, "
                                   "funding, margin checks, liquidation into the same book "
                                   "(rules.liquidation.execution), the insurance fund and ADL. "
                                   "Writes fills, order_events, book_final, ledger, funding, "
                                   "margin_calls, liquidations, adl, insurance_fund, "
                                   "transfer_events, accounts_final, positions_final, rules.toml "
                                   "and summary.json (headline figures, the conservation check, "
                                   "a content hash per table) into RUN, which appears only when "
                                   "complete. docs/run.md describes every table. A dataset with "
                                   "depth (and trades) is a market-data replay: the recorded book "
                                   "is the `market` account's liquidity, our orders queue in it and "
                                   "liquidations sweep it (docs/run.md, \"Market-data replay\"; "
                                   "rules.market.queue_model).",
                       epilog="examples:\n  backtest generate crash-day data/crash\n"
                              "  backtest run data/crash --out runs/crash\n"
                              "  backtest run data/crash --out runs/crash-ioc --rules examples/ioc.toml\n"
                              "  make crash-2025-10-10    # a market-data replay of a real crash day "
                              "(examples/crash-2025-10-10)")
    r.add_argument("dataset", type=Path, metavar="DATASET")
    r.add_argument("--out", type=Path, required=True, metavar="RUN", help="run folder to write")
    r.add_argument("--rules", type=Path, metavar="RULES.toml",
                   help="override keys of the dataset's [rules] (tables merge key by key, "
                        "arrays such as tier tables are replaced); the rules the run used "
                        "are written to RUN/rules.toml")

    m = sub.add_parser("match", help="the matcher alone over a dataset's orders", formatter_class=fmt,
                       description="Replay DATASET/orders.parquet through the matcher (no clearing) "
                                   "and write fills, order_events, book_final and summary.json "
                                   "into RUN. RUN appears only when complete.",
                       epilog="example:\n  backtest match data/demo --out runs/demo-match")
    m.add_argument("dataset", type=Path, metavar="DATASET")
    m.add_argument("--out", type=Path, required=True, metavar="RUN", help="run folder to write")

    rp = sub.add_parser("report", help="(re)write RUN/report.html", formatter_class=fmt,
                        description="Write RUN/report.html from the run folder's tables: one "
                                    "self-contained page (inline SVG, no script, opens offline) "
                                    "with the headline figures, the mark with liquidation "
                                    "markers (marks from --dataset), the insurance fund, "
                                    "liquidations per time bucket, slippage, ADL and the "
                                    "accounts that lost most. `backtest run` writes it already.",
                        epilog="example:\n  backtest report runs/crash --dataset data/crash")
    rp.add_argument("run", type=Path, metavar="RUN")
    rp.add_argument("--dataset", type=Path, metavar="DATASET", help="for the mark price series")

    d = sub.add_parser("diff", help="one dataset under two rule sets: what changed", formatter_class=fmt,
                       description="Compare two run folders of one dataset (RUN_A, RUN_B): the "
                                   "headline figures side by side with B - A; the accounts "
                                   "liquidated, and the accounts ADL hit, in one run and not the "
                                   "other; the largest gap between the two insurance fund paths; "
                                   "the rules that differ; every table's rows and whether its "
                                   "content is the same. Writes diff.html (the two runs' plots "
                                   "overlaid). Runs of different datasets are refused unless "
                                   "--force.",
                       epilog="example:\n  backtest run data/crash --out runs/a\n"
                              "  backtest run data/crash --out runs/b --rules examples/strict.toml\n"
                              "  backtest diff runs/a runs/b --out runs/diff.html")
    d.add_argument("run_a", type=Path, metavar="RUN_A")
    d.add_argument("run_b", type=Path, metavar="RUN_B")
    d.add_argument("--out", type=Path, metavar="DIFF.html",
                   help="where to write the page (default: diff.html beside RUN_B)")
    d.add_argument("--json", action="store_true", help="print the diff as one JSON object (for CI)")
    d.add_argument("--force", action="store_true", help="diff runs of different datasets anyway")

    sw = sub.add_parser("sweep", help="every dataset x rule set as independent runs, one comparison table",
                        formatter_class=fmt,
                        description="Run `backtest run` for every (DATASET, rule set) pair into "
                                    "DIR/runs/<dataset folder name>/<rule file stem>/ on a local "
                                    "process pool (--jobs) or a Ray cluster (--ray). A run already "
                                    "complete in DIR (same dataset content, same rules) is skipped, "
                                    "so a crashed sweep resumes; a run that fails is reported in "
                                    "DIR/failures.json and the others go on. Then writes "
                                    "DIR/sweep.parquet (one row per run: status and headline "
                                    "figures, sorted by dataset and rules) and DIR/sweep.html. The "
                                    "files are byte-identical however the runs were scheduled. "
                                    "Exit status 1 if any run failed. docs/sweep.md has the columns.",
                        epilog="examples:\n"
                               "  backtest sweep data/day1 data/day2 --rules dataset examples/strict.toml "
                               "examples/ioc.toml --out runs/sweep\n"
                               "  backtest sweep data/day* --rules examples/strict.toml --out runs/sweep "
                               "--ray 10.0.0.5:6379")
    sw.add_argument("datasets", type=Path, nargs="+", metavar="DATASET")
    sw.add_argument("--rules", dest="rule_files", nargs="+", default=[], metavar="RULES.toml",
                    help="rule files, each a variant named after its stem; the word `dataset` "
                         "stands for the dataset's own rules (the only variant without --rules)")
    sw.add_argument("--out", type=Path, required=True, metavar="DIR", help="the sweep folder")
    sw.add_argument("--jobs", type=int, default=None, metavar="N",
                    help="local worker processes (default: the CPUs this process may use; 1 runs "
                         "serially in this process)")
    sw.add_argument("--ray", dest="ray_address", metavar="ADDRESS",
                    help="run on the Ray cluster at ADDRESS (host:port of its head) instead of the "
                         "local pool; needs the `ray` extra, and every node needs this project "
                         "and the same paths")

    b = sub.add_parser("bench", help="throughput figures for the README", formatter_class=fmt,
                       description="Matcher-alone instructions per second (orders loaded before "
                                   "the clock starts; median of --rounds), `backtest match` end "
                                   "to end, and `backtest run` end to end and its replay loop "
                                   "alone, loaded like the matcher (when the dataset has margin "
                                   "rules), and where the two end-to-end runs spent their wall "
                                   "time: check, read, match or replay, write (the main "
                                   "thread's share), finish. Without --dataset: a generated realistic "
                                   "stream of 1,000,000 instructions with clearing tables "
                                   "(2,000 accounts, each holding a position).",
                       epilog="examples:\n  backtest bench --json\n"
                              "  backtest bench --dataset data/demo --rounds 5")
    b.add_argument("--dataset", type=Path, metavar="DATASET")
    b.add_argument("--rounds", type=int, default=3)
    b.add_argument("--n", type=int, default=1_000_000, help="generated stream size without --dataset")
    b.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def _add_population(gsub, fmt) -> None:
    try:
        population = importlib.import_module("datasets.population")
    except ModuleNotFoundError as exc:
        if exc.name != "datasets.population":
            raise
        return
    gp = gsub.add_parser("population", help=population.HELP, formatter_class=fmt,
                         description=population.DESCRIPTION, epilog=population.EPILOG)
    gp.add_argument("out", type=Path, metavar="OUT", help="dataset folder to write into")
    population.add_arguments(gp)


def _add_depth(gsub, fmt) -> None:
    """`generate depth` (a book from depth bands) and `generate depth-day` (a synthetic
    day of depth at venue message rates)."""
    from datasets import bands, depth_day

    gd = gsub.add_parser("depth", help=bands.HELP, formatter_class=fmt,
                         description=bands.DESCRIPTION, epilog=bands.EPILOG)
    gd.add_argument("out", type=Path, metavar="DATASET", help="dataset folder to write depth.parquet into")
    bands.add_arguments(gd)
    gdd = gsub.add_parser("depth-day", help=depth_day.HELP, formatter_class=fmt,
                          description=depth_day.DESCRIPTION, epilog=depth_day.EPILOG)
    gdd.add_argument("out", type=Path, metavar="OUT", help="dataset folder to write")
    depth_day.add_arguments(gdd)


def _add_importers(sub, fmt) -> None:
    from datasets.importers import importers

    found = importers()
    imp = sub.add_parser("import", help="a dataset folder from a public format", formatter_class=fmt,
                         description="Turn a public market-data format into a dataset folder "
                                     "(dataset.toml and Parquet tables), streaming with bounded "
                                     "memory. Prices and sizes convert to ticks and lots "
                                     "exactly; an off-grid value is an error naming file, row "
                                     "and column. `backtest import KIND --help` for each.",
                         epilog="\n".join(["examples:"] + [f"  {m.EPILOG.strip()}" for m in found.values()]))
    isub = imp.add_subparsers(dest="kind", required=True, metavar="KIND")
    for kind, module in found.items():
        ip = isub.add_parser(kind, help=module.HELP, formatter_class=fmt,
                             description=module.DESCRIPTION, epilog=f"example:\n  {module.EPILOG.strip()}")
        ip.add_argument("src", type=Path, metavar="SRC", help="the source file or folder")
        ip.add_argument("out", type=Path, metavar="OUT", help="dataset folder to write")
        module.add_arguments(ip)


def _config(ns: argparse.Namespace) -> Config:
    return Config(
        command=ns.command,
        dataset=getattr(ns, "dataset", None),
        out=getattr(ns, "out", None) or getattr(ns, "run", None),
        kind=getattr(ns, "kind", "realistic"),
        n=getattr(ns, "n", 100_000),
        seed=getattr(ns, "seed", 1),
        rounds=getattr(ns, "rounds", 3),
        json=getattr(ns, "json", False),
        what=getattr(ns, "what", "orders"),
        clearing=getattr(ns, "clearing", False),
        accounts=getattr(ns, "accounts", 500),
        rules=getattr(ns, "rules", None),
        hours=getattr(ns, "hours", 4.0),
    )


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), console=console,
                    transient=True)


def _with_progress(err: Console, label: str, job: Callable[..., Any]) -> Any:
    """Run `job(progress=tick)` under a rich progress bar: rows or instructions per second and,
    when the job passes one, the simulated time reached."""
    with _progress(err) as progress:
        task = progress.add_task(label, total=None, rate="")

        def tick(done: int, total: int, ts: int | None = None) -> None:
            elapsed = progress.tasks[task].elapsed or 1e-9
            rate = f"{done / elapsed:,.0f}/s"
            if ts is not None:  # the simulated time reached, UTC
                clock = datetime.fromtimestamp(ts // 1_000_000_000, tz=timezone.utc)
                rate += f"  sim {clock:%Y-%m-%d %H:%M:%S}"
            progress.update(task, completed=done, total=total, rate=rate)

        return job(progress=tick)


def _cmd_match(cfg: Config, err: Console) -> int:
    from backtest.match import run_match

    assert cfg.dataset is not None and cfg.out is not None
    summary = _with_progress(err, "matching", lambda progress: run_match(cfg.dataset, cfg.out, progress=progress))
    print(f"matched {summary['instructions']:,} instructions: {summary['fills']:,} fills, "
          f"{summary['order_events']:,} order events, {summary['resting_orders']:,} orders "
          f"resting on {summary['book_levels']:,} levels")
    print(f"events: {', '.join(f'{k} {v:,}' for k, v in summary['events'].items())}")
    print(f"run folder: {cfg.out}")
    return EXIT_OK


def _cmd_run(cfg: Config, err: Console) -> int:
    from backtest.run import run_replay

    assert cfg.dataset is not None and cfg.out is not None
    summary = _with_progress(err, "replaying", lambda progress: run_replay(
        cfg.dataset, cfg.out, rules_file=cfg.rules, progress=progress))
    liq = summary["liquidation"]
    print(f"replayed {summary['instructions']:,} instructions: {summary['fills']:,} fills, "
          f"{liq['count']:,} liquidations, {liq['adl_count']:,} ADL fills")
    print(f"insurance fund ({liq['fund_asset']} minor units): opening {liq['fund_opening']:,}, "
          f"low {liq['fund_low']:,}, close {liq['fund_close']:,}")
    for asset, figures in summary["conservation"].items():
        state = "holds" if figures["gap_at_last_marks"] == figures["gap_entry_cost"] == 0 else "BROKEN"
        print(f"conservation {asset}: {state} (gap {figures['gap_at_last_marks']} minor units)")
    print(f"run folder: {cfg.out}; report: {cfg.out / 'report.html'}")
    return EXIT_OK


def _cmd_report(cfg: Config) -> int:
    from backtest.report import write_report

    assert cfg.out is not None
    if not (cfg.out / "summary.json").is_file():
        raise InputError(str(cfg.out), ["not a run folder: summary.json is missing"])
    print(f"report: {write_report(cfg.out, cfg.dataset)}")
    return EXIT_OK


def _cmd_bench(cfg: Config) -> int:
    from backtest.bench import run_bench

    result = run_bench(cfg.dataset, rounds=cfg.rounds, n=cfg.n)
    if cfg.json:
        print(json.dumps(result, sort_keys=True))
    else:
        print(f"dataset {result['dataset']}: {result['messages']:,} instructions")
        print(f"matcher alone: {result['matcher_msgs_per_s']:,} msg/s median of {cfg.rounds} "
              f"(best {result['matcher_msgs_per_s_best']:,}; compiled: {result['matcher_compiled']})")
        print(f"match pipeline (read, match, write): {result['match_pipeline_msgs_per_s']:,} msg/s")
        if result["replay_events_per_s"] is not None:
            print(f"run (read, pre-trade, match, clear, write): {result['replay_events_per_s']:,} msg/s "
                  f"= {result['replay_to_matcher']:.3f} x the matcher alone, "
                  f"{result['replay_to_match_pipeline']:.3f} x the match pipeline")
            print(f"replay loop alone (loaded, nothing written): {result['replay_loop_msgs_per_s']:,} msg/s "
                  f"= {result['replay_loop_to_matcher']:.3f} x the matcher alone")
        for name, key in (("match pipeline", "match_pipeline_stages_s"), ("run", "replay_stages_s")):
            if result[key] is not None:
                print(f"{name} stages (wall s): " + ", ".join(f"{k} {v:.2f}" for k, v in result[key].items()))
    return EXIT_OK


def _cmd_sweep(ns: argparse.Namespace, err: Console) -> int:
    from backtest.sweep import OWN_RULES, STATUS_OK, SweepConfig, default_jobs, run_sweep

    cfg = SweepConfig(datasets=tuple(ns.datasets),
                      rule_files=tuple(None if r == OWN_RULES else Path(r) for r in ns.rule_files),
                      out=ns.out, jobs=default_jobs() if ns.jobs is None else ns.jobs,
                      ray_address=ns.ray_address)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[counts]}"), TimeElapsedColumn(), console=err,
                  transient=True) as progress:
        bar = progress.add_task("sweep", total=None, counts="")
        counts = {"done": 0, "failed": 0, "skipped": 0}

        def show() -> None:
            progress.update(bar, completed=counts["done"] + counts["failed"] + counts["skipped"],
                            counts=f"{counts['done']} done, {counts['failed']} failed, "
                                   f"{counts['skipped']} skipped")

        def on_plan(total: int, skipped: int) -> None:
            counts["skipped"] = skipped
            progress.update(bar, total=total)
            show()

        def on_result(task, result: dict) -> None:
            counts["done" if result["status"] == STATUS_OK else "failed"] += 1
            if result["status"] != STATUS_OK:
                err.print(f"[red]run failed:[/red] {escape(task.run)}: {escape(result['error'] or '')}",
                          highlight=False, soft_wrap=True)
            show()

        result = run_sweep(cfg, on_plan=on_plan, on_result=on_result)
    statuses = list(result.statuses.values())
    failed = statuses.count("failed")
    print(f"sweep of {len(statuses):,} runs: {statuses.count('ok'):,} replayed, "
          f"{statuses.count('skipped'):,} skipped (already complete), {failed:,} failed")
    if failed:
        print(f"failures: {result.failures}")
    print(f"table: {result.parquet}; page: {result.html}")
    return EXIT_FAILED if failed else EXIT_OK


def _cmd_generate(cfg: Config, err: Console) -> int:
    from datasets.generate import write_clearing_dataset, write_order_dataset

    assert cfg.out is not None
    with _progress(err) as progress:
        task = progress.add_task("generating", total=cfg.n, rate="")
        tick = lambda done: progress.update(task, completed=done)  # noqa: E731
        if cfg.what == "crash-day":
            if not 0 < cfg.hours <= 24 * 7:
                raise InputError("--hours", [f"{cfg.hours:g}: the day's span must be over 0 and at most a week"])
            write_clearing_dataset(cfg.out, n=cfg.n, seed=cfg.seed, accounts=cfg.accounts,
                                   progress=tick, crash=True, hours=cfg.hours)
        elif cfg.clearing:
            if cfg.kind != "realistic":
                raise InputError("--clearing", ["clearing tables come with the realistic stream only"])
            write_clearing_dataset(cfg.out, n=cfg.n, seed=cfg.seed, accounts=cfg.accounts, progress=tick)
        else:
            write_order_dataset(cfg.out, kind=cfg.kind, n=cfg.n, seed=cfg.seed, progress=tick)
    what = "crash-day" if cfg.what == "crash-day" else cfg.kind
    print(f"wrote {cfg.n:,} {what} instructions (seed {cfg.seed}) to {cfg.out}")
    return EXIT_OK


def _cmd_diff(ns: argparse.Namespace) -> int:
    from backtest.diff import fund_text, write_diff

    out = ns.out or ns.run_b.parent / "diff.html"
    diff = write_diff(ns.run_a, ns.run_b, out, force=ns.force)
    if ns.json:
        print(json.dumps(diff, sort_keys=True))
        return EXIT_OK
    width = max(len(f["figure"]) for f in diff["figures"])
    print(f"{'':{width}}  {'A':>26}  {'B':>26}  {'B - A':>26}")
    for f in diff["figures"]:
        plain = f["figure"].endswith(" ts")  # a timestamp: no thousands separators
        a, b = ("" if v is None else f"{v:,}" if isinstance(v, int) and not plain else str(v)
                for v in (f["a"], f["b"]))
        d = "" if f["delta"] is None else f"{f['delta']:+,}"
        print(f"{f['figure']:{width}}  {a:>26}  {b:>26}  {d:>26}")
    for what, key in (("liquidated", "liquidated"), ("hit by ADL", "adl_victims")):
        part = diff[key]
        print(f"accounts {what}: {part['both']:,} in both, {len(part['only_a']):,} only in A, "
              f"{len(part['only_b']):,} only in B")
    print(f"insurance fund: {fund_text(diff['fund'])}")
    changed = [t["table"] for t in diff["tables"] if not t["same"]]
    print(f"tables that differ: {', '.join(changed) or 'none'}")
    print(f"rules that differ: {', '.join(r['key'] for r in diff['rules']) or 'none'}")
    print(f"diff: {out}")
    return EXIT_OK


def _cmd_validate(ns: argparse.Namespace, err: Console) -> int:
    from datasets.validate import check_dataset

    report = check_dataset(ns.dataset)
    for note in report.notes:
        err.print(f"note: {escape(note)}", highlight=False, soft_wrap=True)
    faults = report.faults
    for fault in faults:
        err.print(f"[red]fault:[/red] {escape(fault)}", highlight=False, soft_wrap=True)
    if faults:
        err.print(f"{len(faults):,} fault(s) in {ns.dataset}", highlight=False)
        return EXIT_BAD_INPUT
    print(f"{ns.dataset}: valid")
    return EXIT_OK


def _cmd_import(ns: argparse.Namespace, err: Console) -> int:
    from datasets.importers import importers

    module = importers()[ns.kind]
    lines = _with_progress(err, f"importing {ns.kind}", lambda progress: module.run(
        ns.src, ns.out, ns, progress))
    for line in lines:
        print(line)
    print(f"dataset folder: {ns.out}")
    return EXIT_OK


def _cmd_depth(ns: argparse.Namespace, err: Console) -> int:
    module = importlib.import_module("datasets.bands" if ns.what == "depth" else "datasets.depth_day")
    lines = _with_progress(err, f"generate {ns.what}", lambda progress: module.run(ns.out, ns, progress))
    for line in lines:
        print(line)
    return EXIT_OK


def _cmd_check_book(ns: argparse.Namespace, err: Console) -> int:
    from backtest.check_book import print_report, run_check_book

    report = _with_progress(err, "check-book", lambda progress: run_check_book(
        ns.dataset, progress=progress, bench_rounds=ns.bench))
    print_report(report, as_json=ns.json)
    return EXIT_OK


def _cmd_population(ns: argparse.Namespace, err: Console) -> int:
    population = importlib.import_module("datasets.population")
    lines = _with_progress(err, "population", lambda progress: population.run(ns.out, ns, progress))
    for line in lines:
        print(line)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    ns = _parser().parse_args(argv)
    cfg = _config(ns)
    err = Console(stderr=True)
    try:
        if cfg.command == "diff":
            return _cmd_diff(ns)
        if cfg.command == "validate":
            return _cmd_validate(ns, err)
        if cfg.command == "import":
            return _cmd_import(ns, err)
        if cfg.command == "generate" and cfg.what == "population":
            return _cmd_population(ns, err)
        if cfg.command == "generate" and cfg.what in ("depth", "depth-day"):
            return _cmd_depth(ns, err)
        if cfg.command == "check-book":
            return _cmd_check_book(ns, err)
        if cfg.command == "match":
            return _cmd_match(cfg, err)
        if cfg.command == "run":
            return _cmd_run(cfg, err)
        if cfg.command == "report":
            return _cmd_report(cfg)
        if cfg.command == "bench":
            return _cmd_bench(cfg)
        if cfg.command == "sweep":
            return _cmd_sweep(ns, err)
        return _cmd_generate(cfg, err)
    except InputError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return EXIT_BAD_INPUT
    except BacktestError as exc:
        err.print(f"[red]run failed:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return EXIT_FAILED
    except KeyboardInterrupt:
        err.print("interrupted: no run folder was written", highlight=False)
        return EXIT_FAILED


if __name__ == "__main__":
    raise SystemExit(main())
