# pruneviz: `make demo` and `make test` do all set-up on a fresh machine with Python 3.11 and make.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check
DEMO_ZOO ?= build/demo-zoo
PYTEST_ARGS ?=
LINT_PATHS := pruneviz tests $(wildcard benchmarks/*.py)

.PHONY: demo lab docs typecheck test test-fast lint install install-dev bench-quick clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Runtime environment from the pinned lock (torch and triton in the same pip command), then pruneviz.
$(VENV)/.installed: $(BIN)/python requirements/lock.txt pyproject.toml
	$(PIP) install -r requirements/lock.txt
	$(PIP) install --no-deps -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements/lock-dev.txt requirements/lock-nodeps.txt
	$(PIP) install -r requirements/lock-dev.txt
	$(PIP) install --no-deps -r requirements/lock-nodeps.txt
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed
	$(BIN)/pruneviz demo --zoo $(DEMO_ZOO) --serve

# JupyterLab on the notebooks, on this machine only (127.0.0.1); the views render inline in it
lab: $(VENV)/.installed
	$(BIN)/jupyter lab --ServerApp.ip=127.0.0.1 --ServerApp.root_dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

# the notebooks executed in small mode and rendered with their outputs to build/notebooks/*.html
docs: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -p no:randomly -m notebook tests/test_notebooks.py
	@echo "notebooks rendered to build/notebooks/"

# the type checker alone on pruneviz/ (settings in pyproject.toml); lint runs it too, after ruff
typecheck: $(VENV)/.installed-dev
	$(BIN)/python -m mypy

# every tier, in a shuffled order (pytest-randomly prints the seed; -p no:randomly keeps file order)
test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# the unit and reference tiers only: no slow, notebook or browser tests
test-fast: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -m "not slow and not notebook and not browser" $(PYTEST_ARGS)

# ruff (rules and formatting) on the code, tests and benchmarks, then the type checker on pruneviz/
lint: $(VENV)/.installed-dev
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/python -m mypy

bench-quick: $(VENV)/.installed-dev
	@for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b --quick || exit 1; done

clean:
	rm -rf build .pytest_cache
