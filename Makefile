# The two set-up commands of the README: `make demo` and `make test`.
# Each creates .venv if missing, installs torch (a CPU build unless a GPU is present), then the
# project, then runs. Later runs reuse the venv; it is reinstalled when pyproject.toml changes.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# `pip install torch==2.13.0` takes the CPU wheel on these machines; a bare `torch` requirement
# with nothing installed would pull a multi-GB CUDA build. On a GPU machine set TORCH_SPEC=torch.
TORCH_SPEC ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo torch || echo torch==2.13.0)
PYTEST_ARGS ?=

.PHONY: demo test venv bench clean-cache notebooks

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(BIN)/llmrca demo

# mypy first (the package ships py.typed, so its annotations are part of the API), then pytest.
test: venv
	$(BIN)/python -m mypy && $(BIN)/python -m pytest $(PYTEST_ARGS)

bench: venv
	$(BIN)/python benchmarks/bench_ingest.py
	$(BIN)/python benchmarks/bench_replay.py

# notebooks/ is where researchers edit the templates; the package ships copies of them
# (tests/test_workbench.py fails when the two differ).
notebooks:
	cp notebooks/*.ipynb src/llmrca/notebooks/

clean-cache:
	rm -rf .llmrca/cache .llmrca/test-cache
