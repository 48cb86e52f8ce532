# Quick start: `make demo` and `make test` work on a fresh machine with Python 3.11 and make.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DB ?= demo.db

LOCK := requirements-lock.txt

.PHONY: venv demo demo-sandbox test install-test lint bench lock upgrade-lock clean

# Every extra (all, test, dev) at the exact versions of the lock file, then itam-sync itself (editable).
$(BIN)/itam-sync: pyproject.toml setup.py $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r $(LOCK)
	$(BIN)/python -m pip install -q --no-deps -e .
	$(BIN)/python -m pip check
	touch $(BIN)/itam-sync

venv: $(BIN)/itam-sync

# The lock file: exact versions of every dependency (all extras, test, dev) for Python 3.11-3.13 on every
# platform. `make lock` after editing pyproject.toml's dependencies (keeps the other pins); `make upgrade-lock`
# moves everything to the newest releases pyproject.toml allows; one package: make lock UPGRADE='-P boto3'.
UPGRADE ?=
lock: venv
	$(BIN)/uv pip compile pyproject.toml --extra all --extra test --extra dev --universal --python-version 3.11 \
		--custom-compile-command 'make lock' -q $(UPGRADE) -o $(LOCK)

upgrade-lock:
	$(MAKE) lock UPGRADE=--upgrade

# Build the sdist and wheel, install the wheel outside the repository (core only, then [all]) and use it.
install-test: venv
	.ci/install-test

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
	rm -rf $(VENV) dist $(DEMO_DB) $(DEMO_DB)-wal $(DEMO_DB)-shm sandbox.db sandbox.db-wal sandbox.db-shm .pytest_cache
