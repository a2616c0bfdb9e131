# Everyday commands. `make run` and `make test` bootstrap everything they need on a fresh machine.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | sha1sum | cut -c1-12)
export DOORSTEP_PORT ?= 8000

.PHONY: run test test-fast test-browser bench lint format install system-deps clean

$(STAMP): pyproject.toml constraints.txt
	@echo "==> installing Python packages into $(VENV)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip wheel
	@$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

system-deps:
	@scripts/system-deps.sh

run: install
	@mkdir -p var
	@$(BIN)/doorstep migrate
	@DOORSTEP_DEMO=$${DOORSTEP_DEMO:-true} $(BIN)/doorstep serve

test: install system-deps
	@$(BIN)/python -m pytest -q -p no:cacheprovider

test-fast: install
	@$(BIN)/python -m pytest -q -m "not slow and not browser"

test-browser: install system-deps
	@$(BIN)/python -m pytest -q -m browser

bench: install
	@$(BIN)/python -m bench

lint: install
	@$(BIN)/ruff check src tests bench
	@$(BIN)/ruff format --check src tests bench
	@$(BIN)/mypy src

format: install
	@$(BIN)/ruff format src tests bench
	@$(BIN)/ruff check --fix src tests bench

clean:
	rm -rf $(VENV) var .pytest_cache
