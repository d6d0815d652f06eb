# pax: every target does its own set-up (a venv in .venv, installed from pyproject.toml).
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
PYTEST_ARGS ?=
VOCABS  ?= 16000 8000
SHELL   := /bin/bash

.PHONY: setup test test-fast lint format data tokenize train eval plots demo image gpu-wheels clean help

help:
	@grep -E '^[a-z-]+:.*## ' Makefile | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,cloud,postgres]'
	touch $@

setup: $(STAMP) ## create .venv and install pax with its dev tools and SkyPilot

# transformers, for the Hugging Face export test only, kept out of .venv's site-packages
HF_DIR  := $(VENV)/hf
$(HF_DIR)/.installed: tests/trainer/hf_requirements.txt $(STAMP)
	$(BIN)/python -m pip install -q --no-deps --target $(HF_DIR) -r $<
	touch $@

# The whole suite: the container tests (tests/deploy: an image built and run, compose up for
# real) spend their time in builds and containers, not in this process, so they run beside the
# rest and their report follows it; either failing fails the target. A selection
# (PYTEST_ARGS="tests/runner -k kill") runs as one pytest, as given.
test: setup $(HF_DIR)/.installed ## run the whole test suite (hermetic; mirror tests run when PAX_DATA_MIRROR is set)
ifeq ($(strip $(PYTEST_ARGS)),)
	@mkdir -p test-artifacts
	@$(BIN)/python -m pytest -q -p no:cacheprovider --basetemp=test-artifacts/deploy-tmp \
	  tests/deploy > test-artifacts/deploy.log 2>&1 & deploy=$$!; \
	  $(BIN)/python -m pytest -q --ignore=tests/deploy; main=$$?; \
	  wait $$deploy; deployed=$$?; \
	  echo "--- tests/deploy (containers), run beside the rest:"; cat test-artifacts/deploy.log; \
	  exit $$(( main || deployed ))
else
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)
endif

test-fast: setup $(HF_DIR)/.installed ## the edit loop: everything but the tests marked slow (under a minute on 2 cores)
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

lint: setup ## ruff lint + format check, hadolint on the Dockerfile, compose.yaml validation
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint Dockerfile
	PAX_ADMIN_TOKEN=lint-only PAX_WORKER_TOKEN=lint-only $(BIN)/docker-compose -f compose.yaml --profile cpu config -q
	PAX_ADMIN_TOKEN=lint-only PAX_WORKER_TOKEN=lint-only PAX_PG_PASSWORD=lint-only $(BIN)/docker-compose -f compose.yaml --profile postgres config -q

format: setup ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

data: setup ## fetch WikiText-2 and SmallBench (official sources, or $$PAX_DATA_MIRROR)
	$(BIN)/python scripts/download_wikitext.py --output data/wikitext-2
	$(BIN)/python scripts/download_smallbench.py --output data/smallbench

tokenize: data ## train the tokenizers (V=16k and 8k) and encode every split
	for v in $(VOCABS); do \
	  $(BIN)/python scripts/preprocess_lm.py --input data/wikitext-2 --vocab_size $$v \
	    --output data/lm_tokenized || exit 1; done

train: tokenize ## train the study's baseline (emb35: 10M, V=16k, tied, 0.35, GLU 2.66)
	$(BIN)/python run_experiment.py --config configs/embed_ratio.yaml --exp emb35

eval: setup ## re-evaluate the newest run directory under logs/
	@run=$$(ls -td logs/*/*/ 2>/dev/null | head -1); \
	  if [ -z "$$run" ]; then echo "no run under logs/: run make train first"; exit 1; fi; \
	  $(BIN)/pax eval --run-dir $$run

plots: setup ## aggregate logs/ into results_summary.csv, tables and plots (reports/aggregate)
	$(BIN)/python scripts/aggregate_results.py --log_dir logs --output results_summary.csv

demo: setup ## the main job: data, tokenizers, service, the smoke plan end to end, report
	$(BIN)/pax demo --plan configs/plan_smoke.yaml

image: setup ## build the image (docker, else podman; a local Debian base where none can be pulled)
	bash docker/build-image.sh

# STUDY=1 adds the service's (bench/gpu_study_wheels.txt), for bench/gpu_check.sh --study
gpu-wheels: setup ## wheels (.whl/) a GPU machine lacks for bench/gpu_check.sh (bench/gpu_wheels.txt)
	mkdir -p .whl
	cat bench/gpu_wheels.txt $(if $(STUDY),bench/gpu_study_wheels.txt) | grep -v '^#' | while read -r name; do \
	  v=$$($(BIN)/python -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" $$name) \
	  && $(BIN)/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
	    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
	    --platform manylinux2014_x86_64 -d .whl "$$name==$$v" || exit 1; done

clean: ## remove generated data, logs and reports (keeps .venv)
	rm -rf data logs reports var
