"""The matcher's output records, written out as the rows DESIGN.md's Outputs list.

A fill record stands for three rows (the fill, the taker's `filled`, the maker's `filled`);
every other record is one order event. `expand` turns records into that row sequence, so
a record's rows take consecutive output sequence numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from matching.types import FILL, FILLED


def expand(records: Iterable[tuple]) -> Iterator[tuple]:
    """Yield output rows in order: fills rows as they are, plus each fill's two `filled`
    order events (taker first), each as (FILLED, ts, account, symbol, order_id, None,
    remaining_qty). O(records)."""
    for rec in records:
        if rec[0] == FILL:
            _, ts, symbol, _price, _qty, _side, taker_id, maker_id, taker, maker, t_left, m_left = rec
            yield rec[:10]
            yield (FILLED, ts, taker, symbol, taker_id, None, t_left)
            yield (FILLED, ts, maker, symbol, maker_id, None, m_left)
        else:
            yield rec
