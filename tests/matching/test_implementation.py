"""Which matcher the suite runs on: the compiled modules by default, the .py reference
under MATCHING_PURE=1. A broken build must fail here, not fall back silently."""

from __future__ import annotations

import matching.book
import matching.engine
from tests.conftest import PURE


def test_the_suite_runs_on_the_implementation_it_claims():
    for module in (matching.book, matching.engine):
        assert module.__file__ is not None
        assert module.__file__.endswith(".py") == PURE, module.__file__
