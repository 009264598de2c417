"""The rule set: the manifest's `[rules]` read into exact integers, every fault named by key.

Keys read here (docs/manifest.md lists them with defaults):
- `fees = { maker, taker }` over 1e8: fee tier 0; `fee_tiers = [[maker, taker], ...]`
  tiers 1, 2, ... (an account's `fee_tier` indexes them).
- `margin_tiers.SYMBOL = [[floor, mmr, amount(, max_leverage)], ...]` and
  `max_leverage.SYMBOL`: required for every instrument a clearing replay trades.
- `funding = { interval_s, cap, floor }`: the premium-index interval and the rate clamp.
"""

from __future__ import annotations

from dataclasses import dataclass

from clearing.margin import MarginTiers, TierError
from clearing.settlement import FeeSchedule
from matching.errors import InputError

DEFAULT_FEES = (20_000, 50_000)  # maker, taker over 1e8
DEFAULT_FUNDING = {"interval_s": 28_800, "cap": 300_000, "floor": -300_000}


@dataclass(frozen=True)
class RuleSet:
    fees: FeeSchedule
    margin_tiers: dict[str, MarginTiers]
    funding_interval_s: int
    funding_cap: int
    funding_floor: int


def _int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def load_rules(rules: dict, symbols: list[str], source: str) -> RuleSet:
    """Read `rules` (the manifest's [rules], overrides applied) for `symbols`; raise
    InputError naming `source` and every bad key."""
    problems: list[str] = []
    fees = rules.get("fees", {"maker": DEFAULT_FEES[0], "taker": DEFAULT_FEES[1]})
    tiers: list[tuple[int, int]] = []
    if not isinstance(fees, dict) or not _int(fees.get("maker")) or not _int(fees.get("taker")):
        problems.append(f"rules.fees: expected {{ maker = INT, taker = INT }} over 1e8, got {fees!r}")
    else:
        tiers.append((fees["maker"], fees["taker"]))
    for i, row in enumerate(rules.get("fee_tiers", []), start=1):
        if not (isinstance(row, list) and len(row) == 2 and all(_int(v) for v in row)):
            problems.append(f"rules.fee_tiers[{i - 1}] (fee tier {i}): expected [maker, taker] integers, got {row!r}")
        else:
            tiers.append((row[0], row[1]))
    for i, (maker, taker) in enumerate(tiers):
        if taker < 0 or not -taker <= maker <= 10_000_000 or taker > 10_000_000:
            problems.append(f"fee tier {i}: maker {maker}, taker {taker} out of range "
                            "(0 <= taker <= 10%, -taker <= maker <= 10%)")
    margin: dict[str, MarginTiers] = {}
    table = rules.get("margin_tiers", {})
    leverage = rules.get("max_leverage", {})
    for symbol in symbols:
        rows = table.get(symbol) if isinstance(table, dict) else None
        if rows is None:
            problems.append(f"rules.margin_tiers.{symbol}: missing (rows of [floor, mmr, amount])")
            continue
        lev = leverage.get(symbol) if isinstance(leverage, dict) else None
        if lev is not None and (not _int(lev) or lev < 1):
            problems.append(f"rules.max_leverage.{symbol}: must be an integer >= 1, got {lev!r}")
            continue
        try:
            margin[symbol] = MarginTiers.from_rows(rows, max_leverage=lev)
        except TierError as exc:
            problems.append(f"rules.margin_tiers.{symbol}: {exc}")
    funding = dict(DEFAULT_FUNDING)
    given = rules.get("funding", {})
    if not isinstance(given, dict):
        problems.append(f"rules.funding: expected a table, got {given!r}")
        given = {}
    for key, value in given.items():
        if key not in DEFAULT_FUNDING:
            problems.append(f"rules.funding.{key}: unknown key; one of {', '.join(DEFAULT_FUNDING)}")
        elif not _int(value):
            problems.append(f"rules.funding.{key}: must be an integer, got {value!r}")
        else:
            funding[key] = value
    if funding["interval_s"] <= 0:
        problems.append(f"rules.funding.interval_s: must be > 0, got {funding['interval_s']}")
    if funding["floor"] > funding["cap"]:
        problems.append(f"rules.funding: floor {funding['floor']} above cap {funding['cap']}")
    if problems:
        raise InputError(source, problems)
    return RuleSet(FeeSchedule(tuple(tiers)), margin, funding["interval_s"], funding["cap"],
                   funding["floor"])
