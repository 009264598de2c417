"""MatchOutputWriter: the rows it writes from a batch of records are the rows a plain
record-by-record reading gives (one sequence counter; a fill is its row plus the taker's
and the maker's `filled`), for every record kind; and it refuses what it cannot write."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from backtest.outputs import FILL_ROW, SIMPLE_TABLES, MatchOutputWriter
from matching.types import FILL, FILLED, SIDE_NAMES

K = {"BTCUSDT": 10, "ETHUSDT": 3}


def _fill(ts, symbol, price, qty, side, taker_id, maker_id, taker, maker, *, cleared=True):
    rec = (FILL, ts, symbol, price, qty, side, taker_id, maker_id, taker, maker, 5, 0)
    return rec + (7, -2, "trade") if cleared else rec


def _batches() -> list[list[tuple]]:
    """Two batches with every kind of record the replay emits."""
    return [
        [
            ("accepted", 1, "a1", "BTCUSDT", 1, None, 10),
            ("rejected", 1, "a2", "ETHUSDT", 2, "insufficient_margin", 0),
            _fill(2, "BTCUSDT", 300, 4, 0, 3, 1, "a3", "a1"),
            ("ledger", 2, "a3", "USDT", -7, "fee", "fill:2"),
            ("ledger", 2, "a1", "USDT", 2, "fee", "fill:2"),
            (FILL_ROW, 3, "ETHUSDT", 50, 2, 1, None, None, "a2", "insurance_fund", 0, 0, "takeover", 301),
            ("funding", 3, "BTCUSDT", "a1", 4, 300, 1, 10, -12, "premium_index"),
            ("insurance", 3, "USDT", 5, 105, "surplus", 1),
            _fill(4, "ETHUSDT", 51, 1, 1, 4, 2, "a1", "a2"),
            ("cancelled", 4, "a1", "BTCUSDT", 1, "user", 0),
            ("transfer", 4, "a2", "withdraw", "USDT", 9, "applied", None),
            ("margin_call", 5, "a2", "USDT", 10, 20, 30, "mark"),
            ("adl", 5, 1, "a2", "ETHUSDT", "a1", 1, 51, 51, "pnl", 0.5),
            ("interest", 5, "a2", "USDT", 100, 3, 1),
            ("repayment", 5, "a2", "USDT", 4, 1, 3, "conversion", "BTC", 1),
        ],
        [
            ("expired", 6, "a3", "BTCUSDT", 3, "ioc_remainder", 0),
            _fill(6, "BTCUSDT", 301, 2, 1, 5, 6, "a2", "a3"),
            ("amended", 7, "a2", "ETHUSDT", 7, None, 3),
            ("ledger", 7, "a2", "USDT", 1, "realised_pnl", "fill:9"),
        ],
    ]


def _expected(batches: list[list[tuple]]) -> dict[str, list[tuple]]:
    """The slow, obvious reading: one record at a time, one counter."""
    rows: dict[str, list[tuple]] = {"fills": [], "order_events": []}
    rows.update({table: [] for table, _ in SIMPLE_TABLES.values()})
    seq = 0
    for rec in (r for batch in batches for r in batch):
        seq += 1
        if rec[0] == FILL:
            (_, ts, sym, price, qty, side, t_id, m_id, taker, maker, t_left, m_left, t_fee, m_fee,
             kind) = rec
            rows["fills"].append((ts, seq, sym, price, qty, price * qty * K[sym], SIDE_NAMES[side],
                                  t_id, m_id, taker, maker, t_fee, m_fee, kind))
            rows["order_events"].append((ts, seq + 1, taker, sym, t_id, FILLED, None, t_left))
            rows["order_events"].append((ts, seq + 2, maker, sym, m_id, FILLED, None, m_left))
            seq += 2
        elif rec[0] == FILL_ROW:
            (_, ts, sym, price, qty, side, t_id, m_id, taker, maker, t_fee, m_fee, kind, notional) = rec
            rows["fills"].append((ts, seq, sym, price, qty, notional, SIDE_NAMES[side], t_id, m_id,
                                  taker, maker, t_fee, m_fee, kind))
        elif rec[0] in SIMPLE_TABLES:
            rows[SIMPLE_TABLES[rec[0]][0]].append((rec[1], seq, *rec[2:]))
        else:
            event, ts, account, sym, oid, reason, left = rec
            rows["order_events"].append((ts, seq, account, sym, oid, event, reason, left))
    return rows


def _written(folder: Path, batches: list[list[tuple]], *, clearing: bool = True) -> MatchOutputWriter:
    writer = MatchOutputWriter(folder, K, clearing=clearing)
    for batch in batches:
        writer.write_records(batch)
    writer.write_records([])
    writer.close()
    return writer


def test_every_table_holds_the_rows_of_a_record_by_record_reading(tmp_path):
    writer = _written(tmp_path, _batches())
    expected = _expected(_batches())
    for table, rows in expected.items():
        got = [tuple(r.values()) for r in pq.read_table(tmp_path / f"{table}.parquet").to_pylist()]
        assert got == rows, table
    assert writer.seq == 25
    assert writer.fill_rows == len(expected["fills"])
    assert writer.event_rows == len(expected["order_events"])
    assert writer.rows["ledger"] == 3


def test_matcher_only_fills_pay_no_fee_and_are_trades(tmp_path):
    batch = [("accepted", 1, "a1", "BTCUSDT", 1, None, 10),
             _fill(2, "BTCUSDT", 300, 4, 0, 3, 1, "a3", "a1", cleared=False)]
    _written(tmp_path, [batch], clearing=False)
    fills = pq.read_table(tmp_path / "fills.parquet").to_pylist()
    assert [(f["seq"], f["notional"], f["taker_fee"], f["maker_fee"], f["kind"], f["aggressor"])
            for f in fills] == [(2, 12_000, 0, 0, "trade", "buy")]
    events = pq.read_table(tmp_path / "order_events.parquet").to_pylist()
    assert [(e["seq"], e["event"], e["account"]) for e in events] == [
        (1, "accepted", "a1"), (3, FILLED, "a3"), (4, FILLED, "a1")]


@pytest.mark.parametrize(("record", "error", "message"), [
    pytest.param(_fill(1, "BTCUSDT", 2**40, 2**30, 0, 1, 2, "a", "b"), OverflowError,
                 "fill notional beyond int64", id="a notional beyond int64 is refused"),
    pytest.param(_fill(1, "XRPUSDT", 3, 1, 0, 1, 2, "a", "b"), KeyError, "XRPUSDT",
                 id="a fill of a symbol without a notional factor is refused"),
    pytest.param(("teleported", 1, "a", "BTCUSDT", 1, None, 0), ValueError,
                 "records of unknown kind: \\['teleported'\\]", id="an unknown record kind is refused"),
])
def test_records_it_cannot_write_raise(tmp_path, record, error, message):
    writer = MatchOutputWriter(tmp_path, K, clearing=True)
    with pytest.raises(error, match=message):
        writer.write_records([("accepted", 1, "a1", "BTCUSDT", 1, None, 10), record])
    writer.close()
