# hpc_fedprune: `make demo` and `make test` work from a clean clone.
# The venv's own mpiexec (the PyPI MPICH wheel) launches every MPI run here.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
MPIEXEC := $(VENV)/bin/mpiexec
STAMP := $(VENV)/.installed
export OMP_NUM_THREADS ?= 1
# Test processes (pytest-xdist); whole files go to one process, so a file's shared
# launches (module fixtures) run once. 2 fits a 2-core machine.
TEST_WORKERS ?= 2

.PHONY: help venv demo test test-fast lint fmnist bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,mpich,plot,tensorboard]'
	touch $(STAMP)

venv: $(STAMP)  ## create or update .venv (CPU torch pinned by constraints.txt)

demo: $(STAMP)  ## run the built-in quick start on 2 ranks
	$(MPIEXEC) -n 2 $(PY) -m hpc_fedprune run --out runs/demo-$$(date +%Y%m%d-%H%M%S)

test: $(STAMP)  ## run the whole test suite, MPI tests included
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

test-fast: $(STAMP)  ## unit tests only
	$(PY) -m pytest tests/unit

lint: $(STAMP)  ## ruff
	$(VENV)/bin/ruff check hpc_fedprune tests benchmarks

fmnist:  ## install Debian's full Fashion-MNIST (root and apt only)
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; \
	else echo "needs root and apt-get: see README 'Data sets'"; fi

bench: $(STAMP)  ## throughput benchmark (JSON lines)
	$(PY) benchmarks/throughput.py

clean:  ## remove caches (not runs/ or .venv)
	rm -rf .pytest_cache .ruff_cache build *.egg-info
