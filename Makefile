# Two commands after cloning:  `make demo` (set up + run the main job)  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Installs every extra (.[all,test]); the CPU build of torch goes in first.
# GPU users: make TORCH_SPEC='torch==2.13.0' TORCH_INDEX=...
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
STAMP := $(VENV)/.e2e-installed
SOURCES := pyproject.toml CMakeLists.txt $(shell find csrc -type f 2>/dev/null)

.PHONY: install demo test test-slow lint bench clean

$(STAMP): $(SOURCES)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH_SPEC)"
	$(PY) -m pip install -q "scikit-build-core>=0.10" "pybind11>=2.12"
	$(PY) -m pip install -q --no-build-isolation -e ".[all,test]"
	touch $@

install: $(STAMP)

demo: install
	$(PY) -m e2ecompress demo

test: install
	$(PY) -m ruff check .
	$(PY) -m pytest

test-slow: install
	$(PY) -m pytest -m slow

bench: install  # kernels, rANS, then bytes/jet vs physics fidelity -> results/compression.md (about 25 min)
	$(PY) -m pip install -q --no-build-isolation -e ".[all,test,bench]"
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} $(PY) benchmarks/run_all.py

clean:
	rm -rf build $(VENV) .pytest_cache .ruff_cache
