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

.PHONY: run test install system assets samples mlflow viz lint clean-data help

help:
	@echo "make run      install what is missing, generate sample videos, run the main job"
	@echo "make test     the whole test suite (installs first)"
	@echo "make mlflow   MLflow UI on the project's sqlite store"
	@echo "make viz      build the kedro-viz static site into build/"

run: install samples
	$(KEDRO) run

test: install
	$(PY) -m pytest -q

install: $(STAMP) system assets

$(VENV)/bin/python:
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -U pip

# Reinstall only when the dependency declaration changes.
$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e '.[dev]'
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
	$(KEDRO) viz build

lint: install
	$(VENV)/bin/ruff check src tests benchmarks

clean-data:
	find data -type f ! -name .gitkeep ! -name README.md -delete
