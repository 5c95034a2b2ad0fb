# Two commands for a fresh machine:
#   make test   create .venv, install the pinned environment, lint, run the tests
#   make demo   the same environment, then cluster the bundled example and print where the results are

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Spark's Python workers must use the venv's interpreter, not whatever `python3` is on PATH.
export PYSPARK_PYTHON := $(abspath $(BIN)/python)

.PHONY: test demo lint install clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	@command -v java >/dev/null || { echo "Spark needs Java 17 or newer on PATH (e.g. apt-get install openjdk-17-jdk-headless)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip==25.3"
	$(BIN)/python -m pip install --quiet --constraint constraints.txt --editable ".[test,plots]"
	$(BIN)/python -c "import pyspark, pyspark.sql; print('pyspark', pyspark.__version__)"
	@touch $@

lint: install
	$(BIN)/ruff check spark_ap tests scripts
	$(BIN)/ruff format --check spark_ap tests scripts

test: lint
	$(BIN)/python -m pytest

demo: install
	$(BIN)/python scripts/demo.py

clean:
	rm -rf $(VENV) output .pytest_cache .ruff_cache spark_ap.egg-info
