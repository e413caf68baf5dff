# lit_ft developer commands. `make install` then `make test` on a fresh machine with Python 3.10+ and pip.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch: with an NVIDIA GPU (nvidia-smi present) pip's default CUDA build; without one, the CPU build
# (torch 2.13.0 is the CPU build on machines with a local wheel; elsewhere set TORCH_SPEC / TORCH_INDEX,
# e.g. TORCH_INDEX=https://download.pytorch.org/whl/cpu).
TORCH_SPEC ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo "torch" || echo "torch==2.13.0")
TORCH_INDEX ?=
PYTEST_ARGS ?=

.PHONY: help install test test-fast lint typecheck demo bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' Makefile | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

install:  ## create .venv with torch, lit_ft (editable, dev extras) and the example plugin
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install -q -e ".[dev]"
	$(BIN)/pip install -q -e plugins/lit_ft_multiple_choice

test:  ## the whole suite, slow tests included (about 30 minutes on 2 CPU cores)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-fast:  ## offline tests without the slow marker
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

lint:  ## ruff, and the import contracts of pyproject.toml (the layers of docs/architecture.md)
	$(BIN)/ruff check lit_ft tests plugins bench
	$(BIN)/lint-imports --no-cache

typecheck:  ## mypy
	$(BIN)/mypy lit_ft

demo:  ## the quickstart: fine-tune the packaged MiniLM on the packaged sentiment set, then test and predict
	$(BIN)/lit_ft fit --config configs/quickstart.yaml --overwrite true
	$(BIN)/lit_ft test --config configs/quickstart.yaml --ckpt_path best
	$(BIN)/lit_ft predict --config configs/quickstart.yaml --ckpt_path best

bench:  ## SST-2 speed and accuracy against the HF Trainer (needs ../shared/data/sst2; ~40 min)
	$(BIN)/python bench/sst2_speed.py

clean:  ## remove run outputs
	rm -rf runs lightning_logs wandb
