"""The Binance importer (datasets/importers/binance*.py): the real recordings and archive
files of ../shared/data against their PROVENANCE.md facts, and hand-made files that follow
Binance's published layouts for the quirks and the archive kinds without a real sample."""

from __future__ import annotations

import argparse
import gzip
import json
import zipfile
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from backtest.cli import main
from datasets.importers import binance
from datasets.manifest import load_manifest
from datasets.tables import FUNDING, MARKS, check_table
from matching.errors import InputError

DATA = Path("/work/shared/data")
WS = DATA / "binance-usdm-ws-hftbacktest"
CRASH = DATA / "binance-futures-crash-2025-10-10"
needs_data = pytest.mark.skipif(not WS.is_dir() or not CRASH.is_dir(), reason="shared data not present")


def options(**overrides) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    binance.add_arguments(parser)
    ns = parser.parse_args([])
    for key, value in overrides.items():
        setattr(ns, key, value)
    return ns


def run_import(src: Path, out: Path, **overrides) -> list[str]:
    return binance.run(src, out, options(**overrides), lambda done, total: None)


def replay(folder: Path) -> tuple[dict[int, tuple], tuple]:
    """Rebuild the book from depth.parquet alone, message by message (depth_messages maps
    seq ranges to update ids): best (bid, bid qty, ask, ask qty) after each update id, and
    the final best."""
    depth = pl.read_parquet(folder / "depth.parquet").sort("seq")
    messages = pl.read_parquet(folder / "depth_messages.parquet").sort("seq_first")
    seqs = depth["seq"].to_list()
    sides, prices, qtys, snaps = (depth[c].to_list() for c in ("side", "price", "qty", "snapshot"))
    pos = {s: i for i, s in enumerate(seqs)}
    bids: dict[int, int] = {}
    asks: dict[int, int] = {}
    best_at: dict[int, tuple] = {}

    def best() -> tuple:
        b, a = max(bids), min(asks)
        return (b, bids[b], a, asks[a])

    for first, last, kind, u in messages.select("seq_first", "seq_last", "kind", "update_id").iter_rows():
        if kind == "snapshot":
            bids.clear()
            asks.clear()
        if first is not None:
            for i in range(pos[first], pos[last] + 1):
                assert snaps[i] == (kind == "snapshot")
                book = bids if sides[i] == "bid" else asks
                if qtys[i]:
                    book[prices[i]] = qtys[i]
                else:
                    book.pop(prices[i], None)
        best_at[u] = best()
    return best_at, best()


@pytest.fixture(scope="module")
def btc(tmp_path_factory) -> tuple[Path, list[str]]:
    out = tmp_path_factory.mktemp("btc") / "ds"
    return out, run_import(WS / "btcusdt_20240808.gz", out)


@pytest.fixture(scope="module")
def eth(tmp_path_factory) -> tuple[Path, list[str]]:
    out = tmp_path_factory.mktemp("eth") / "ds"
    return out, run_import(WS / "ethusdt_20240808.gz", out)


# -- the real recordings (PROVENANCE.md facts) --------------------------------------------

@needs_data
@pytest.mark.parametrize("which, agree, final", [
    pytest.param("btc", 629, (616597, 1486, 616598, 981), id="btcusdt 629 of 629, final 61659.70 x 1.486 / 61659.80 x 0.981"),
    pytest.param("eth", 551, (268138, 8486, 268139, 22624), id="ethusdt 551 of 551, final 2681.38 x 8.486 / 2681.39 x 22.624"),
])
def test_replayed_depth_equals_the_book_ticker_wherever_update_ids_coincide(which, agree, final, request):
    folder, lines = request.getfixturevalue(which)
    best_at, last = replay(folder)
    tickers = pl.read_parquet(folder / "recorded_book_ticker.parquet")
    common = tickers.filter(pl.col("update_id").is_in(list(best_at)))
    assert common.height == agree
    matches = sum(best_at[u] == (b, bq, a, aq) for u, b, bq, a, aq in common.select(
        "update_id", "bid_price", "bid_qty", "ask_price", "ask_qty").iter_rows())
    assert matches == agree
    assert last == final
    assert f"bookTicker vs rebuilt depth where update ids coincide: {agree}/{agree} agree" in lines


