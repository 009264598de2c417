"""Importers of public market-data formats (`backtest import KIND SRC OUT`).

Each importer is a module here named after its KIND with this interface, so the command
line (backtest/cli.py) needs no change when one is added:

    HELP: str          one line for `backtest import --help`
    DESCRIPTION: str   the paragraph of `backtest import KIND --help`
    EPILOG: str        an example command line
    def add_arguments(parser: argparse.ArgumentParser) -> None
        options beyond SRC and OUT, which the command line adds itself
    def run(src: Path, out: Path, options: argparse.Namespace,
            progress: Callable[[int, int | None], None]) -> list[str]
        writes the dataset folder OUT (atomically: a temporary folder renamed on success),
        reports progress as (done, total or None) and returns the summary lines to print;
        bad input raises matching.errors.InputError naming file, row and column.
"""

from __future__ import annotations

import importlib
from types import ModuleType

KINDS = ("lobster", "binance", "tardis")


def importers() -> dict[str, ModuleType]:
    """The importer modules present, by KIND, in KINDS order."""
    found = {}
    for kind in KINDS:
        try:
            found[kind] = importlib.import_module(f"datasets.importers.{kind}")
        except ModuleNotFoundError as exc:
            if exc.name != f"datasets.importers.{kind}":
                raise
    return found
