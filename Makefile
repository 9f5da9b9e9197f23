# streetwatch: the two commands are `make demo` (run central + an agent on a real clip) and `make test`.
PYTHON ?= python3
VENV ?= .venv
ASSET_MIRROR ?= $(or $(STREETWATCH_ASSET_MIRROR),../shared/assets)
BIN := $(VENV)/bin

.PHONY: demo test setup assets lint typecheck eval clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Install the package with every extra the demo and the tests need (not `export`: that pulls torch).
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[edge,edge-openvino,central,dev]"
	touch $@

setup: $(VENV)/.installed

assets: setup
	$(BIN)/python scripts/fetch_assets.py --mirror "$(ASSET_MIRROR)" --all

demo: setup
	$(BIN)/python scripts/fetch_assets.py --mirror "$(ASSET_MIRROR)"
	$(BIN)/python scripts/demo.py

test: assets
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy edge_agent central models
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy edge_agent central models

eval: assets
	$(BIN)/python scripts/eval_detector.py --model assets/models/yolo11n_coco_640_int8dyn.onnx --data assets/coco128

clean:
	rm -rf var/ .pytest_cache .mypy_cache .ruff_cache