@needs_data
@pytest.mark.parametrize("which, count, ids, prices, total_qty", [
    pytest.param("btc", 21_313, (5266583935, 5266605247), (615903, 618399), 2_429_366, id="btcusdt"),
    pytest.param("eth", 14_076, (4308068523, 4308082598), (267790, 268482), 9_164_948, id="ethusdt"),
])
def test_trades_keep_every_print_with_the_venue_ids(which, count, ids, prices, total_qty, request):
    folder, _ = request.getfixturevalue(which)
    trades = pl.read_parquet(folder / "trades.parquet")
    assert trades.height == count
    assert (trades["trade_id"].min(), trades["trade_id"].max()) == ids
    assert trades["trade_id"].n_unique() == ids[1] - ids[0] + 1 == count  # contiguous
    assert (trades["price"].min(), trades["price"].max()) == prices
    assert trades["qty"].sum() == total_qty


@needs_data
def test_btc_first_trade_and_taker_sides_follow_the_buyer_is_maker_flag(btc):
    folder, _ = btc
    trades = pl.read_parquet(folder / "trades.parquet")
    first = trades.row(0, named=True)
    assert (first["trade_id"], first["price"], first["qty"], first["aggressor"]) == (5266583935, 618003, 6, "buy")
    assert first["ts"] == 1723161256322 * 1_000_000  # E of that message (= its T)
    assert trades.filter(pl.col("aggressor") == "sell").height == 11_697


@needs_data
def test_btc_diffs_recorded_before_the_snapshot_are_buffered_so_no_gap_remains(btc):
    folder, lines = btc
    messages = pl.read_parquet(folder / "depth_messages.parquet")
    assert messages.filter(pl.col("kind") == "diff").height == 6_547  # 6,551 - 4 stale
    assert messages["line"].head(3).to_list() == [55, 42, 50]  # snapshot, then the buffered two
    first = messages.row(1, named=True)
    assert first["first_update_id"] <= 5123107852948 <= first["update_id"]  # straddles it
    assert pl.read_parquet(folder / "depth_gaps.parquet").height == 0
    assert "depth gaps: 0" in lines
    snap = pl.read_parquet(folder / "depth.parquet").filter(pl.col("snapshot"))
    assert snap.height == 2_000 and snap["ts"].unique().to_list() == [1723161256501 * 1_000_000]


@needs_data
def test_btc_dropping_diffs_before_the_snapshot_reports_provenance_gap_and_continues(tmp_path):
    out = tmp_path / "btc"
    lines = run_import(WS / "btcusdt_20240808.gz", out, before_snapshot="drop")
    gaps = pl.read_parquet(out / "depth_gaps.parquet")
    assert gaps.select("line", "kind", "expected", "got").rows() == [(57, "snapshot_straddle", 5123107852948, 5123107856267)]
    assert any(line.startswith("depth gaps: 1 (line 57: snapshot_straddle") for line in lines)
    assert pl.read_parquet(out / "depth_messages.parquet").filter(pl.col("kind") == "diff").height == 6_545
    best_at, last = replay(out)
    assert last == (616597, 1486, 616598, 981)
    assert "bookTicker vs rebuilt depth where update ids coincide: 629/629 agree" in lines


@needs_data
def test_the_dataset_loads_and_every_table_keeps_ts_order_and_unique_seq(btc):
    folder, _ = btc
    manifest = load_manifest(folder)
    inst = manifest.instruments["BTCUSDT"]
    assert (inst.tick_size, inst.lot_size, inst.notional_factor) == (Decimal("0.1"), Decimal("0.001"), 10_000)
    assert manifest.start_ns == 1723161256299 * 1_000_000
    for table in ("depth", "trades", "recorded_book_ticker", "depth_messages"):
        frame = pl.read_parquet(folder / f"{table}.parquet")
        assert frame["ts"].is_sorted(), table
    for table in ("depth", "trades", "recorded_book_ticker"):
        frame = pl.read_parquet(folder / f"{table}.parquet")
        assert frame["seq"].n_unique() == frame.height, table
    check_table(folder / "marks.parquet", MARKS)
    check_table(folder / "funding.parquet", FUNDING)


