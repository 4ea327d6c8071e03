# medsr: `make demo` and `make test` each create .venv when missing and install everything.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CONSTRAINTS := $(VENV)/constraints.txt
TORCH_VERSION ?= 2.13.0

.PHONY: setup demo test bench bench-all clean docs docs-check

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

# The suite, then its float-sensitive part again on one thread (results must not depend on the thread count).
test: setup
	$(PY) -m pytest -q
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest -q -m float_sensitive

# The documentation site (docs/, mkdocs.yml) into site/; --strict: a broken link, include or reference fails.
DOCS_STAMP := $(VENV)/.docs-installed

$(DOCS_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install -q -c $(CONSTRAINTS) -e '.[docs]'
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

# Runs every example of README.md and docs/*.md not marked "# needs: ..." (only the embedded data), in page
# order, in a scratch folder (build/docs-check). It trains (liif, t2net, the CT demo), so it takes tens of minutes
# on a CPU; `make test` only checks the commands, flags and config names (tests/test_docs.py).
DOCS_CHECK := build/docs-check

docs-check: setup
	rm -rf $(DOCS_CHECK) && mkdir -p $(DOCS_CHECK) && ln -s $(CURDIR)/src $(DOCS_CHECK)/src
	$(PY) tests/test_docs.py > $(DOCS_CHECK)/examples.sh
	cd $(DOCS_CHECK) && PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash examples.sh

# The CPU quality protocol of issue 11 (66 min measured on 2 cores, within the 90-min target; the figures in benchmarks/results/quality/):
# the fair comparison (8 methods), SAKG's component study (old design, redesign, paired ablations, noisy-input
# fusion), then the two-stage segmentation-guided perceptual fine-tuning of the redesign's runs.
BENCH_STEPS ?= 250
BENCH_FLAGS = --steps $(BENCH_STEPS) --seeds 3 --lrs 1e-3,2.5e-3 --batch 4 --patch 16 --scales 2,4 \
  --test-slices 2 --synth-items 6 --curve-points 4 --val-slices 2 --prior-steps 400 --workers 2
FAIR_VARIANTS = liif,liif+k,liif-swinir,sakg-noref,dualarb,dualarb+k,sakg,sakg2

bench: setup
	$(PY) benchmarks/fair.py $(BENCH_FLAGS) --only $(FAIR_VARIANTS) --work runs/fair
	$(PY) benchmarks/fair.py --components $(BENCH_FLAGS) --work runs/fair-components
	$(PY) benchmarks/twostage.py --work runs/twostage

# Every other CPU benchmark (speed, transfer, joint, CT, ...); benchmarks/gpu.py is the GPU protocol
# (benchmarks/gpu.sh), not run here.
bench-all: bench
	for b in benchmarks/*.py; do \
	  case $$b in */gpu.py|*/fair.py|*/twostage.py) continue;; esac; \
	  $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) runs build src/*.egg-info
