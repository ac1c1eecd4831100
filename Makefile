PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install test lint typecheck demo bench reliability clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# One stamp per extra, refreshed when pyproject.toml changes.
$(VENV)/.installed-%: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[$*]'
	touch $@

install: $(VENV)/.installed-test

test: $(VENV)/.installed-test
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
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
