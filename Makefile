# Everything goes through .venv, built from the locked versions in requirements.lock.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install serve demo test lint typecheck lock bench clean

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

serve: install
	$(BIN)/handwork-payments serve

demo: install
	$(BIN)/python demo_payments.py $(ARGS)

lint: install
	$(BIN)/ruff check src tests bench demo_payments.py migrations
	$(BIN)/ruff format --check src tests bench demo_payments.py migrations

typecheck: install
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/python -m pytest -q -n auto --dist loadfile

bench: install
	$(BIN)/python -m bench

# Re-resolve requirements.in into exact, hashed versions.
lock:
	$(BIN)/pip install --quiet uv && $(BIN)/uv pip compile requirements.in --python-version 3.11 --generate-hashes -o requirements.lock

clean:
	rm -rf $(VENV) .data .mypy_cache .pytest_cache .ruff_cache
