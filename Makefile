# The two commands of the README:
#   make run    all notebooks in order through papermill at SCALE (default: cpu)
#   make test   unit tests and every notebook under nbval at the ci scale
# Each creates the virtual environment .venv first when it is missing or stale.
PYTHON ?= python3
VENV   ?= .venv
SCALE  ?= cpu
BIN     = $(VENV)/bin
NOTEBOOKS = $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: run test setup bench clean-runs

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

run: setup
	mkdir -p runs/$(SCALE)
	for nb in $(NOTEBOOKS); do \
	  $(BIN)/papermill --cwd notebooks -p scale $(SCALE) $$nb runs/$(SCALE)/$$(basename $$nb) || exit 1; \
	done

test: setup
	GPLAN_SCALE=ci $(BIN)/python -m pytest --nbval-lax tests $(NOTEBOOKS)

bench: setup
	$(BIN)/python benchmarks/synth_throughput.py --n 100000

clean-runs:
	rm -rf runs/
