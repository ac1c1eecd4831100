PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

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

test: $(VENV)/.installed-test $(JS)/node_modules/.installed
	$(BIN)/python -m pytest -q

lint: $(VENV)/.installed-test
	$(BIN)/ruff check bot tests bench reliability
	$(BIN)/ruff format --check bot tests bench reliability

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy bot

demo: $(VENV)/.installed-demo
	$(BIN)/crieur demo

bench: $(VENV)/.installed-bench $(VENV)/.installed-test
	$(BIN)/python -m bench

reliability: $(VENV)/.installed-test
	$(BIN)/python -m reliability

clean:
	rm -rf $(VENV) $(JS)/node_modules .pytest_cache .mypy_cache .ruff_cache
