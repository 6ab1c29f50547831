# The two commands of the README:
#   make run    all notebooks in order through papermill at SCALE (default: cpu)
#   make test   unit tests and every notebook under nbval at the ci scale
#   (make seeds / make regimes / make sim-to-real: the seed, regime and sim-to-real studies behind the README)
# Each creates the virtual environment .venv first when it is missing or stale.
PYTHON ?= python3
SCALE  ?= cpu
NOTEBOOKS = $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
# Inside the conda environment of environment.yml (`conda activate gplan`) that environment is used as
# it is; anywhere else a .venv is made from requirements.txt.
ifeq ($(CONDA_DEFAULT_ENV),gplan)
VENV   ?= $(CONDA_PREFIX)
STAMP   =
else
VENV   ?= .venv
STAMP   = $(VENV)/.installed
endif
BIN     = $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: run test setup bench clean-runs seeds regimes sim-to-real gpu-check publish lab-test

setup: $(STAMP)

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

# --log-output streams every cell's printed output (training prints a line per epoch) to the terminal.
run: setup
	mkdir -p runs/$(SCALE)
	for nb in $(NOTEBOOKS); do \
	  echo "== $$nb (scale $(SCALE))"; \
	  $(BIN)/papermill --cwd notebooks --log-output --no-progress-bar -p scale $(SCALE) $$nb \
	    runs/$(SCALE)/$$(basename $$nb) || exit 1; \
	  echo "   executed notebook: runs/$(SCALE)/$$(basename $$nb)"; \
	done
	@echo "executed notebooks: runs/$(SCALE)/   figures: runs/$(SCALE)/figures/   results: runs/$(SCALE)/results/"
	@echo "(make publish SCALE=$(SCALE) copies results and figures over the committed results/$(SCALE)/ and figures/$(SCALE)/)"

test: setup
	GPLAN_SCALE=ci $(BIN)/python -m pytest --nbval-lax --ignore=tests/browser tests $(NOTEBOOKS)

# The reader's path in a browser: JupyterLab on 127.0.0.1, each notebook run with Run All at the ci scale in
# headless Chromium (Debian's chromium + chromium-driver + fonts-noto-cjk, installed when missing and root),
# as a user without the released rows; screenshots in runs/lab-test/. CI runs it after `make test`.
lab-test: setup
	$(BIN)/python -m pytest -v tests/browser

# The committed results/<scale>/ and figures/<scale>/ (what the README shows) from runs/<scale>/.
publish: setup
	$(BIN)/gplan publish --scale $(SCALE)

# Tables 3-4 over training seeds 0-9 (results/$(SCALE)/seeds.json and the per-row outcomes seeds_rows.csv.gz; seed 0 =
# the notebooks' runs; SEEDS="0 1 2" for fewer), and the regime study (results/$(SCALE)/regimes.json). Each seed is
# stored when its seven runs are scored (runs/$(SCALE)/seeds/), so an interrupted study resumes where it stopped.
# At the cpu scale on 2 cores: about 30 min per seed (AMD EPYC, AVX-512, 2026-12-03).
SEEDS ?= 0 1 2 3 4 5 6 7 8 9
seeds: setup
	$(BIN)/gplan synth --scale $(SCALE)
	$(BIN)/python -m gplan_lib.studies.seed_study --scale $(SCALE) --seeds $(SEEDS)

# The regime grid in parts: e.g. make regimes REGIMES="--seeds 0 --starts pretrained" (python -m
# gplan_lib.studies.regimes --help); every part's results are stored, and regimes.json holds all of them. Each scored
# run is also a line of the committed results/$(SCALE)/regimes_runs.jsonl, so a fresh clone trains only the runs it
# lacks (and the backbones, DPO bases and references those need: weights are not committed). From nothing the whole
# grid is about 7 h of 2 cores (AMD EPYC, AVX-512, 2026-12-03/04); with the committed lines it trains nothing.
regimes: setup
	$(BIN)/gplan synth --scale $(SCALE)
	$(BIN)/python -m gplan_lib.studies.regimes --scale $(SCALE) $(REGIMES)

# Sim-to-real (results/$(SCALE)/sim_to_real.json): the released rows in user-grouped folds, a student per training
# source and fold scored on the fold's held-out users, and a learning curve. Needs the released rows (data/gsisr/ or
# ../shared/gsisr/calibration.csv). Runs are cached per fold and source, so an interrupted study resumes.
sim-to-real: setup
	$(BIN)/gplan synth --scale $(SCALE)
	$(BIN)/python -m gplan_lib.studies.sim_to_real --scale $(SCALE)

# What only a GPU can show: PICD and SC-DPO steps (full-scale settings) and decoding at the Qwen3-1.7B/4B
# shapes on one GPU, and with two or more GPUs one DDP step (1.7B) and one ZeRO-3 step (4B); random weights,
# no hub; writes results/gpu-check/<gpu>.json after each part. Without a GPU it says so (exit 0); with NVIDIA
# GPUs that torch cannot use (an older driver) it says why (exit 1).
gpu-check: setup
	$(BIN)/python -m gplan_lib.studies.gpu_check

bench: setup
	$(BIN)/python benchmarks/synth_throughput.py --n 100000

clean-runs:
	rm -rf runs/
