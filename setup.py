"""Build the compiled hot path: the same .py sources, compiled by Cython.

`pip install -e .` (what `make` runs) compiles the matcher (typed by its .pxd files), the
clearing modules the replay calls per fill and per order, and the replay loop into
extension modules next to them. The .py files remain the reference: `PURE_PYTHON=1 pytest`
runs the suites on them (tests/conftest.py), and `make test` does both.
"""

from Cython.Build import cythonize
from setuptools import setup

COMPILED = [
    "matching/book.py", "matching/engine.py",
    "clearing/money.py", "clearing/positions.py", "clearing/margin.py", "clearing/ledger.py",
    "clearing/settlement.py", "clearing/watch.py", "clearing/pretrade.py", "clearing/liquidation.py",
    "backtest/replay.py", "backtest/split.py",
]

setup(
    ext_modules=cythonize(
        COMPILED,
        compiler_directives={"language_level": 3, "boundscheck": False, "wraparound": False,
                           "annotation_typing": False},
    ),
)
