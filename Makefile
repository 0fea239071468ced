# Two commands do the whole set-up on a fresh Debian / Raspberry Pi OS machine:
#   make test   -> system packages, virtual environment, lint, types, tests
#   make demo   -> system packages, virtual environment, the locker on the simulator
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := python3-venv python3-dev mosquitto mosquitto-clients libzbar0 socat xvfb libmtdev1 \
	fonts-wqy-microhei alsa-utils
STAMP := $(VENV)/.installed

.PHONY: test demo deps system-deps lint typecheck pytest bench clean

test: deps lint typecheck pytest

# First the example configuration and one order in one process, then the whole
# system: Mosquitto, simulated boards and scanner, lockerd and the platform.
demo: deps
	$(BIN)/locker-sim demo --config config/example.toml
	$(BIN)/locker-sim stack --stay

deps: system-deps $(STAMP)

# apt-get runs only when a package is missing, so a second `make test` is quick.
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing system packages:$$missing"; \
		$(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	$(BIN)/pip install -q -e '.[test,kiosk]'
	touch $(STAMP)

lint: deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: deps
	$(BIN)/mypy --strict locker/ drivers/ simulator/ mqtt/ kiosk_ui/

pytest: deps
	$(BIN)/pytest

bench: deps
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache

# The README's screenshots, taken again on purpose: a test run writes its own to a
# temporary folder and leaves the committed ones alone.
.PHONY: screenshots
# One pytest process a file: a window resized to 1024x600 inside a longer run is sometimes
# captured half drawn.
screenshots: deps
	@for f in tests/kiosk/test_*.py; do \
		LOCKER_SHOTS=docs/screenshots $(BIN)/pytest -q -p no:cacheprovider $$f || exit 1; \
	done

# The fault campaign: lockerd under random traffic, 200 SIGKILLs, the broker stopped for a
# minute, noisy board replies, a board and the scanner unplugged, the disk filled; prints its
# seed and counts (`make test` runs a short one: tests/test_soak.py).
.PHONY: soak
soak: deps
	$(BIN)/python -m simulator.soak --kills 200 --disk-full on
