# pax: every target does its own set-up (a venv in .venv, installed from pyproject.toml).
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
PYTEST_ARGS ?=
VOCABS  ?= 16000 8000
SHELL   := /bin/bash

.PHONY: setup test lint format data tokenize train eval plots demo clean help

help:
	@grep -E '^[a-z-]+:.*## ' Makefile | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

setup: $(STAMP) ## create .venv and install pax with its dev tools

test: setup ## run the whole test suite (hermetic; mirror tests run when PAX_DATA_MIRROR is set)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: setup ## ruff lint + format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

data: setup ## fetch WikiText-2 (official source, or $$PAX_DATA_MIRROR)
	$(BIN)/python scripts/download_wikitext.py --output data/wikitext-2

tokenize: data ## train the tokenizers (V=16k and 8k) and encode every split
	for v in $(VOCABS); do \
	  $(BIN)/python scripts/preprocess_lm.py --input data/wikitext-2 --vocab_size $$v \
	    --output data/lm_tokenized || exit 1; done

train: tokenize ## train the study's baseline (lands with the trainer issue)
	@echo "make train: the training loop lands with the trainer issue (#3)"; exit 1

eval: setup ## evaluate a run (lands with the trainer issue)
	@echo "make eval: evaluation lands with the trainer issue (#3)"; exit 1

plots: setup ## aggregate results and plot (lands with the plans issue)
	@echo "make plots: aggregation and plots land with the plans issue (#5)"; exit 1

demo: tokenize ## the main job: data, tokenizers, planned grid (grows into the full study)
	$(BIN)/pax plan-grid --total-params 10M

clean: ## remove generated data, logs and reports (keeps .venv)
	rm -rf data logs reports var