# -- the crash-day archive files ------------------------------------------------------------

@pytest.fixture(scope="module")
def crash(tmp_path_factory) -> tuple[Path, list[str]]:
    out = tmp_path_factory.mktemp("crash") / "ds"
    return out, run_import(CRASH, out, klines="mark")


@needs_data
def test_crash_day_kline_lows_come_through_the_marks_table(crash):
    folder, lines = crash
    marks = pl.read_parquet(folder / "marks.parquet")
    assert marks["ts"].is_sorted()
    bar = 1760131200000 * 1_000_000  # 2025-10-10 21:20 UTC
    btc = marks.filter(pl.col("symbol") == "BTCUSDT")
    low = btc.filter(pl.col("mark_price") == btc["mark_price"].min())
    assert low["mark_price"][0] == 1_018_777  # 101,877.68981743 rounded half-even to 0.1
    assert bar <= low["ts"][0] < bar + 300_000 * 1_000_000
    coin = marks.filter(pl.col("symbol") == "BTCUSD_PERP")
    low = coin.filter(pl.col("mark_price") == coin["mark_price"].min())
    assert low["mark_price"][0] == 1_024_975 and bar <= low["ts"][0] < bar + 60_000 * 1_000_000
    high = coin.filter(pl.col("mark_price") == coin["mark_price"].max())
    assert high["mark_price"][0] == 1_225_240  # 122,524.03697602, the 13:42 bar
    assert 1760103720000 * 1_000_000 <= high["ts"][0] < 1760103780000 * 1_000_000
    assert (btc.height, coin.height) == (288 * 4, 1440 * 4)
    assert any("lowest bar low 101877.68981743 (mark 101877.7) in the bar opening 2025-10-10 21:20 UTC" in x
               for x in lines)
    check_table(folder / "marks.parquet", MARKS)
    assert set(load_manifest(folder).instruments) == {"BTCUSDT", "BTCUSD_PERP"}


@needs_data
def test_crash_day_book_depth_becomes_bands_with_the_provenance_minimum(crash):
    folder, _ = crash
    bands = pl.read_parquet(folder / "depth_bands.parquet")
    assert bands.height == 28_790
    first = bands.row(0, named=True)
    assert (first["percentage"], first["depth"], first["notional"]) == (-5, 8_243_012, 97_998_331_420_560_000)
    assert first["ts"] == 1760054407 * 1_000_000_000
    assert bands.group_by("percentage").len()["len"].unique().to_list() == [2_879]
    ask1 = bands.filter(pl.col("percentage") == 1)
    thin = ask1.filter(pl.col("notional") == ask1["notional"].min()).row(0, named=True)
    assert thin["notional"] == 5_677_450_315_310_000  # 56,774,503.1531 USDT in 1e-8 units
    assert thin["depth"] == 521_714 and thin["ts"] == 1760131351 * 1_000_000_000  # 21:22:31


