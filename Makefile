# tabletlog — every entry point people and CI use. `make help` lists them.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
# Coverage of the product packages, reported by `make test` (node subprocesses of the cluster
# tests are not measured: only the test process is).
COV := --cov=wire --cov=storage --cov=replication --cov=node --cov=client \
	--cov-report=term:skip-covered

.PHONY: help setup dev test lint unit cluster-tests bench soak compose-test clean

help:
	@echo "make dev      set up and run a local 3-node cluster (the main job)"
	@echo "make test     set up, lint and run the whole test suite with coverage (what CI runs)"
	@echo "make bench    benchmarks against the machine's limits and peers"
	@echo "make soak     long fault-injection run"

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[dev,bench]'
	touch $(STAMP)

setup: $(STAMP)

dev: $(STAMP)
	$(VENV)/bin/tabletlog dev up --nodes 3

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .

test: $(STAMP) lint
	$(VENV)/bin/pytest -q $(COV)

unit: $(STAMP)
	$(VENV)/bin/pytest -q -m "not cluster and not netns and not compose and not soak"

bench: $(STAMP)
	$(PY) -m bench.run_all

soak: $(STAMP)
	$(VENV)/bin/pytest -q -m soak --run-soak tests/faults

clean:
	rm -rf $(VENV) data build *.egg-info
