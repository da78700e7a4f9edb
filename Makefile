# hciwatch — two commands: `make demo` (install + run the main job) and `make test` (install test
# needs + the whole suite, what CI runs). Both work from a clean clone on Debian with Python 3.11.
# While working: `make check` (format, lint, types; no apt) and `make test-fast` (no peers, no slow tests).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT    := DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get
DEMO_DIR ?= demo-data
PY_DIRS := collector analytics exporters hciwatch lab tests bench

.PHONY: spark spark-deps check-deploy chaos bench-nab demo install test test-fast test-deps debian-deps lint check fuzz bench eval clean

$(BIN)/python:
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  echo "python venv module missing: installing python3-venv"; \
	  $(APT) update -qq && $(APT) install -y -qq python3-venv python3-pip && $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e .
	@touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/hciwatch demo --data-dir $(DEMO_DIR)

# Real peers the tests start on loopback (never the system's own services), and the headless
# Chromium the operator-view tests open pages in (driven by Python playwright, never downloaded).
debian-deps:
	@missing=""; \
	for pair in haproxy:haproxy mosquitto:mosquitto mosquitto_passwd:mosquitto openssl:openssl chromium:chromium node:nodejs npm:npm; do \
	  cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$cmd >/dev/null 2>&1 || [ -x /usr/sbin/$$cmd ] || [ -x /usr/bin/$$cmd ] || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then echo "installing Debian packages:$$missing"; \
	  $(APT) update -qq && $(APT) install -y -qq $$missing; fi

# Azurite (the Azure Blob emulator the lake tests write to) from npm into tools/azurite, pinned by
# tools/azurite/package-lock.json; needs Debian's nodejs + npm (debian-deps installs them).
AZURITE := tools/azurite/node_modules/.bin/azurite-blob
$(AZURITE):
	npm ci --no-audit --no-fund --prefix tools/azurite

test-deps: $(VENV)/.installed-test debian-deps $(AZURITE)

lint: test-deps
	$(BIN)/ruff check collector analytics exporters hciwatch lab tests bench
	$(BIN)/ruff format --check collector analytics exporters hciwatch lab tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

# The whole suite, with two chaos rows (kill -9 during ingest and export, full disk) and the bounded
# load measurement; the other chaos rows are marked chaos_full and run under `make chaos`.
test: test-deps lint
	$(BIN)/pytest -q -p no:cacheprovider -m "not chaos_full and not spark"

# The static gate before a commit: the same checks as `lint` (format, lint, types, import
# contracts), without installing the Debian test peers.
check: $(VENV)/.installed-test
	$(BIN)/ruff format --check $(PY_DIRS)
	$(BIN)/ruff check $(PY_DIRS)
	$(BIN)/mypy
	$(BIN)/lint-imports

# The suite without tests that start real peers (integration), replay whole scenarios (slow) or
# kill the real service (chaos).
test-fast: $(VENV)/.installed-test
	$(BIN)/pytest -q -p no:cacheprovider -m "not integration and not slow and not chaos and not spark"

# Spark (pyspark local mode on Debian's OpenJDK 17) reads the lake hciwatch writes and must agree
# with DuckDB; kept out of `make test` (a JVM start and two Spark jobs cost about a minute).
spark-deps:
	@command -v java >/dev/null 2>&1 || { $(APT) update -qq && $(APT) install -y -qq openjdk-17-jre-headless; }

$(VENV)/.installed-spark: $(VENV)/.installed-test pyproject.toml
	$(BIN)/pip install -q -e '.[test,spark]'
	@touch $@

spark: spark-deps $(VENV)/.installed-spark
	$(BIN)/pytest -q -p no:cacheprovider -m spark tests/lake

# deploy/ as shipped: Collector keys vs the components' config structs, Grafana names vs what remote-write
# produces, Pod Security "restricted", systemd hardening score, Containerfile, LICENSE, yamllint; and the
# wheel installed into a clean venv. (`check` can depend on this target.)
check-deploy: test-deps
	$(BIN)/pytest -q -p no:cacheprovider tests/deploy

fuzz: test-deps
	HYPOTHESIS_PROFILE=fuzz $(BIN)/pytest -q -p no:cacheprovider -k "fuzz"

eval: install
	$(BIN)/hciwatch eval tests/replay/scenarios/*

# `make demo`'s main job and every bench/bench_*.py (Debian's prometheus is installed for the
# side-by-side ingest run), then one summary table with the issue's goals (✔/✘) and the load average
# at start and end: ingest CPU/M and RSS vs Prometheus, bytes per series, replay samples/s parse+store
# and end to end, evaluation ms per pass at 4/50/500 hosts, parse ratio vs prometheus_client, the demo's
# wall time, and the capacity line (ingest + detectors, with its arithmetic). BENCH_PROFILE=quick: smaller.
# test-deps: the lake and fleet benches write to Azurite (tools/azurite) and moto_server ([test] extra).
BENCH_PROFILE ?= full
bench: test-deps
	$(BIN)/python bench/run_all.py --profile $(BENCH_PROFILE)

# Kill, starve and fill the disk under the real service; prints fault/accepted/stored/delivered/lost table.
# Run as root for the full-disk row (mounts a small tmpfs); prlimit(1) for descriptor exhaustion.
# Then RSS, /healthz latency and SIGTERM exit under a 1M-series target every 2 s for LOAD_SECONDS.
LOAD_SECONDS ?= 180
chaos: test-deps
	$(BIN)/pytest -q -p no:cacheprovider -m chaos
	$(BIN)/python -m tests.chaos.run
	$(BIN)/python -m tests.chaos.load --seconds $(LOAD_SECONDS)

# hciwatch anomalies on labelled NAB series with NAB's official scoring. Default: the three-series
# fixture vendored in tests/fixtures/nab; NAB_DIR=<NAB checkout or the 41-series dev subset> for real figures.
NAB_DIR ?= tests/fixtures/nab
bench-nab: install
	$(BIN)/python bench/bench_anomalies_nab.py --nab-dir "$(NAB_DIR)" --sensitivity all

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .mypy_cache .ruff_cache .hypothesis