@needs_data
def test_kline_files_whose_kind_is_not_known_are_rejected_naming_the_file(tmp_path, capsys):
    code = main(["import", "binance", str(CRASH), str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err
    assert "BTCUSDT-5m-2025-10-10.zip" in err and "--klines" in err
    assert not (tmp_path / "out").exists()


# -- hand-made websocket recordings: the quirks -------------------------------------------

def ws_line(local: int, data: dict, stream: str | None = "btcusdt@x") -> str:
    body = {"stream": stream, "data": data} if stream else data
    return f"{local} {json.dumps(body)}"


def snapshot(last_id: int, bids, asks, e: int = 1000) -> dict:
    return {"lastUpdateId": last_id, "E": e, "T": e, "bids": bids, "asks": asks}


def diff(first: int, u: int, pu: int, b=(), a=(), e: int = 1001) -> dict:
    return {"e": "depthUpdate", "E": e, "T": e, "s": "BTCUSDT", "U": first, "u": u, "pu": pu,
            "b": [list(x) for x in b], "a": [list(x) for x in a]}


def recording(tmp_path: Path, messages: list, *, name: str = "btcusdt_20240101.gz") -> Path:
    path = tmp_path / name
    lines = [m if isinstance(m, str) else ws_line(i + 1, m, None if "lastUpdateId" in m else "btcusdt@x")
             for i, m in enumerate(messages)]
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    return path


BOOK = snapshot(100, [["100.0", "1.000"], ["99.9", "2.000"]], [["100.1", "1.500"], ["100.2", "3.000"]])


def test_a_pu_break_is_a_reported_gap_with_its_place_and_the_diffs_still_apply(tmp_path):
    src = recording(tmp_path, [BOOK, diff(99, 101, 98, b=[("100.0", "1.100")]),
                               diff(102, 103, 101, a=[("100.1", "0.500")], e=1002),
                               diff(110, 112, 109, b=[("99.9", "0.000")], e=1003)])
    lines = run_import(src, tmp_path / "ds")
    gaps = pl.read_parquet(tmp_path / "ds" / "depth_gaps.parquet")
    assert gaps.select("line", "kind", "expected", "got", "update_id").rows() == [(4, "pu_break", 103, 109, 112)]
    assert gaps["ts"].to_list() == [1003 * 1_000_000]
    assert "depth gaps: 1 (line 4: pu_break, pu=109 where the previous diff ended at u=103)" in lines
    _, last = replay(tmp_path / "ds")
    assert last == (1000, 1100, 1001, 500)
    assert pl.read_parquet(tmp_path / "ds" / "depth_messages.parquet").filter(pl.col("kind") == "diff").height == 3


def test_a_diff_older_than_the_snapshot_is_dropped_and_counted(tmp_path):
    src = recording(tmp_path, [BOOK, diff(90, 95, 89, b=[("100.0", "9.000")]),
                               diff(99, 101, 95, b=[("100.0", "1.200")])])
    lines = run_import(src, tmp_path / "ds")
    depth = pl.read_parquet(tmp_path / "ds" / "depth.parquet").filter(~pl.col("snapshot"))
    assert depth.select("side", "price", "qty").rows() == [("bid", 1000, 1200)]
    assert any("1 dropped as older than the snapshot" in x for x in lines)
    assert pl.read_parquet(tmp_path / "ds" / "depth_gaps.parquet").height == 0


def test_a_diff_recorded_before_the_snapshot_that_straddles_it_is_applied_after_it(tmp_path):
    src = recording(tmp_path, [diff(95, 102, 94, b=[("100.0", "4.000")], e=999), BOOK,
                               diff(103, 104, 102, a=[("100.2", "1.000")], e=1002)])
    run_import(src, tmp_path / "ds")
    messages = pl.read_parquet(tmp_path / "ds" / "depth_messages.parquet")
    assert messages.select("kind", "line").rows() == [("snapshot", 1 + 1), ("diff", 1), ("diff", 3)]
    assert pl.read_parquet(tmp_path / "ds" / "depth_gaps.parquet").height == 0
    _, last = replay(tmp_path / "ds")
    assert last == (1000, 4000, 1001, 1500)


def test_a_zero_size_removes_the_level(tmp_path):
    src = recording(tmp_path, [BOOK, diff(99, 101, 98, b=[("100.0", "0.000")], a=[("100.1", "0")])])
    run_import(src, tmp_path / "ds")
    _, last = replay(tmp_path / "ds")
    assert last == (999, 2000, 1002, 3000)
    rows = pl.read_parquet(tmp_path / "ds" / "depth.parquet").filter(~pl.col("snapshot"))
    assert rows["qty"].to_list() == [0, 0]


def test_no_snapshot_starts_from_an_empty_book_and_says_so(tmp_path):
    src = recording(tmp_path, [diff(99, 101, 98, b=[("100.0", "1.000")], a=[("100.1", "1.000")])])
    lines = run_import(src, tmp_path / "ds")
    gaps = pl.read_parquet(tmp_path / "ds" / "depth_gaps.parquet")
    assert gaps.select("line", "kind").rows() == [(1, "no_snapshot")]
    assert any("no snapshot" in x for x in lines)


def test_an_off_grid_price_names_file_row_and_column(tmp_path):
    src = recording(tmp_path, [BOOK, diff(99, 101, 98, b=[("100.0", "1.000"), ("100.05", "1.000")]),
                               {"e": "trade", "E": 1002, "T": 1002, "s": "BTCUSDT", "t": 7, "p": "100.1",
                                "q": "0.0005", "X": "MARKET", "m": True}])
    with pytest.raises(InputError) as info:
        run_import(src, tmp_path / "ds")
    assert info.value.path == str(src)
    assert info.value.problems == [
        "row 2, column data.b[1][0] (price): price is not a whole number of ticks (BTCUSDT tick_size 0.1) "
        "(value: '100.05')",
        "row 3, column data.q: size is not a whole number of lots (BTCUSDT lot_size 0.001) (value: '0.0005')",
    ]
    assert not (tmp_path / "ds").exists()


def test_a_malformed_json_line_is_named_and_the_cli_exits_2(tmp_path, capsys):
    src = recording(tmp_path, [BOOK, '1723 {"stream":"btcusdt@trade","data":{"e":"trade",', "garbage"])
    code = main(["import", "binance", str(src), str(tmp_path / "ds")])
    assert code == 2
    err = capsys.readouterr().err
    assert "row 2, column json: not valid JSON" in err
    assert "row 3, column local_ns: expected `<local ns> <json>`" in err


def test_mark_price_updates_become_marks_and_settled_funding(tmp_path):
    def mark(e, p, i, r, t):
        return {"e": "markPriceUpdate", "E": e, "s": "BTCUSDT", "p": p, "i": i, "P": p, "r": r, "T": t}
    src = recording(tmp_path, [BOOK, mark(1000, "61659.75234783", "61650.00000000", "0.00010000", 5000),
                               mark(4000, "61660.05000000", "61651.12000000", "-0.00012345", 5000),
                               mark(6000, "61661.00000000", "61652.00000000", "0.00003000", 9000)])
    lines = run_import(src, tmp_path / "ds")
    marks = pl.read_parquet(tmp_path / "ds" / "marks.parquet")
    # 61659.7523 -> 616598; 61660.05 is a tie -> half-even 616600; 61651.12 -> 616511
    assert marks.select("mark_price", "index_price").rows() == [(616598, 616500), (616600, 616511), (616610, 616520)]
    funding = pl.read_parquet(tmp_path / "ds" / "funding.parquet")
    assert funding.rows() == [(5000 * 1_000_000, "BTCUSDT", -12_345, 100_000_000)]
    assert any("funding estimate for 9000 ms (rate 0.00003000) not written" in x for x in lines)
    assert "mark/index prices rounded half-even to the tick: 3 values, largest change 0.05" in lines
    check_table(tmp_path / "ds" / "funding.parquet", FUNDING)
    with pytest.raises(InputError, match=r"row 2, column data.p: price is not a whole number of ticks"):
        run_import(src, tmp_path / "strict", mark_rounding="error")


def test_force_orders_become_recorded_liquidations(tmp_path):
    order = {"e": "forceOrder", "E": 2000, "o": {"s": "BTCUSDT", "S": "SELL", "o": "LIMIT", "f": "IOC",
                                                 "q": "0.014", "p": "9910.0", "ap": "9910.1234",
                                                 "X": "FILLED", "l": "0.014", "z": "0.014", "T": 1999}}
    src = recording(tmp_path, [BOOK, order])
    run_import(src, tmp_path / "ds")
    liq = pl.read_parquet(tmp_path / "ds" / "recorded_liquidations.parquet").row(0, named=True)
    assert (liq["side"], liq["price"], liq["qty"], liq["avg_price"], liq["status"], liq["filled_qty"],
            liq["trade_ts"]) == ("sell", 99100, 14, "9910.1234", "FILLED", 14, 1999 * 1_000_000)


def test_the_same_recording_imports_byte_identically(tmp_path):
    src = recording(tmp_path, [BOOK, diff(99, 101, 98, b=[("100.0", "1.100")]),
                               {"e": "trade", "E": 1002, "T": 1002, "s": "BTCUSDT", "t": 7, "p": "100.1",
                                "q": "0.005", "X": "MARKET", "m": False}])
    run_import(src, tmp_path / "a")
    run_import(src, tmp_path / "b")
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_a_symbol_without_default_grid_asks_for_tick_and_lot(tmp_path):
    src = recording(tmp_path, [BOOK], name="solusdt_20240101.gz")
    with pytest.raises(InputError, match="symbol SOLUSDT: tick and lot sizes unknown; give --tick-size and --lot-size"):
        run_import(src, tmp_path / "ds")


# -- hand-made archive files (Binance's published column layouts) ------------------------

def write_csv(folder: Path, name: str, header: str | None, rows: list[str], *, zipped: bool = False) -> Path:
    text = "\n".join(([header] if header else []) + rows) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    if zipped:
        path = folder / f"{name}.zip"
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr(f"{name}.csv", text)
        return path
    path = folder / f"{name}.csv"
    path.write_text(text)
    return path


KLINE_HEADER = ("open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,"
                "taker_buy_quote_volume,ignore")


@pytest.fixture
def archive(tmp_path) -> Path:
    src = tmp_path / "archive"
    write_csv(src, "BTCUSDT-trades-2024-01-01", "id,price,qty,quote_qty,time,is_buyer_maker",
              ["10,42000.1,0.005,210.0005,1704067200100,true", "11,42000.2,0.010,420.002,1704067200200,false"],
              zipped=True)
    # Same day as the trades file: skipped; the other day's aggTrades are used.
    write_csv(src, "BTCUSDT-aggTrades-2024-01-01",
              "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker",
              ["5,42000.1,0.015,10,11,1704067200100,true"])
    write_csv(src, "BTCUSDT-aggTrades-2024-01-02", None,  # older files carry no header
              ["6,42100.0,0.001,12,12,1704153600000,false"])
    write_csv(src, "ETHUSDT-trades-2024-01-01", "id,price,qty,quote_qty,time,is_buyer_maker",
              ["3,2300.01,0.100,230.001,1704067200150,false"])
    write_csv(src, "BTCUSDT-bookTicker-2024-01-01",
              "update_id,best_bid_price,best_bid_qty,best_ask_price,best_ask_qty,transaction_time,event_time",
              ["900,42000.0,1.000,42000.1,2.000,1704067200050,1704067200051"])
    write_csv(src, "BTCUSDT-fundingRate-2024-01", "calc_time,funding_interval_hours,last_funding_rate",
              ["1704067200000,8,0.00010000", "1704096000000,8,-0.000123456789"])
    write_csv(src, "BTCUSDT-metrics-2024-01-01",
              "create_time,symbol,sum_open_interest,sum_open_interest_value,count_toptrader_long_short_ratio,"
              "sum_toptrader_long_short_ratio,count_long_short_ratio,sum_taker_long_short_vol_ratio",
              ["2024-01-01 00:05:00,BTCUSDT,86591.783,3636854886.12345678,1.5,1.6,1.7,0.9"])
    write_csv(src, "BTCUSDT-liquidationSnapshot-2024-01-01",
              "time,side,order_type,time_in_force,original_quantity,price,average_price,order_status,"
              "last_fill_quantity,accumulated_fill_quantity",
              ["1704067200300,SELL,LIMIT,IOC,0.014,41000.0,41001.37,FILLED,0.014,0.014"])
    write_csv(src / "markPriceKlines" / "BTCUSDT" / "1m", "BTCUSDT-1m-2024-01-01", KLINE_HEADER,
              ["1704067200000,42000.12345678,42010.00000000,41990.04999999,41995.00000000,0,1704067259999,0,60,0,0,0"])
    write_csv(src / "indexPriceKlines" / "BTCUSDT" / "1m", "BTCUSDT-1m-2024-01-01", KLINE_HEADER,
              ["1704067200000,42001.00000000,42011.00000000,41991.00000000,42005.00000000,0,1704067259999,0,60,0,0,0"])
    write_csv(src / "premiumIndexKlines" / "BTCUSDT" / "1m", "BTCUSDT-1m-2024-01-01", KLINE_HEADER,
              ["1704067200000,0.00010000,0.00020000,-0.00001000,-0.00003612,0,1704067259999,0,12,0,0,0"])
    return src


def test_archive_files_of_every_kind_become_their_tables(archive, tmp_path):
    out = tmp_path / "ds"
    lines = run_import(archive, out)
    trades = pl.read_parquet(out / "trades.parquet")
    assert trades.select("symbol", "trade_id", "price", "qty", "aggressor").rows() == [
        ("BTCUSDT", 10, 420001, 5, "sell"), ("ETHUSDT", 3, 230001, 100, "buy"),
        ("BTCUSDT", 11, 420002, 10, "buy"), ("BTCUSDT", 6, 421000, 1, "buy")]
    assert trades["seq"].to_list() == [1, 2, 3, 4] and trades["ts"].is_sorted()
    assert any("BTCUSDT-aggTrades-2024-01-01.csv: skipped, the trades file of that day is used" in x for x in lines)
    ticker = pl.read_parquet(out / "recorded_book_ticker.parquet").row(0)
    assert ticker == (1704067200051 * 1_000_000, 1, "BTCUSDT", 900, 420000, 1000, 420001, 2000)
    assert pl.read_parquet(out / "funding.parquet").select("rate", "scale").rows() == [
        (10_000, 100_000_000), (-123_456_789, 1_000_000_000_000)]
    check_table(out / "funding.parquet", FUNDING)
    metrics = pl.read_parquet(out / "metrics.parquet").row(0, named=True)
    assert (metrics["open_interest"], metrics["open_interest_value"]) == (86_591_783, 363_685_488_612_345_678)
    liq = pl.read_parquet(out / "recorded_liquidations.parquet").row(0, named=True)
    assert (liq["side"], liq["price"], liq["qty"], liq["avg_price"]) == ("sell", 410000, 14, "41001.37")
    marks = pl.read_parquet(out / "marks.parquet")
    # an up bar? close 41995 < open 42000.12: down bar, open -> high -> low -> close
    assert marks.select("mark_price", "index_price").rows() == [
        (420001, 420010), (420100, 419910), (419900, 420110), (419950, 420050)]
    assert marks["ts"].to_list() == [t * 1_000_000 for t in (1704067200000, 1704067220000, 1704067240000, 1704067259999)]
    check_table(out / "marks.parquet", MARKS)
    assert pl.read_parquet(out / "premium_index.parquet").rows() == [(1704067259999 * 1_000_000, "BTCUSDT", -3612)]
    assert set(load_manifest(out).instruments) == {"BTCUSDT", "ETHUSDT"}


def test_an_off_grid_archive_value_names_file_line_and_column(archive, tmp_path):
    bad = write_csv(archive, "BTCUSDT-trades-2024-01-03", "id,price,qty,quote_qty,time,is_buyer_maker",
                    ["12,42000.1,0.005,1,1704240000000,true", "13,42000.15,0.005,1,1704240000001,false",
                     "14,42000.1,0.005,1,1704240000002,maybe"])
    with pytest.raises(InputError) as info:
        run_import(archive, tmp_path / "ds")
    assert info.value.path == str(bad)
    assert info.value.problems == [
        "row 3, column price: price is not a whole number of ticks (BTCUSDT tick_size 0.1) (value: '42000.15')",
        "row 4, column is_buyer_maker: expected true or false (value: 'maybe')"]


def test_an_archive_file_with_a_foreign_header_is_rejected_at_row_1(archive, tmp_path):
    bad = write_csv(archive, "BTCUSDT-bookTicker-2024-01-02", "a,b,c,d,e,f,g", ["1,2,3,4,5,6,7"])
    with pytest.raises(InputError) as info:
        run_import(archive, tmp_path / "ds")
    assert info.value.path == str(bad)
    assert info.value.problems[0].startswith("row 1, column header: expected columns update_id,best_bid_price")


FREQTRADE = DATA / "binance-usdm-funding-freqtrade"


@pytest.mark.skipif(not FREQTRADE.is_dir(), reason="shared data not present")
def test_freqtrade_funding_history_keeps_the_provenance_rates_exactly(tmp_path):
    out = tmp_path / "xrp"
    lines = run_import(FREQTRADE, out)
    funding = pl.read_parquet(out / "funding.parquet")
    assert funding.height == 91 and funding["scale"].unique().to_list() == [100_000_000]
    assert funding["rate"].sum() == 796_412  # 0.00796412
    low = funding.filter(pl.col("rate") == funding["rate"].min()).row(0, named=True)
    assert (low["rate"], low["ts"]) == (-219_334, 1638604800004 * 1_000_000)  # 2021-12-04 08:00:00.004
    high = funding.filter(pl.col("rate") == funding["rate"].max()).row(0, named=True)
    assert (high["rate"], high["ts"]) == (58_316, 1637884800000 * 1_000_000)  # 2021-11-26 00:00
    assert any("1 whose shortest repr has more than 8 decimals rounded half-even" in x for x in lines)
    check_table(out / "funding.parquet", FUNDING)


@needs_data
def test_imported_folders_pass_backtest_validate(btc, crash, capsys):
    for folder, _ in (btc, crash):
        assert main(["validate", str(folder)]) == 0, capsys.readouterr().err
        assert capsys.readouterr().out.strip() == f"{folder}: valid"


def test_local_time_takes_the_recorders_receive_time(tmp_path):
    src = recording(tmp_path, [BOOK, {"e": "trade", "E": 1002, "T": 1002, "s": "BTCUSDT", "t": 7,
                                      "p": "100.1", "q": "0.005", "X": "MARKET", "m": False}])
    lines = run_import(src, tmp_path / "ds", time="local")
    assert pl.read_parquet(tmp_path / "ds" / "trades.parquet")["ts"].to_list() == [2]  # line 2's local ns
    assert lines[0].endswith("ts = local receive time")


def test_the_batched_and_row_by_row_archive_readers_write_the_same_tables(archive, tmp_path):
    run_import(archive, tmp_path / "fast")
    run_import(archive, tmp_path / "slow", row_by_row=True)
    for name in ("trades", "recorded_book_ticker"):
        fast = pl.read_parquet(tmp_path / "fast" / f"{name}.parquet")
        assert fast.height > 0
        assert fast.equals(pl.read_parquet(tmp_path / "slow" / f"{name}.parquet")), name


@pytest.mark.parametrize("row_by_row", [pytest.param(False, id="batched"), pytest.param(True, id="row by row")])
def test_a_short_row_and_a_later_bad_value_are_named_by_their_file_lines(tmp_path, row_by_row):
    src = tmp_path / "in"
    bad = write_csv(src, "BTCUSDT-bookTicker-2024-01-01", None, [
        "1,42000.0,1.000,42000.1,2.000,1704067200050,1704067200051",
        "2,42000.0,1.000",
        "3,42000.0,1.000,42000.1,2.000,1704067200060,1704067200061",
        "4,42000.0,-1.000,42000.1,2.000,1704067200070,1704067200071",
        "5,42000.0,1.000,42000.1,2.000,1704067200080,x"], zipped=True)
    with pytest.raises(InputError) as info:
        run_import(src, tmp_path / "ds", row_by_row=row_by_row)
    assert info.value.path == f"{bad}:BTCUSDT-bookTicker-2024-01-01.csv"
    assert info.value.problems == [
        "row 2, column row: 3 fields where 7 are expected (value: '2,42000.0,1.000')",
        "row 4, column best_bid_qty: size must be >= 0 (value: '-1.000')",
        "row 5, column event_time: not an integer (value: 'x')"]


def test_the_same_archive_folder_imports_byte_identically(archive, tmp_path):
    run_import(archive, tmp_path / "a")
    run_import(archive, tmp_path / "b")
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert "trades.parquet" in names and "marks.parquet" in names
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
