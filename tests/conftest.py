"""Test-wide setup.

PURE_PYTHON=1 runs the suite on the pure-Python sources (matching/, clearing/,
backtest/*.py) instead of the extension modules setup.py compiles from the same files: the
.py files are the reference implementation and both must pass the same tests (`make test`
runs the matching, clearing and replay tests both ways).
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import importlib.machinery
import os
import sys
from pathlib import Path

PURE = os.environ.get("PURE_PYTHON") == "1"
COMPILED_PACKAGES = ("matching", "clearing", "backtest")
ROOT = Path(__file__).resolve().parent.parent


class _PureSourceFinder(importlib.abc.MetaPathFinder):
    """Resolve the compiled packages' modules to their .py sources, never the extension
    modules beside them."""

    def find_spec(self, name, path, target=None):
        if name.split(".")[0] not in COMPILED_PACKAGES:
            return None
        parts = name.split(".")
        base = ROOT.joinpath(*parts)
        if (base / "__init__.py").is_file():
            return importlib.util.spec_from_file_location(
                name, base / "__init__.py", submodule_search_locations=[str(base)])
        source = base.with_suffix(".py")
        if source.is_file():
            return importlib.util.spec_from_file_location(
                name, source, loader=importlib.machinery.SourceFileLoader(name, str(source)))
        return None


if PURE:
    assert not any(m.split(".")[0] in COMPILED_PACKAGES for m in sys.modules), \
        "a compiled package was imported before conftest could select the pure-Python modules"
    sys.meta_path.insert(0, _PureSourceFinder())
