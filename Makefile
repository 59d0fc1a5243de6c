# The README's commands. Each sets up its own environment on a fresh machine.
#   make serve   build the default models if the store lacks them, then serve on 127.0.0.1:3000
#   make test    lint, type-check and run the whole suite (what CI runs)
#   make train   (re)train the default reward, moderation and intent models into runs/,
#                export them to ONNX and save them in the model store (.bentoml/models)

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Re-install whenever pyproject.toml changes. STAMP: what training and serving need (make
# serve installs no more); TEST_STAMP adds the tools and the batch extras make test needs.
HASH       := $(shell cat pyproject.toml | sha256sum | cut -c1-12)
STAMP      := $(VENV)/.installed-$(HASH)
TEST_STAMP := $(VENV)/.test-$(HASH)
export BENTOML_DO_NOT_TRACK := true
# Progress lines in order with the progress bars, also through a pipe.
export PYTHONUNBUFFERED := 1
# The model store lives in the working tree unless the caller chose one.
export BENTOML_HOME ?= $(CURDIR)/.bentoml
# Bytecode caches, all inside .venv. Where the environment sets PYTHONDONTWRITEBYTECODE (this
# project's machines do) and uv installs without compiling, every Python process compiled
# torch's and BentoML's sources again: a later `make serve` was ready after 18-21 s instead of
# 9-11 s, and each of the suite's servers and CLI runs paid the same few seconds.
unexport PYTHONDONTWRITEBYTECODE
export PYTHONPYCACHEPREFIX := $(CURDIR)/$(VENV)/pycache

HOST   ?= 127.0.0.1
PORT   ?= 3000

.PHONY: serve models test lint train lock clean peers-env

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch pinned: the CPU wheel on this disk; an unpinned one pulls a multi-GB CUDA build.
	requirements/install $(VENV) torch==2.13.0 -e '.[train,serve]'
	rm -f $(VENV)/.installed-* $(VENV)/.test-*
	touch $@

# Linters, pytest and the linters' tools, and Ray and pyarrow (`alignserve score`): not needed
# to serve.
$(TEST_STAMP): $(STAMP)
	requirements/install $(VENV) torch==2.13.0 -e '.[train,serve,dev,batch]'
	touch $@

lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q

# The address is checked first: a port in use is said before the first run's long build.
serve: $(STAMP)
	$(BIN)/python -m service --host $(HOST) --port $(PORT) --check
	$(BUILD_MODELS)
	$(BIN)/python -m service --host $(HOST) --port $(PORT)

# The default models (reward, moderation, intent), built from the data only when the store
# lacks them, stage by stage with the time left. An interrupted training run resumes from its
# checkpoint; a finished one is only exported.
BUILD_MODELS = $(BIN)/alignserve models build-defaults --runs runs
models: $(STAMP)
	$(BUILD_MODELS)

train: $(STAMP)
	$(BIN)/alignserve train reward --preset default --output runs/reward
	$(BIN)/alignserve export --checkpoint runs/reward/model --name reward
	$(BIN)/alignserve train moderation --preset default --output runs/moderation
	$(BIN)/alignserve export --checkpoint runs/moderation/model --name moderation
	$(BIN)/alignserve train intent --preset default --dataset banking77 --output runs/intent
	$(BIN)/alignserve export --checkpoint runs/intent/model --name intent

# The serving image's pinned dependencies (CPU and GPU), from pyproject.toml's extras.
lock: $(TEST_STAMP)
	$(BIN)/uv pip compile pyproject.toml --extra serve --python-version 3.11 \
		--python-platform x86_64-manylinux_2_28 --no-header --quiet -o requirements/cpu.txt
	$(BIN)/uv pip compile pyproject.toml --extra gpu --python-version 3.11 \
		--python-platform x86_64-manylinux_2_28 --no-header --quiet -o requirements/gpu.txt

# Infinity, the serving peer `python -m bench.peers --infinity .venv-infinity` measures
# against, in an environment of its own (its pins are not the service's).
peers-env: .venv-infinity/.installed
.venv-infinity/.installed: requirements/peers-infinity.txt
	$(PYTHON) -m venv .venv-infinity
	requirements/install .venv-infinity -r requirements/peers-infinity.txt
	touch $@

clean:
	rm -rf $(VENV) .venv-infinity runs .bentoml .mypy_cache .ruff_cache .pytest_cache
