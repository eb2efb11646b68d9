# Set-up and entry points. `make demo` and `make test` work on a fresh machine with Python 3.11.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Compiled XLA programs are reused across test processes and runs.
export JAX_COMPILATION_CACHE_DIR ?= $(CURDIR)/.venv/jax_cache

.PHONY: install demo test benchmarks device-check tpu-preset reproduce same-numbers clean

install: $(STAMP)

$(STAMP): setup.py constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m experiments.demo

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q tests

# The seed's Tables 1-2 and the ablations, 3 seeds: 48 min on 2 CPU cores from an empty data
# root and compilation cache, two runs at once (resumable).
reproduce: $(STAMP)
	$(BIN)/python -m experiments.reproduce --preset=cpu --seeds=3 --out=runs/reproduce

benchmarks: $(STAMP)
	$(BIN)/python -m benchmarks.input_pipeline
	$(BIN)/python -m benchmarks.swap
	$(BIN)/python -m benchmarks.train_step
	$(BIN)/python -m benchmarks.domain_gap
	$(BIN)/python -m benchmarks.probes
	$(BIN)/python -m benchmarks.neural_swap_partners
	$(BIN)/python -m benchmarks.reproduce_workers
	$(BIN)/python -m benchmarks.embed
	$(BIN)/python -m benchmarks.train_step --config=locomotion_cpu --topk=False
	$(BIN)/python -m benchmarks.swap_draws

# Every accelerator benchmark in one call (< 8 min on a GPU), into one JSON.
device-check: $(STAMP)
	bash benchmarks/device_check.sh $(CURDIR)/runs/device_check.json

# swap_tpu's shapes for 50 steps on 8 simulated CPU devices (~7 min on 2 cores).
tpu-preset: $(STAMP)
	XLA_FLAGS=--xla_force_host_platform_device_count=8 JAX_PLATFORMS=cpu \
	    $(BIN)/python -m benchmarks.tpu_preset --steps=50 --global_batch=64

# The same seeds give the same numbers at BASE and in this tree (smoke reproductions and the
# demo, from empty data roots; ~15 min): make same-numbers BASE=<commit>
same-numbers: $(STAMP)
	PYTHON=$(CURDIR)/$(BIN)/python bash tests/same_numbers.sh $(BASE)

clean:
	rm -rf $(VENV) *.egg-info
