# Millet Pay. `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck bench clean zbar

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/millet demo

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

typecheck: $(STAMP)
	$(BIN)/mypy

# The QR tests read rendered codes back with zbar (pyzbar), which needs Debian's libzbar0.
zbar:
	@ldconfig -p | grep -q libzbar || { DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libzbar0 >/dev/null; }

# PostgreSQL: MILLET_TEST_POSTGRES_URL if set, else the tests start a throw-away
# server themselves (pgserver, installed with the dev extras).
test: lint typecheck zbar
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/millet bench ledger --json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache millet.db millet.db-wal millet.db-shm \
		millet-bank-*.db millet-bank-*.db-wal millet-bank-*.db-shm \
		millet-network.db millet-network.db-wal millet-network.db-shm millet-acquirer.json
