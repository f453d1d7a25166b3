# Everything a fresh machine needs: `make demo` and `make test` create .venv and install into it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch/torchvision are pinned here (pyproject declares ranges).
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
STAMP  := $(VENV)/.camlens-installed

.PHONY: install demo test test-slow bench gpu-check clean

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

bench: $(STAMP)
	$(BIN)/python -m pip install -q $(TORCH_PINS) "grad-cam>=1.4" || echo "grad-cam not installable: peer columns skipped"
	$(BIN)/python benchmarks/run.py

# The device check runs on the machine's own Python (no venv, no downloads): the CUDA tests and a
# GPU benchmark, report in $(OUT)/gpu-check.txt and .json. PYTHON=... picks another interpreter.
OUT ?= gpu-check-output
gpu-check:
	PYTHONPATH=src $(PYTHON) scripts/gpu_check.py $(OUT)

clean:
	rm -rf $(VENV) demo-output build src/*.egg-info
