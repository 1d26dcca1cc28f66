# Two commands on a fresh machine: `make demo` (train and evaluate on the built-in demo photos)
# and `make test` (the whole test suite). Both make .venv and install the project first;
# `make install` alone does that, then `source .venv/bin/activate` puts `catdog` on the PATH.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint install clean config-docs

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/catdog demo

# One worker per core, at most 8 (each holds its own torch and fixtures, about 1.5 GB): most
# tests wait on a single-threaded subprocess, so two workers on two cores halve the time.
test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --maxprocesses 8

# The README's table of config keys, from the schema's docstrings (`catdog config keys`).
config-docs: $(STAMP)
	$(BIN)/python -c "import pathlib, catdog.schema_docs as s; p = pathlib.Path('README.md'); \
	p.write_text(s.readme_with_keys(p.read_text()))"

lint: $(STAMP)
	$(BIN)/ruff check catdog tests scripts
	$(BIN)/ruff format --check catdog tests scripts

clean:
	rm -rf $(VENV) data/demo runs
