"""The project's exceptions: bugs and bad input raise these; expected venue outcomes
(rejects, expiries) are events, never exceptions.

It lives in matching/ because that is the one package every other may import.
Messages are lowercase with no final period and carry key=value context.
"""

from __future__ import annotations


class BacktestError(Exception):
    """Base of every error this project raises on purpose."""


class InputError(BacktestError, ValueError):
    """Bad input a person must fix: names the file and, where it can, row and column."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        shown = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"bad input in {path}:\n{shown}")


class CrossedBookError(BacktestError, AssertionError):
    """The book was found crossed after an instruction completed: a matcher bug."""
