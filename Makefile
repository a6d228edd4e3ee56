# evads_kedro: `make run` installs what is missing and runs the main job; `make test` runs the suite.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
KEDRO := $(VENV)/bin/kedro
STAMP := $(VENV)/.evads-installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export KEDRO_DISABLE_TELEMETRY := 1
export KEDRO_LOGGING_CONFIG := conf/logging.yml
export PYTHONUNBUFFERED := 1

.PHONY: run test install system assets samples mlflow viz lint clean-data help train-smoke reliability

help:
	@echo "make run      install what is missing, generate sample videos, run the main job"
	@echo "make test     the whole test suite (installs first)"
	@echo "make reliability  bad-input / kill -9 / secrets / paths suite; table of faults handled, 0 lost"
	@echo "make mlflow   MLflow UI on the project's sqlite store"
	@echo "make viz      build the kedro-viz static site (with dataset previews) into build/"
	@echo "make train-smoke  SFT + the five GRPO variants on a tiny model with a loopback judge (CPU, minutes),"
	@echo "                  then base, SFT and the variants scored by the evaluation pipeline (paper's table)"

run: install samples
	$(KEDRO) run

# Two pytest-xdist workers (the machine has 2 cores), whole files per worker so module fixtures
# are built once, in collection order (tests/conftest.py deals the slowest files first); the
# reliability table is still drawn once, by the controller.
PYTEST_WORKERS ?= 2
test: install
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder

# The fault suite alone (also part of `make test`); its conftest prints the per-kind table and,
# last, a JSON line {"kinds", "tried", "handled", "lost", "unrecorded"}.
reliability: install
	$(PY) -m pytest tests/reliability -q

install: $(STAMP) system assets

$(VENV)/bin/python:
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -U pip

# Reinstall only when the dependency declaration changes.
$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e '.[all]'  # main + every extra (pyproject.toml)
	touch $(STAMP)

system:
	@bash scripts/install_system.sh

assets: $(STAMP)
	@PYTHON=$(PY) bash scripts/install_assets.sh

samples: install
	$(PY) -m evads_kedro.sample_videos data/01_raw/videos

mlflow: install
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000

viz: install
	$(KEDRO) viz build --include-previews

lint: install
	$(VENV)/bin/ruff check src tests benchmarks

clean-data:
	find data -type f ! -name .gitkeep ! -name README.md -delete

# SFT + five GRPO reward variants on a tiny model, judged by a deterministic smoke judge served
# on 127.0.0.1 for the duration of the run (conf/smoke). Runs land in MLflow experiment evads-grpo.
train-smoke: install
	@test -f data/03_primary/released_qa.parquet -a -f data/02_intermediate/released/videos.parquet \
		|| $(KEDRO) run --pipelines ingestion --tags released
	$(PY) -m evads_kedro.pipelines.rl_training.smoke_judge -- \
		$(KEDRO) run --pipelines rl_training --env smoke
	@echo; cat data/08_reporting/rl_training/comparison.md
