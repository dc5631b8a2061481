# The two front-door commands: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
DATA ?=

.PHONY: run test lint bench bench-scale bench-import bench-serve report docs docs-site clean

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

## run the main DAG once end to end (simulated shop, or DATA=<landing dir>) and print a summary
run: $(VENV)/.installed
	$(BIN)/recsys run $(if $(DATA),--data $(DATA))

## every test: unit, dbt, DAG integrity, end to end
test: $(VENV)/.installed
	$(BIN)/python -m pytest

## speed, memory and accuracy of every model on simulated shops (and DATA=<landing dir>); prints tables
bench: $(VENV)/.installed
	$(BIN)/python -m recsys.dev.bench $(if $(DATA),--data $(DATA))

## the whole DAG once from an empty warehouse at SIZE=S|M|L (default M), SHAPE=web|invoices, or on DATA=<landing dir>: a table per stage
SIZE ?= M
SHAPE ?= web
bench-scale: $(VENV)/.installed
	$(BIN)/python -m recsys.dev.bench_scale $(if $(DATA),--data $(DATA),--size $(SIZE) --shape $(SHAPE))

## wall and CPU seconds and peak RSS of `recsys import online-retail` on an invoice export of CUSTOMERS customers (20,000: about 2.7M lines)
CUSTOMERS ?= 20000
bench-import: $(VENV)/.installed
	$(BIN)/python -m recsys.dev.bench_import --customers $(CUSTOMERS)

## latency and throughput of the serving API on loopback (USERS published shoppers in Redis at REDIS_URL); a table per endpoint
USERS ?= 1000000
bench-serve: $(VENV)/.installed
	$(BIN)/python -m recsys.dev.bench_serve --users $(USERS)

## the last run as one self-contained HTML file for analysts (the warehouse `make run` left, or WAREHOUSE_URL)
report: $(VENV)/.installed
	$(BIN)/recsys report $(if $(OUT),--out $(OUT))

## dbt docs of the warehouse (dbt_project/target/docs, plus one static_index.html to share)
docs: $(VENV)/.installed
	$(BIN)/recsys docs

## the documentation site (docs/, mkdocs-material, API reference from the docstrings) into site/; warnings fail
docs-site: $(VENV)/.installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

## lint: ruff (rules, unused noqa, formatting) on the Python, sqlfluff on the dbt SQL; CI runs it before the tests
lint: $(VENV)/.installed
	$(BIN)/ruff check dags plugins tests docs
	$(BIN)/ruff format --check dags plugins tests docs
	$(BIN)/sqlfluff lint dbt_project/models dbt_project/tests --disable-progress-bar

## stop the embedded warehouse and delete its data, .local (the pseudonymization key), dbt's target and logs, reports and site
clean:
	-$(BIN)/python -c "from recsys.db.warehouse import EmbeddedPostgres; EmbeddedPostgres().remove()"
	rm -rf .local dbt_project/target dbt_project/logs reports site
