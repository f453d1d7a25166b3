# Everything a fresh machine needs: `make demo` and `make test` create .venv and install into it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch/torchvision are pinned here (pyproject declares ranges).
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
STAMP  := $(VENV)/.camlens-installed
DOCS_STAMP := $(VENV)/.camlens-docs-installed

.PHONY: install demo test test-slow bench docs gpu-check clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_PINS)
	$(BIN)/python -m pip install -q $(TORCH_PINS) -e ".[test,demo,cli]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/camlens demo --output-dir demo-output

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

# The docs site, offline and strict (a warning fails the build) -> site/index.html. Figures are
# made on the bundled photos by every method (slow the first time; cached in build/docs-figures/).
$(DOCS_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q $(TORCH_PINS) -e ".[docs]"
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

bench: $(STAMP)
	$(BIN)/python -m pip install -q $(TORCH_PINS) "grad-cam>=1.4" || echo "grad-cam not installable: peer columns skipped"
	$(BIN)/python benchmarks/run.py

# The device check runs on the machine's own Python (no venv, no downloads): the CUDA tests and a
# GPU benchmark, report in $(OUT)/gpu-check.txt and .json. PYTHON=... picks another interpreter.
OUT ?= gpu-check-output
gpu-check:
	PYTHONPATH=src $(PYTHON) scripts/gpu_check.py $(OUT)

clean:
	rm -rf $(VENV) demo-output build site src/*.egg-info
