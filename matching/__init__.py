"""Order books and the matching engine. Pure, in-memory, integers only; imports nothing
of ours and does no I/O."""

from matching.book import Book, Level, Order
from matching.engine import Matcher, SymbolRules

__all__ = ["Book", "Level", "Matcher", "Order", "SymbolRules"]
