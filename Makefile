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

.PHONY: venv demo test lint bench clean-demo

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

# The whole loop on the demo brains (T1 brains from nilearn's MNI152 template; 10 min 18 s measured on 2 idle
# CPU cores in a fresh clone, the .venv build and utility included; see the README). Every stage writes under $(DEMO_DIR);
# rerunning starts from scratch.
# 48 training brains and 16 held-out ones (another seed: other subjects); the metrics compare the
# synthetic brains with the held-out ones, and with the training ones for memorisation.
demo: $(STAMP)
	rm -rf $(DEMO_DIR)
	$(BIN)/medsynth data demo dataset=brain n=48 "shape=[32,32,32]" seed=0 out_dir=$(DEMO_DIR)/data/brain
	$(BIN)/medsynth data prepare input=$(DEMO_DIR)/data/brain out_dir=$(DEMO_DIR)/prepared/brain "spacing=[6,6,6]" "shape=[32,32,32]"
	$(BIN)/medsynth data demo dataset=brain n=16 "shape=[32,32,32]" seed=1 subject_prefix=heldout out_dir=$(DEMO_DIR)/data/heldout
	$(BIN)/medsynth data prepare input=$(DEMO_DIR)/data/heldout out_dir=$(DEMO_DIR)/prepared/heldout "spacing=[6,6,6]" "shape=[32,32,32]"
	$(BIN)/medsynth train experiment=demo data.root=$(DEMO_DIR)/prepared/brain data.label_map_classes=auto hydra.run.dir=$(DEMO_DIR)/train
	@# the run's best_quality.ckpt (the quality score now uses evaluate's full radiomics); DPM-Solver++(2M) in its
	@# SDE form (eta 1), 20 steps: on this model lower FRD d^2 and KID than the ODE default (docs/sampling.md)
	$(BIN)/medsynth sample ckpt=$(DEMO_DIR)/train num_samples=16 out_dir=$(DEMO_DIR)/synthetic seed=0 sampler=dpmpp sampler.eta=1.0
	$(BIN)/medsynth evaluate real_dir=$(DEMO_DIR)/prepared/heldout synthetic_dir=$(DEMO_DIR)/synthetic train_dir=$(DEMO_DIR)/prepared/brain out_dir=$(DEMO_DIR)/evaluate
	$(BIN)/medsynth study demo out_dir=$(DEMO_DIR)/study real_dir=$(DEMO_DIR)/prepared/heldout synthetic_dir=$(DEMO_DIR)/synthetic
	$(BIN)/medsynth study simulate db=$(DEMO_DIR)/study/study.db
	$(BIN)/medsynth study export db=$(DEMO_DIR)/study/study.db out=$(DEMO_DIR)/study/ratings.csv
	$(BIN)/medsynth utility real_dir=$(DEMO_DIR)/prepared/brain synthetic_dir=$(DEMO_DIR)/synthetic test_dir=$(DEMO_DIR)/prepared/heldout out_dir=$(DEMO_DIR)/utility
	$(BIN)/medsynth analyze ratings=$(DEMO_DIR)/study/ratings.csv per_image=$(DEMO_DIR)/evaluate/per_image.csv utility=$(DEMO_DIR)/utility/utility.json out_dir=$(DEMO_DIR)/analysis
	@echo
	@echo "demo finished: everything is under $(DEMO_DIR)/"
	@echo "  training previews: $(DEMO_DIR)/train/previews/   synthetic volumes: $(DEMO_DIR)/synthetic/"
	@echo "  metrics: $(DEMO_DIR)/evaluate/metrics.json       report: $(DEMO_DIR)/analysis/report.html"
	@echo "  downstream utility: $(DEMO_DIR)/utility/utility.json"
	@echo "  open the reader study: $(BIN)/medsynth study serve db=$(DEMO_DIR)/study/study.db  (tokens: $(DEMO_DIR)/study/tokens.txt)"

# Speed against the MONAI-tutorial baseline at 1 and 2 threads, interleaved (see benchmarks/README.md for the time).
bench: $(STAMP)
	$(BIN)/python benchmarks/run.py --quick --out benchmark.json

clean-demo:
	rm -rf $(DEMO_DIR)
