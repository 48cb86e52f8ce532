# Quick start: `make demo` and `make test` work on a fresh machine with Python 3.11 and make.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DB ?= demo.db

.PHONY: venv demo demo-sandbox test lint bench clean

$(BIN)/itam-sync: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,dev]'
	touch $(BIN)/itam-sync

venv: $(BIN)/itam-sync

# The file demo (demo.db), then the real API connectors against the local vendor sandbox (sandbox.db).
demo: venv
	rm -f $(DEMO_DB) $(DEMO_DB)-wal $(DEMO_DB)-shm
	$(BIN)/itam-sync run --config config/demo.yaml --full
	$(BIN)/itam-sync summary --config config/demo.yaml
	@echo
	@echo "== the same engine through the real API connectors, against itam-sync sandbox (sandbox.db) =="
	$(MAKE) --no-print-directory demo-sandbox

# The real API connectors (Okta, Entra, Intune, Defender, Jamf, Kandji, CrowdStrike, SentinelOne, BambooHR)
# against `itam-sync sandbox`: fake vendor APIs on 127.0.0.1, no credentials needed. Store: sandbox.db.
demo-sandbox: venv
	rm -f sandbox.db sandbox.db-wal sandbox.db-shm
	$(BIN)/itam-sync sandbox --devices 500 --port-base 0 -- sh -c \
		'$(BIN)/itam-sync run --config config/sandbox.yaml --full && $(BIN)/itam-sync summary --config config/sandbox.yaml'

# The whole suite, then the date-sensitive tests again with the clock 3 years ahead and 1 year back (issue 12).
test: venv
	$(BIN)/python -m pytest
	$(BIN)/python -m pytest -m clock --clock-shift=+3y
	$(BIN)/python -m pytest -m clock --clock-shift=-1y

lint: venv
	$(BIN)/ruff check itam_sync connectors tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: venv
	$(BIN)/python bench/bench_merge.py --devices 25000

clean:
	rm -rf $(VENV) $(DEMO_DB) $(DEMO_DB)-wal $(DEMO_DB)-shm sandbox.db sandbox.db-wal sandbox.db-shm .pytest_cache
