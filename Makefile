# The two fresh-machine commands (see README):
#   make demo   the whole pipeline through Airflow on simulated data, outputs under output/
#   make test   lint + the test suite against real PostgreSQL, Airflow, dbt, GX, WeasyPrint, SMTP
#   make bench  the scale benchmark (docs/benchmarks.md); ORDERS="1000000 10000000" by default
SHELL := /bin/bash
export PYTHONDONTWRITEBYTECODE :=
VENV := .venv
MONTH ?= 2025-06

.PHONY: setup test-setup demo test lint airflow bench clean

setup:
	@scripts/bootstrap.sh

demo: setup
	$(VENV)/bin/xinfang demo --month $(MONTH)

# Airflow with its UI and REST API on http://127.0.0.1:8080 (PORT=...), until Ctrl-C;
# EXECUTOR=celery: the distributed topology (two Celery workers, Redis as broker).
airflow: setup
	$(VENV)/bin/xinfang airflow --port $(or $(PORT),8080) --executor $(or $(EXECUTOR),local)

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/xinfang lint-sql

test-setup:
	@XINFANG_BOOTSTRAP_TESTS=1 scripts/bootstrap.sh

# Two xdist workers (TEST_WORKERS=...), whole modules each: see tests/conftest.py.
test: test-setup lint
	$(VENV)/bin/python -m pytest -n $(or $(TEST_WORKERS),2) --dist loadfile

# Ingest ratios, then the whole pipeline at each scale; table on stdout, bench/results/scale.json.
bench: setup
	$(VENV)/bin/python bench/scale_bench.py all --orders $(or $(ORDERS),1000000 10000000)

clean:
	rm -rf data output dbt_project/target dbt_project/logs
