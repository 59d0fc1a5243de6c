# The README's commands. Each sets up its own environment on a fresh machine.
#   make test    lint, type-check and run the whole suite (what CI runs)
#   make train   train the default reward model into runs/reward (about 10 minutes on 2 cores),
#                export it to ONNX and save it in the model store (.bentoml/models)

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Re-install whenever pyproject.toml changes.
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
export BENTOML_DO_NOT_TRACK := true
# The model store lives in the working tree unless the caller chose one.
export BENTOML_HOME ?= $(CURDIR)/.bentoml

.PHONY: test lint train clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first and pinned: the CPU wheel on this disk; an unpinned one pulls a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[train,dev]'
	rm -f $(VENV)/.installed-*
	touch $@

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q

train: $(STAMP)
	$(BIN)/alignserve train reward --preset default --output runs/reward
	$(BIN)/alignserve export --checkpoint runs/reward/model --name reward

clean:
	rm -rf $(VENV) runs .bentoml .mypy_cache .ruff_cache .pytest_cache
