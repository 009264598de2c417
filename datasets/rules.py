"""The rule set: the manifest's `[rules]` read into exact integers, every fault named by key.

Keys read here (docs/manifest.md lists them with defaults):
- `fees = { maker, taker }` over 1e8: fee tier 0; `fee_tiers = [[maker, taker], ...]`
  tiers 1, 2, ... (an account's `fee_tier` indexes them).
- `margin_tiers.SYMBOL = [[floor, mmr, amount(, max_leverage)], ...]` and
  `max_leverage.SYMBOL`: required for every instrument a clearing replay trades.
- `funding = { interval_s, cap, floor }`: the premium-index interval and the rate clamp.
- `liquidation = { execution, band, fee }`: `ioc_at_bankruptcy` | `sweep` | `partial`; the
  sweep band over 1e8 of mark; the partial mode's liquidation fee over 1e8.
- `insurance_fund = { opening, floor, asset, max_takeover }`: the fund's opening balance
  and floor in minor units of `asset` (default USDT, or the only settlement asset); the cap
  on the bankruptcy notional of parcels it may hold, over 1e8 of its balance (none).
- `adl = { ranking, fees }`: `bitmex` | `binance`; whether ADL fills pay the deleveraged
  account's taker fee (false).
- `interest = { interval_s, rates = { ASSET = rate } }`: debt interest (multi-asset mode)
  per interval over 1e8 (default hourly, no rates).
- `collateral_tiers.ASSET = [["upper bound", ratio], ...]`: a non-stable asset's collateral
  ratio over 1e8 per tier, upper bounds in whole units ascending (an asset without tiers
  counts nothing, a stablecoin 100%).
- `conversion = { spread }`: over 1e8, taken off the price of what a `repay` converts (0).
- `market = { queue_model }`: a market-data replay's queue model for our resting orders,
  `front` | `proportional` (matching/market.py; default `front`).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

from clearing.liquidation import ADL_RANKINGS, EXECUTIONS
from clearing.margin import MarginTiers, TierError
from clearing.settlement import FeeSchedule
from matching.errors import InputError

DEFAULT_FEES = (20_000, 50_000)  # maker, taker over 1e8
# Every key a [rules] table may hold.
RULE_KEYS = ("fees", "fee_tiers", "margin_tiers", "max_leverage", "funding", "liquidation",
             "insurance_fund", "adl", "stp", "interest", "collateral_tiers", "conversion", "market")
DEFAULT_FUNDING = {"interval_s": 28_800, "cap": 300_000, "floor": -300_000}
DEFAULT_LIQUIDATION = {"execution": "sweep", "band": 5_000_000, "fee": 0}
DEFAULT_FUND = {"opening": 0, "floor": 0, "asset": None, "max_takeover": None}
DEFAULT_ADL = {"ranking": "bitmex", "fees": False}
DEFAULT_INTEREST = {"interval_s": 3_600, "rates": {}}
DEFAULT_CONVERSION = {"spread": 0}
DEFAULT_MARKET = {"queue_model": "front"}
QUEUE_MODELS = ("front", "proportional")  # matching/market.py QUEUE_MODELS
SCALE = 100_000_000


@dataclass(frozen=True)
class RuleSet:
    fees: FeeSchedule
    margin_tiers: dict[str, MarginTiers]
    funding_interval_s: int
    funding_cap: int
    funding_floor: int
    execution: str = "sweep"
    band: int = 5_000_000
    liquidation_fee: int = 0
    fund_opening: int = 0
    fund_floor: int = 0
    fund_asset: str = "USDT"
    adl_ranking: str = "bitmex"
    max_takeover: int | None = None  # over 1e8 of the fund's balance
    adl_fees: bool = False
    interest_interval_s: int = 3_600
    interest_rates: dict[str, int] = field(default_factory=dict)  # asset -> rate over 1e8
    # asset -> ((upper bound in whole units, ratio over 1e8), ...), bounds ascending
    collateral_tiers: dict[str, tuple[tuple[Decimal, int], ...]] = field(default_factory=dict)
    conversion_spread: int = 0
    queue_model: str = "front"


def _int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _table(rules: dict, name: str, defaults: dict, problems: list[str]) -> dict:
    """`rules.name` merged over `defaults`; unknown keys are faults."""
    given = rules.get(name, {})
    if not isinstance(given, dict):
        problems.append(f"rules.{name}: expected a table, got {given!r}")
        return dict(defaults)
    merged = dict(defaults)
    for key, value in given.items():
        if key not in defaults:
            problems.append(f"rules.{name}.{key}: unknown key; one of {', '.join(defaults)}")
        else:
            merged[key] = value
    return merged


def _collateral_rows(where: str, rows: object, problems: list[str]) -> tuple[tuple[Decimal, int], ...]:
    """An asset's collateral tiers read and checked (bounds ascend from 0, ratios 0..1e8)."""
    if not isinstance(rows, list) or not rows:
        problems.append(f'{where}: expected [["upper bound", ratio over 1e8], ...], got {rows!r}')
        return ()
    read, bound = [], Decimal(0)
    for i, row in enumerate(rows):
        if not (isinstance(row, list) and len(row) == 2 and isinstance(row[0], str) and _int(row[1])):
            problems.append(f'{where}[{i}]: expected ["upper bound", ratio over 1e8], got {row!r}')
            continue
        try:
            upper = Decimal(row[0])
        except InvalidOperation:
            problems.append(f"{where}[{i}]: upper bound {row[0]!r} is not a decimal number")
            continue
        if not upper.is_finite() or upper <= bound:
            problems.append(f"{where}[{i}]: upper bounds must ascend from 0, got {row[0]!r} after {bound}")
            continue
        if not 0 <= row[1] <= SCALE:
            problems.append(f"{where}[{i}]: ratio over 1e8 in 0..100,000,000, got {row[1]:,}")
            continue
        bound = upper
        read.append((upper, row[1]))
    return tuple(read)


