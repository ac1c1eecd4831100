PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# A second environment with the lowest versions pyproject.toml declares (DESIGN §7).
FLOORS := .venv-floors

.PHONY: install js test lint typecheck demo bench reliability clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# One stamp per extra, refreshed when pyproject.toml changes.
$(VENV)/.installed-%: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[$*]'
	touch $@

install: $(VENV)/.installed-test

# The Element-like test client (matrix-js-sdk in Node), reinstalled when its lock file changes.
JS := tests/js
$(JS)/node_modules/.installed: $(JS)/package-lock.json $(JS)/package.json
	cd $(JS) && npm ci
	touch $@

js: $(JS)/node_modules/.installed

$(FLOORS)/.installed: pyproject.toml .ci/floors.py
	rm -rf $(FLOORS)
	$(PYTHON) -m venv $(FLOORS)
	$(PYTHON) .ci/floors.py pyproject.toml > $(FLOORS)/floors.txt
	$(FLOORS)/bin/python -m pip install --quiet -r $(FLOORS)/floors.txt
	$(FLOORS)/bin/python -m pip install --quiet --no-deps -e .
	touch $@

# Everything, then the unit tests (those without Synapse) again against the floors.
test: $(VENV)/.installed-test $(JS)/node_modules/.installed $(FLOORS)/.installed
	$(BIN)/python -m pytest -q
	$(FLOORS)/bin/python -m pytest -q -p no:cacheprovider -m "not synapse"

lint: $(VENV)/.installed-test
	$(BIN)/ruff check bot tests bench reliability .ci
	$(BIN)/ruff format --check bot tests bench reliability .ci

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy bot

demo: $(VENV)/.installed-demo
	$(BIN)/crieur demo

bench: $(VENV)/.installed-bench $(VENV)/.installed-test
	$(BIN)/python -m bench

reliability: $(VENV)/.installed-test
	$(BIN)/python -m reliability

clean:
	rm -rf $(VENV) $(FLOORS) $(JS)/node_modules .pytest_cache .mypy_cache .ruff_cache
