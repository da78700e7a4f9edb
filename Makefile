# hciwatch — two commands: `make demo` (install + run the main job) and `make test` (install test
# needs + the whole suite). Both work from a clean clone on Debian with Python 3.11.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT    := DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get
DEMO_DIR ?= demo-data

.PHONY: chaos bench-nab demo install test test-deps debian-deps lint fuzz bench eval clean

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
	for pair in haproxy:haproxy mosquitto:mosquitto mosquitto_passwd:mosquitto openssl:openssl chromium:chromium; do \
	  cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$cmd >/dev/null 2>&1 || [ -x /usr/sbin/$$cmd ] || [ -x /usr/bin/$$cmd ] || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then echo "installing Debian packages:$$missing"; \
	  $(APT) update -qq && $(APT) install -y -qq $$missing; fi

test-deps: $(VENV)/.installed-test debian-deps

lint: test-deps
	$(BIN)/ruff check collector analytics exporters hciwatch lab tests bench
	$(BIN)/ruff format --check collector analytics exporters hciwatch lab tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

test: test-deps lint
	$(BIN)/pytest -q -p no:cacheprovider

fuzz: test-deps
	HYPOTHESIS_PROFILE=fuzz $(BIN)/pytest -q -p no:cacheprovider -k "fuzz"

eval: install
	$(BIN)/hciwatch eval tests/replay/scenarios/*

bench: install
	@for b in bench/bench_*.py; do \
	  case $$b in *_nab.py) echo "== $$b: skipped, needs NAB data (make bench-nab NAB_DIR=...)"; continue;; esac; \
	  echo "== $$b"; $(BIN)/python $$b || exit 1; done

# Kill, starve and fill the disk under the real service; prints fault/accepted/stored/delivered/lost table.
# Run as root for the full-disk row (mounts a small tmpfs); prlimit(1) for descriptor exhaustion.
chaos: test-deps
	$(BIN)/python -m tests.chaos.run

# The anomaly scorer on labelled NAB series (git clone https://github.com/numenta/NAB; AGPL, not vendored).
bench-nab: install
	@for s in low medium high; do echo "== sensitivity $$s"; \
	  $(BIN)/python bench/bench_anomalies_nab.py --nab-dir "$(NAB_DIR)" --sensitivity $$s || exit 1; done

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .mypy_cache .ruff_cache .hypothesis
