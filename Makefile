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

# SGLang's own argument parser (no CUDA stack) for the CPU tests of the SGLang backend.
SGLANG_STAMP := $(VENV)/.sglang-parser
$(SGLANG_STAMP): $(STAMP) scripts/install_test_sglang.sh
	bash scripts/install_test_sglang.sh $(VENV)
	touch $@

# checkov, in a venv of its own (its pins would downgrade ours), for the chart's policy test.
CHECKOV_STAMP := $(VENV)/.checkov
$(CHECKOV_STAMP): $(STAMP) scripts/install_checkov.sh
	bash scripts/install_checkov.sh $(VENV)
	touch $@

test: $(STAMP) $(SGLANG_STAMP) $(CHECKOV_STAMP)
	$(PY) -m pytest

up: $(STAMP)
	$(VENV)/bin/r1serve up

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) -m benchmarks.engine_throughput
	$(PY) -m benchmarks.prefix_reuse

manifests: $(STAMP)
	$(PY) -m serve.k8s.render_manifests

clean:
	rm -rf $(VENV) .pytest_cache