def _multi_asset_rules(rules: dict, assets: list[str] | None, problems: list[str]) -> tuple:
    """(interest interval, interest rates, collateral tiers, conversion spread)."""
    known = set(assets) if assets is not None else None
    interest = _table(rules, "interest", DEFAULT_INTEREST, problems)
    interval = interest["interval_s"]
    if not _int(interval) or interval <= 0:
        problems.append(f"rules.interest.interval_s: an integer > 0, got {interval!r}")
        interval = DEFAULT_INTEREST["interval_s"]
    rates = interest["rates"]
    if not isinstance(rates, dict):
        problems.append(f"rules.interest.rates: expected {{ ASSET = INT }}, got {rates!r}")
        rates = {}
    good_rates = {}
    for asset, rate in sorted(rates.items()):
        if known is not None and asset not in known:
            problems.append(f"rules.interest.rates.{asset}: not an asset of [assets]")
        elif not _int(rate) or not 0 <= rate <= SCALE:
            problems.append(f"rules.interest.rates.{asset}: a rate over 1e8 in 0..100,000,000, got {rate!r}")
        else:
            good_rates[asset] = rate
    tiers = rules.get("collateral_tiers", {})
    collateral = {}
    if not isinstance(tiers, dict):
        problems.append(f"rules.collateral_tiers: expected ASSET = [[upper bound, ratio], ...], got {tiers!r}")
        tiers = {}
    for asset, rows in sorted(tiers.items()):
        if known is not None and asset not in known:
            problems.append(f"rules.collateral_tiers.{asset}: not an asset of [assets]")
            continue
        collateral[asset] = _collateral_rows(f"rules.collateral_tiers.{asset}", rows, problems)
    conversion = _table(rules, "conversion", DEFAULT_CONVERSION, problems)
    spread = conversion["spread"]
    if not _int(spread) or not 0 <= spread < SCALE:
        problems.append(f"rules.conversion.spread: an integer over 1e8 in 0..99,999,999, got {spread!r}")
        spread = 0
    return interval, good_rates, collateral, spread


