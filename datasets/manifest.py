"""`dataset.toml`: instruments, assets and rules, read and checked into exact integers.

Keys beyond DESIGN.md's example (documented in docs/manifest.md):
- `[instruments.X] price_step` (ticks, default 1) and `qty_step` (lots, default 1): the
  venue's tick and lot rules expressed on the dataset's grid, so a rule file can make the
  grid coarser (off-grid orders are then rejected `off_tick` / `invalid_qty`).
- `[rules] stp`: the default self-trade prevention of orders whose `stp` is null.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

from matching import SymbolRules
from matching.errors import InputError
from matching.types import STP_NAMES

INSTRUMENT_KINDS = ("linear_perpetual", "inverse_perpetual", "spot", "equity")


@dataclass(frozen=True)
class Asset:
    name: str
    minor_unit: Decimal  # value of one minor unit, e.g. 0.00000001
    stable: bool


@dataclass(frozen=True)
class Instrument:
    symbol: str
    kind: str
    base: str
    settle: str
    tick_size: Decimal
    lot_size: Decimal
    min_qty: int  # lots
    price_step: int  # ticks
    qty_step: int  # lots
    notional_factor: int  # K: minor units of `settle` per tick x lot

    def matcher_rules(self) -> SymbolRules:
        return SymbolRules(price_step=self.price_step, qty_step=self.qty_step, min_qty=self.min_qty)


@dataclass(frozen=True)
class Manifest:
    path: Path
    name: str
    start_ns: int | None
    end_ns: int | None
    provenance: str
    assets: dict[str, Asset]
    instruments: dict[str, Instrument]
    rules: dict
    default_stp: int

    def matcher_rules(self) -> dict[str, SymbolRules]:
        return {s: i.matcher_rules() for s, i in sorted(self.instruments.items())}


def _decimal(value: object, where: str, problems: list[str]) -> Decimal | None:
    if not isinstance(value, str):
        problems.append(f"{where}: expected a decimal string such as \"0.1\", got {value!r}")
        return None
    try:
        d = Decimal(value)
    except InvalidOperation:
        problems.append(f"{where}: not a decimal number: {value!r}")
        return None
    if not d.is_finite() or d <= 0:
        problems.append(f"{where}: must be a positive decimal, got {value!r}")
        return None
    return d


def _positive_int(table: dict, key: str, default: int, where: str, problems: list[str]) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        problems.append(f"{where}.{key}: must be a positive integer, got {value!r}")
        return default
    return value


def _tables(doc: dict, key: str, problems: list[str]) -> dict:
    """doc[key] if it is a TOML table (or absent: empty); a fault otherwise."""
    value = doc.get(key, {})
    if not isinstance(value, dict):
        problems.append(f"{key}: expected a table [{key}], got {value!r}")
        return {}
    return value


def load_manifest(dataset: Path) -> Manifest:
    """Read `DATASET/dataset.toml`; raise InputError listing every fault found."""
    path = dataset / "dataset.toml"
    if not path.is_file():
        raise InputError(str(path), ["file not found: a dataset folder holds dataset.toml"])
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(str(path), [f"not valid TOML: {exc}"]) from None
    problems: list[str] = []
    tables = {key: _tables(doc, key, problems) for key in ("dataset", "assets", "instruments", "rules")}
    meta = tables["dataset"]
    if not isinstance(meta.get("name"), str):
        problems.append("dataset.name: required string")
    assets: dict[str, Asset] = {}
    for name, spec in sorted(tables["assets"].items()):
        where = f"assets.{name}"
        if not isinstance(spec, dict):
            problems.append(f"{where}: expected a table [{where}], got {spec!r}")
            continue
        unit = _decimal(spec.get("minor_unit"), f"{where}.minor_unit", problems)
        if unit is not None:
            assets[name] = Asset(name, unit, bool(spec.get("stable", False)))
    instruments: dict[str, Instrument] = {}
    if not tables["instruments"]:
        problems.append("instruments: at least one [instruments.SYMBOL] table is required")
    for symbol, spec in sorted(tables["instruments"].items()):
        where = f"instruments.{symbol}"
        if not isinstance(spec, dict):
            problems.append(f"{where}: expected a table [{where}], got {spec!r}")
            continue
        kind = spec.get("kind", "linear_perpetual")
        if kind not in INSTRUMENT_KINDS:
            problems.append(f"{where}.kind: unknown kind {kind!r}; one of {', '.join(INSTRUMENT_KINDS)}")
        tick = _decimal(spec.get("tick_size"), f"{where}.tick_size", problems)
        lot = _decimal(spec.get("lot_size"), f"{where}.lot_size", problems)
        settle = spec.get("settle")
        if settle not in assets:
            problems.append(f"{where}.settle: {settle!r} is not an asset of [assets]")
        min_qty = _positive_int(spec, "min_qty", 1, where, problems)
        price_step = _positive_int(spec, "price_step", 1, where, problems)
        qty_step = _positive_int(spec, "qty_step", 1, where, problems)
        if tick is None or lot is None or settle not in assets:
            continue
        factor = tick * lot / assets[settle].minor_unit
        if factor != factor.to_integral_value():
            problems.append(
                f"{where}: tick_size x lot_size = {tick * lot} is not a whole number of "
                f"{settle} minor units ({assets[settle].minor_unit})"
            )
            continue
        instruments[symbol] = Instrument(
            symbol, kind, str(spec.get("base", "")), settle, tick, lot, min_qty, price_step,
            qty_step, int(factor),
        )
    rules = tables["rules"]
    stp = rules.get("stp", "cancel_taker")
    if stp not in STP_NAMES:
        problems.append(f"rules.stp: unknown value {stp!r}; one of {', '.join(STP_NAMES)}")
        stp = "cancel_taker"
    if problems:
        raise InputError(str(path), problems)
    return Manifest(
        path=path,
        name=meta["name"],
        start_ns=meta.get("start_ns"),
        end_ns=meta.get("end_ns"),
        provenance=str(meta.get("provenance", "")),
        assets=assets,
        instruments=instruments,
        rules=rules,
        default_stp=STP_NAMES.index(stp),
    )
