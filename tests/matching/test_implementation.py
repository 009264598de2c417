"""Which implementation the suite runs on: the compiled modules by default, the .py
reference under PURE_PYTHON=1. A broken build must fail here, not fall back silently."""

from __future__ import annotations

import importlib

from tests.conftest import PURE

COMPILED = ("matching.book", "matching.engine", "clearing.money", "clearing.positions",
            "clearing.margin", "clearing.ledger", "clearing.settlement", "clearing.watch",
            "clearing.pretrade", "clearing.liquidation", "backtest.replay")


def test_the_suite_runs_on_the_implementation_it_claims():
    for module in map(importlib.import_module, COMPILED):
        assert module.__file__ is not None
        assert module.__file__.endswith(".py") == PURE, module.__file__
