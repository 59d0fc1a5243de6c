# The README's commands. Each sets up its own environment on a fresh machine.
#   make serve   build the default models if the store lacks them, then serve on 127.0.0.1:3000
#   make test    lint, type-check and run the whole suite (what CI runs)
#   make train   (re)train the default reward and moderation models into runs/ (about 8 and
#                5 minutes on 2 cores), export them to ONNX and save them in the model
#                store (.bentoml/models)

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Re-install whenever pyproject.toml changes.
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
export BENTOML_DO_NOT_TRACK := true
# The model store lives in the working tree unless the caller chose one.
export BENTOML_HOME ?= $(CURDIR)/.bentoml

HOST   ?= 127.0.0.1
PORT   ?= 3000

.PHONY: serve models test lint train lock clean

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

serve: models
	$(BIN)/python -m service --host $(HOST) --port $(PORT)

# The default models, built from the data only when the store lacks them. An interrupted
# training run resumes from its checkpoint; a finished one is only exported again.
# $(call model,NAME,TASK): store name NAME, trained by `alignserve train TASK` into runs/NAME.
define model
	@if $(BIN)/alignserve models show $(1) > /dev/null 2>&1; then \
		echo "$(1) model: in the store at $(BENTOML_HOME)"; \
	else \
		echo "$(1) model: none in the store at $(BENTOML_HOME); building the default one"; \
		if [ ! -f runs/$(1)/model/manifest.json ]; then \
			$(BIN)/alignserve train $(2) --preset default --output runs/$(1) \
				$$([ -f runs/$(1)/checkpoints/trainer_state.pt ] && echo --resume) || exit $$?; \
		fi; \
		$(BIN)/alignserve export --checkpoint runs/$(1)/model --name $(1); \
	fi
endef

models: $(STAMP)
	$(call model,reward,reward)
	$(call model,moderation,moderation)

train: $(STAMP)
	$(BIN)/alignserve train reward --preset default --output runs/reward
	$(BIN)/alignserve export --checkpoint runs/reward/model --name reward
	$(BIN)/alignserve train moderation --preset default --output runs/moderation
	$(BIN)/alignserve export --checkpoint runs/moderation/model --name moderation

# The serving image's pinned dependencies (CPU and GPU), from pyproject.toml's extras.
lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml --extra serve --python-version 3.11 \
		--python-platform x86_64-manylinux_2_28 --no-header --quiet -o requirements/cpu.txt
	$(BIN)/uv pip compile pyproject.toml --extra gpu --python-version 3.11 \
		--python-platform x86_64-manylinux_2_28 --no-header --quiet -o requirements/gpu.txt

clean:
	rm -rf $(VENV) runs .bentoml .mypy_cache .ruff_cache .pytest_cache
