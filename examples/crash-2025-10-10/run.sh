#!/bin/sh
# Replay BTCUSDT on 2025-10-10 against the book rebuilt from Binance's bookDepth bands, with
# a population of leveraged accounts sized from a stated open interest. README.md (beside
# this file) says what each step does and which numbers are assumptions.
#   examples/crash-2025-10-10/run.sh [SHARED_DATA_DIR] [WORK_DIR]
# (or `make crash-2025-10-10`). Needs .venv (make .venv/.installed).
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SRC=${1:-$ROOT/../shared/data/binance-futures-crash-2025-10-10}
WORK=${2:-$ROOT/runs/crash-2025-10-10}
BT="$ROOT/.venv/bin/backtest"
rm -rf "$WORK/data" "$WORK/run"
mkdir -p "$WORK"
"$BT" import binance "$SRC" "$WORK/data" --klines mark --symbol BTCUSDT
"$BT" generate depth "$WORK/data" --from-bands --levels-per-band 20
"$BT" generate population "$WORK/data" --open-interest 80000 --long-short-ratio 1.2 \
    --accounts 10000 --seed 1
"$BT" run "$WORK/data" --out "$WORK/run" --rules "$HERE/rules.toml"
