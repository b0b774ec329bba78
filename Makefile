# `make test` and `make up` work on a fresh machine with only python3 and make.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test up lint bench manifests clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	bash scripts/install_helm.sh $(VENV)/bin
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

up: $(STAMP)
	$(VENV)/bin/r1serve up

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) benchmarks/engine_throughput.py
	$(PY) benchmarks/prefix_reuse.py

manifests: $(STAMP)
	$(PY) -m serve.k8s.render_manifests

clean:
	rm -rf $(VENV) .pytest_cache
