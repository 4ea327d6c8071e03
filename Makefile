# medsr: `make demo` and `make test` each create .venv when missing and install everything.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CONSTRAINTS := $(VENV)/constraints.txt
TORCH_VERSION ?= 2.13.0

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==$(TORCH_VERSION)
	$(PY) -m pip freeze | grep -i '^torch==' > $(CONSTRAINTS)
	$(PY) -m pip install -q -c $(CONSTRAINTS) -e '.[test,clip]'
	touch $(STAMP)

demo: setup
	$(VENV)/bin/medsr demo

test: setup
	$(PY) -m pytest -q

# Every CPU benchmark; benchmarks/fair.py gets BENCH_MINUTES of wall time (40 fits the whole target in about
# 90 min on 2 cores); benchmarks/gpu.py is the GPU protocol (benchmarks/gpu.sh), not run here.
BENCH_MINUTES ?= 40

bench: setup
	for b in benchmarks/*.py; do \
	  case $$b in */gpu.py) continue;; */fair.py) $(PY) $$b --budget-minutes $(BENCH_MINUTES) || exit 1; continue;; esac; \
	  $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) runs build src/*.egg-info
