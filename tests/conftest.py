"""Test-wide setup.

MATCHING_PURE=1 runs the suite on the pure-Python matcher (matching/*.py) instead of the
compiled extension modules built from the same sources: the .py files are the reference
implementation and both must pass the same tests (`make test` runs the matching tests both
ways).
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import importlib.machinery
import os
import sys
from pathlib import Path

PURE = os.environ.get("MATCHING_PURE") == "1"
ROOT = Path(__file__).resolve().parent.parent


class _PureMatchingFinder(importlib.abc.MetaPathFinder):
    """Resolve matching.* to the .py sources, never the compiled modules beside them."""

    def find_spec(self, name, path, target=None):
        if name != "matching" and not name.startswith("matching."):
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
    assert not any(m == "matching" or m.startswith("matching.") for m in sys.modules), \
        "matching was imported before conftest could select the pure-Python modules"
    sys.meta_path.insert(0, _PureMatchingFinder())
