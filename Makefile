# One command runner for people and CI. `make demo` and `make test` do all set-up
# on a fresh machine that has only Python, Node.js/npm and Debian's apt.

PYTHON  ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-stamp
NPM_STAMP := contracts/node_modules/.installed-stamp
# Debian packages the tests use: servers they start (Mosquitto, PostgreSQL), the browser
# the explorer tests drive, docker-compose and nginx to validate the deployment files.
APT_PACKAGES := mosquitto chromium postgresql docker-compose nginx-light gcc libc6-dev libmbedtls-dev

.PHONY: demo test lint typecheck unit install system-deps node-deps bench clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip==26.3"
	$(BIN)/pip install --quiet -c requirements.lock -e '.[all,dev]'
	touch $@

node-deps: $(NPM_STAMP)

$(NPM_STAMP): contracts/package.json contracts/package-lock.json
	cd contracts && npm ci --no-audit --no-fund --loglevel=error
	touch $@

system-deps:
	@bash scripts/install_system_deps.sh $(APT_PACKAGES)

demo: install node-deps
	$(BIN)/qkd-notary demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

unit: install node-deps system-deps
	$(BIN)/pytest

test: lint typecheck unit

bench: install node-deps
	for b in qkd chain notary swap device; do $(BIN)/python scripts/bench_$$b.py || exit 1; done

clean:
	rm -rf $(VENV) contracts/node_modules .mypy_cache .ruff_cache .pytest_cache
