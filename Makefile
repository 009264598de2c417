# Two commands on a fresh machine with Python 3.11 and make:
#   make demo   set up .venv, generate the crash day, replay it under the default and the
#               strict rules, diff the two, say where the reports and the diff are
#   make test   set up .venv and Debian's chromium (the report test), run the whole suite
#               (what CI runs: .ci/run)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# Rebuild the compiled matcher whenever its sources change, so tests never run a stale .so.
STAMP := $(VENV)/.installed
DEPS := requirements.txt pyproject.toml setup.py $(wildcard matching/*.py matching/*.pxd clearing/*.py clearing/*.pxd) backtest/replay.py backtest/replay.pxd backtest/split.py backtest/split.pxd

DEMO_DATA := data/crash-day
DEMO_RUN := runs/crash-day
DEMO_STRICT := runs/crash-day-strict
# Debian's chromium opens report.html in tests/e2e/test_report_chromium.py. The version this
# was tested with is tried first; Debian's security archive drops superseded builds, so the
# current one is taken when that is gone (the test needs nothing version-specific).
CHROMIUM := /usr/bin/chromium
CHROMIUM_VERSION := 156.0.8078.79-1~deb12u1
SUDO := $(shell test "$$(id -u)" = 0 || echo sudo)

.PHONY: demo test test-fast bench bench-check clean crash-2025-10-10

$(STAMP): $(DEPS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip==25.3
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-build-isolation --no-deps -e .
	@touch $(STAMP)

$(DEMO_DATA)/orders.parquet: $(STAMP)
	$(BIN)/backtest generate crash-day $(DEMO_DATA) --n 1000000 --accounts 2000 --seed 1

demo: $(STAMP) $(DEMO_DATA)/orders.parquet
	$(BIN)/backtest run $(DEMO_DATA) --out $(DEMO_RUN)
	$(BIN)/backtest run $(DEMO_DATA) --out $(DEMO_STRICT) --rules examples/strict.toml
	$(BIN)/backtest diff $(DEMO_RUN) $(DEMO_STRICT) --out runs/diff.html
	@echo "reports: $(DEMO_RUN)/report.html (default rules), $(DEMO_STRICT)/report.html (examples/strict.toml)"
	@echo "diff: runs/diff.html (open the pages in a browser; docs/run.md says what each table holds)"

# The 2025-10-10 crash day from the shared Binance archive files (examples/crash-2025-10-10).
SHARED_DATA ?= ../shared/data
crash-2025-10-10: $(STAMP)
	examples/crash-2025-10-10/run.sh $(SHARED_DATA)/binance-futures-crash-2025-10-10 runs/crash-2025-10-10
	@echo "report: runs/crash-2025-10-10/run/report.html"

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium=$(CHROMIUM_VERSION) \
	  || DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium

# The whole suite on the compiled modules, then the matching, clearing and replay suites
# (and clearing's doctests) again on the pure-Python reference modules, then one pass of each benchmark (timing off) so the suites stay runnable,
# then the benchmark gate.
test: $(STAMP) $(CHROMIUM)
	BACKTEST_REQUIRE_CHROMIUM=1 BACKTEST_REQUIRE_RAY=1 $(BIN)/python -m pytest
	PURE_PYTHON=1 $(BIN)/python -m pytest tests/matching tests/clearing tests/golden tests/backtest clearing
	$(BIN)/python -m pytest bench -m bench -q
	$(MAKE) --no-print-directory bench-check

# A developer's quick loop: skips the slow end-to-end cases (CI runs them).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not bench"

# Timed benchmarks (pytest-benchmark); figures go to the README's performance table.
bench: $(STAMP)
	$(BIN)/python -m pytest bench -m bench --benchmark-enable --benchmark-columns=min,median,rounds

# The benchmark gate (bench/gate.py, docs/bench.md): fails when the matcher's hot loop is more
# than 1.5x slower than bench/baseline.json, relative to a calibration run beside it. About 10 s.
bench-check: $(STAMP)
	$(BIN)/python -m bench.gate

clean:
	rm -rf $(VENV) build *.egg-info matching/*.c matching/*.so clearing/*.c clearing/*.so backtest/*.c backtest/*.so runs data/crash-day
