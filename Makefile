# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.abacus-installed

.PHONY: setup demo test test-all bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# The CPU build of torch 2.13.0 first: any other unpinned torch requirement pulls a CUDA build of several GB.
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install "torch==2.13.0"
	$(PIP) install -e ".[dev]"
	# Compile the AdderNet CPU kernel once (about a second); without a compiler the op falls back to torch.
	$(PY) -W ignore -c "from supernets.ops._adder_native import main; raise SystemExit(main(['--build']))"
	touch $(STAMP)

demo: setup
	$(VENV)/bin/abacus search examples/quickstart.yaml

test: setup
	$(PY) -m pytest -q -m "not slow and not gpu" --durations=15

test-all: setup
	$(PY) -m pytest -q --durations=15

bench: setup
	$(PY) benchmarks/adder_conv.py
	$(PY) benchmarks/cost_model.py

clean:
	rm -rf $(VENV) runs mlflow.db mlruns mlartifacts .pytest_cache
