# Two commands for a fresh machine:
#   make demo   create .venv, install, run the Airflow DAG end to end on the bundled example, print the results
#   make test   create .venv, install, lint, run the tests
# and: make test-slow        the slow tests (a real Airflow over PostgreSQL, standalone Spark clusters, HDFS and an S3 API server, jobs as processes, scikit-learn's cases and capacitated AP on the Spark engines), about 30 minutes
#      make airflow          a local Airflow with its UI on http://127.0.0.1:8080 and this DAG
#      make stream-demo      a Kafka broker, a fitted model and the streaming job assigning a few points
#      make test-matrix      the smoke suite (tests/test_smoke.py) on every other Spark line, each in its own venv
#                            pinned by constraints/spark-X.Y.txt, and in a Spark Connect session
#      make docs             the documentation site in site/ (MkDocs, in its own .venv-docs), built with --strict
#      make docs-serve       the same site served on http://127.0.0.1:8000, rebuilt as the pages change

PYTHON ?= python3
VENV   ?= .venv
DOCS_VENV ?= .venv-docs
BIN    := $(abspath $(VENV)/bin)

# Spark's Python workers must use the venv's interpreter, and Airflow's
# SparkSubmitOperator finds spark-submit on PATH.
export PYSPARK_PYTHON := $(BIN)/python
export PATH := $(BIN):$(PATH)
# An embedded Airflow for the demo: SQLite metadata in the project, our DAG folder, local Spark.
export AIRFLOW_HOME := $(CURDIR)/.airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN := sqlite:///$(CURDIR)/.airflow/airflow.db
export AIRFLOW_CONN_SPARK_DEFAULT ?= {"conn_type": "spark", "host": "local[*]"}

.PHONY: install lint test test-slow test-matrix postgresql demo airflow stream-demo docs docs-serve clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	@command -v java >/dev/null || { echo "Spark needs Java 17 or newer on PATH (e.g. apt-get install openjdk-17-jdk-headless)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip==25.3"
	$(BIN)/python -m pip install --quiet --constraint constraints.txt --editable ".[test,airflow,kafka,connect]"
	$(BIN)/python -c "import pyspark, pyspark.sql; print('pyspark', pyspark.__version__)"
	@touch $@

$(AIRFLOW_HOME)/airflow.db: $(VENV)/.installed
	mkdir -p $(AIRFLOW_HOME)
	$(BIN)/airflow db migrate > $(AIRFLOW_HOME)/migrate.log

lint: install
	$(BIN)/ruff check spark_ap tests scripts dags
	$(BIN)/ruff format --check spark_ap tests scripts dags

test: lint
	$(BIN)/python -m pytest

# PostgreSQL's server programs, which the scheduler tests start a throwaway server with:
# Debian's package where it is missing (as root, or through sudo).
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q postgresql; }

test-slow: install postgresql
	$(BIN)/python -m pytest -m slow

# The Spark lines besides constraints.txt's (4.1, the full suite's). Each gets a venv of its own.
SPARK_LINES := 3.5 4.0 4.2 4.3

test-matrix: install $(foreach line,$(SPARK_LINES),.venv-spark-$(line)/.installed)
	@failed=""; \
	for line in $(SPARK_LINES); do \
	  echo "== Spark $$line: tests/test_smoke.py"; \
	  PYSPARK_PYTHON=$(CURDIR)/.venv-spark-$$line/bin/python PATH=$(CURDIR)/.venv-spark-$$line/bin:$$PATH \
	    .venv-spark-$$line/bin/python -m pytest -p no:cacheprovider -m smoke tests/test_smoke.py || failed="$$failed $$line"; \
	done; \
	echo "== Spark Connect (pyspark $$($(BIN)/python -c 'import pyspark; print(pyspark.__version__)')): tests/test_smoke.py"; \
	SPARK_AP_TEST_SESSION=connect $(BIN)/python -m pytest -p no:cacheprovider -m smoke tests/test_smoke.py \
	  || failed="$$failed connect"; \
	if [ -n "$$failed" ]; then echo "test-matrix failed on:$$failed"; exit 1; fi

.venv-spark-%/.installed: pyproject.toml constraints/spark-%.txt
	test -x .venv-spark-$*/bin/python || $(PYTHON) -m venv .venv-spark-$*
	.venv-spark-$*/bin/python -m pip install --quiet --upgrade "pip==25.3"
	.venv-spark-$*/bin/python -m pip install --quiet --constraint constraints/spark-$*.txt --editable ".[test]"
	@touch $@

demo: install $(AIRFLOW_HOME)/airflow.db
	$(BIN)/python scripts/demo.py

# Airflow's own processes on SQLite with this DAG, the UI on 127.0.0.1:8080; prints the login.
airflow: install $(AIRFLOW_HOME)/airflow.db
	$(BIN)/python scripts/airflow_ui.py

# A Kafka broker on 127.0.0.1, a model fit on the bundled example, the streaming job and a few points.
stream-demo: install
	$(BIN)/python scripts/stream_demo.py

# The documentation's tools in a virtualenv of their own (the project's pins, Airflow's among them,
# stay out of it), exactly the versions of constraints/docs.txt. mkdocstrings reads the docstrings
# from the source without importing spark_ap, so no Spark is needed.
$(DOCS_VENV)/.installed: constraints/docs.txt
	test -x $(DOCS_VENV)/bin/python || $(PYTHON) -m venv $(DOCS_VENV)
	$(DOCS_VENV)/bin/python -m pip install --quiet --upgrade "pip==25.3"
	$(DOCS_VENV)/bin/python -m pip install --quiet --requirement constraints/docs.txt
	@touch $@

docs: $(DOCS_VENV)/.installed
	$(DOCS_VENV)/bin/mkdocs build --strict --site-dir site

docs-serve: $(DOCS_VENV)/.installed
	$(DOCS_VENV)/bin/mkdocs serve --strict

clean:
	rm -rf $(VENV) .venv-spark-* $(DOCS_VENV) site .airflow output .pytest_cache .ruff_cache spark_ap.egg-info
