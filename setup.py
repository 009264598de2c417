"""Build the compiled matcher: the same matching/*.py sources, typed by their .pxd files.

`pip install -e .` (what `make` runs) compiles matching/book.py and matching/engine.py
with Cython into extension modules next to them. The .py files remain the reference:
`MATCHING_PURE=1 pytest` runs the matcher's test suite on them (tests/conftest.py).
"""

from Cython.Build import cythonize
from setuptools import setup

setup(
    ext_modules=cythonize(
        ["matching/book.py", "matching/engine.py"],
        compiler_directives={"language_level": 3, "boundscheck": False, "wraparound": False,
                           "annotation_typing": False},
    ),
)