def load_rules(rules: dict, symbols: list[str], source: str, settle_assets: list[str] | None = None,
               *, assets: list[str] | None = None) -> RuleSet:
    """Read `rules` (the manifest's [rules], overrides applied) for `symbols`; raise
    InputError naming `source` and every bad key. `assets`: the manifest's assets (the
    multi-asset keys must name them)."""
    problems: list[str] = []
    manifest_assets = assets
    for key in rules:
        if key not in RULE_KEYS:
            problems.append(f"rules.{key}: unknown key; one of {', '.join(RULE_KEYS)}")
    fees = rules.get("fees", {"maker": DEFAULT_FEES[0], "taker": DEFAULT_FEES[1]})
    tiers: list[tuple[int, int]] = []
    if not isinstance(fees, dict) or not _int(fees.get("maker")) or not _int(fees.get("taker")):
        problems.append(f"rules.fees: expected {{ maker = INT, taker = INT }} over 1e8, got {fees!r}")
    else:
        tiers.append((fees["maker"], fees["taker"]))
    fee_tiers = rules.get("fee_tiers", [])
    if not isinstance(fee_tiers, list):
        problems.append(f"rules.fee_tiers: expected an array of [maker, taker] rows, got {fee_tiers!r}")
        fee_tiers = []
    for i, row in enumerate(fee_tiers, start=1):
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
    for name, given in (("margin_tiers", table), ("max_leverage", leverage)):
        if not isinstance(given, dict):
            problems.append(f"rules.{name}: expected a table of symbols, got {given!r}")
        else:
            problems += [f"rules.{name}.{key}: not an instrument of [instruments] ({', '.join(symbols)})"
                         for key in sorted(set(given) - set(symbols))]
    for symbol in symbols:
        rows = table.get(symbol) if isinstance(table, dict) else None
        if rows is None:
            problems.append(f"rules.margin_tiers.{symbol}: missing (rows of [floor, mmr, amount])")
            continue
        lev = leverage.get(symbol) if isinstance(leverage, dict) else None
        if lev is not None and (not _int(lev) or lev < 1):
            problems.append(f"rules.max_leverage.{symbol}: must be an integer >= 1, got {lev!r}")
            continue
        if not (isinstance(rows, list) and all(isinstance(r, list) and all(_int(v) for v in r) for r in rows)):
            problems.append(f"rules.margin_tiers.{symbol}: expected an array of [floor, mmr, amount] "
                            f"integer rows, got {rows!r}")
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
    liquidation = _table(rules, "liquidation", DEFAULT_LIQUIDATION, problems)
    if liquidation["execution"] not in EXECUTIONS:
        problems.append(f"rules.liquidation.execution: {liquidation['execution']!r}; one of {', '.join(EXECUTIONS)}")
    for key in ("band", "fee"):
        value = liquidation[key]
        if not _int(value) or not 0 <= value < 100_000_000:
            problems.append(f"rules.liquidation.{key}: an integer over 1e8 in 0..99,999,999, got {value!r}")
    fund = _table(rules, "insurance_fund", DEFAULT_FUND, problems)
    for key in ("opening", "floor"):
        if not _int(fund[key]):
            problems.append(f"rules.insurance_fund.{key}: must be an integer (minor units), got {fund[key]!r}")
    assets = sorted(set(settle_assets or ["USDT"]))
    asset = fund["asset"] or ("USDT" if "USDT" in assets or not assets else assets[0])
    if asset not in assets:
        problems.append(f"rules.insurance_fund.asset: {asset!r} is not a settlement asset ({', '.join(assets)})")
    if _int(fund["opening"]) and _int(fund["floor"]) and fund["opening"] < fund["floor"]:
        problems.append(f"rules.insurance_fund: opening {fund['opening']} below floor {fund['floor']}")
    cap = fund["max_takeover"]
    if cap is not None and (not _int(cap) or cap < 0):
        problems.append(f"rules.insurance_fund.max_takeover: an integer over 1e8 of the fund's balance, got {cap!r}")
    adl = _table(rules, "adl", DEFAULT_ADL, problems)
    if adl["ranking"] not in ADL_RANKINGS:
        problems.append(f"rules.adl.ranking: {adl['ranking']!r}; one of {', '.join(ADL_RANKINGS)}")
    if not isinstance(adl["fees"], bool):
        problems.append(f"rules.adl.fees: true or false, got {adl['fees']!r}")
    interval, rates, collateral, spread = _multi_asset_rules(rules, manifest_assets, problems)
    market = _table(rules, "market", DEFAULT_MARKET, problems)
    if market["queue_model"] not in QUEUE_MODELS:
        problems.append(f"rules.market.queue_model: {market['queue_model']!r}; one of {', '.join(QUEUE_MODELS)}")
    if problems:
        raise InputError(source, problems)
    return RuleSet(FeeSchedule(tuple(tiers)), margin, funding["interval_s"], funding["cap"],
                   funding["floor"], liquidation["execution"], liquidation["band"],
                   liquidation["fee"], fund["opening"], fund["floor"], asset, adl["ranking"],
                   cap, adl["fees"], interval, rates, collateral, spread, market["queue_model"])


def read_rule_file(path: Path) -> dict:
    """A rule file for `--rules`: the keys of a manifest's [rules], at the top level or
    inside a [rules] table. Raises InputError naming the file."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(str(path), ["file not found"]) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(str(path), [f"not valid TOML: {exc}"]) from None
    if set(doc) == {"rules"} and isinstance(doc["rules"], dict):
        doc = doc["rules"]
    unknown = [f"{key}: unknown key; one of {', '.join(RULE_KEYS)}" for key in doc if key not in RULE_KEYS]
    if unknown:
        raise InputError(str(path), unknown)
    return doc


def merge_rules(base: dict, override: dict) -> dict:
    """`override` over `base`: tables merge key by key (recursively), anything else
    (numbers, strings, arrays such as a tier table) is replaced whole."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_rules(merged[key], value)
        else:
            merged[key] = value
    return merged


def dump_rules(rules: dict) -> str:
    """The effective rule set as TOML (keys sorted, so identical rules give identical
    bytes): what a run folder's rules.toml holds, readable back by --rules."""
    lines = ["# The rule set this run used: the dataset's [rules] with any --rules file over it.",
             "[rules]"]
    tables: list[tuple[str, dict]] = []
    for key in sorted(rules):
        value = rules[key]
        if isinstance(value, dict) and any(isinstance(v, dict) or isinstance(v, list) for v in value.values()):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    for key, table in tables:
        lines.append("")
        lines.append(f"[rules.{key}]")
        for sub in sorted(table):
            lines.append(f"{_toml_key(sub)} = {_toml_value(table[sub])}")
    return "\n".join(lines) + "\n"


def _toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else '"' + key.replace('"', '\\"') + '"'


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(value[k])}" for k in sorted(value)) + " }"
    raise TypeError(f"a rule value of type {type(value).__name__} cannot be written as TOML: {value!r}")
