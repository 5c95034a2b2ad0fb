"""The installed environment is the one the project pins and tests."""

import importlib.metadata
import pathlib
import subprocess
import sys


def test_pyspark_imports_with_its_jars():
    # pyspark-client (pulled in by some Airflow Spark providers) overwrites
    # pyspark's files while `pip check` stays happy; guard against it.
    import pyspark
    from pyspark.sql import SparkSession  # noqa: F401

    assert pyspark.__version__.startswith("4.1.")
    jars = pathlib.Path(pyspark.__file__).parent / "jars"
    assert any(jars.glob("spark-core_2.13-*.jar"))


def test_pyspark_client_is_not_installed():
    try:
        version = importlib.metadata.version("pyspark-client")
    except importlib.metadata.PackageNotFoundError:
        version = None
    assert version is None, f"pyspark-client {version} is installed and shadows pyspark"


def test_pandas_is_below_3():
    import pandas

    assert int(pandas.__version__.split(".")[0]) < 3


def test_imports_go_one_way():
    # The modules the DAG reads at parse time import no Spark, and the library never imports the
    # application (job, export, config, pipeline, preflight): each checked in a fresh process.
    checks = {
        "import sys; import spark_ap.params, spark_ap.errors, spark_ap.app.config, spark_ap.app.pipeline; "
        "print(sorted(m for m in ('pyspark', 'numpy', 'pandas') if m in sys.modules))": "[]",
        "import sys; import spark_ap, spark_ap.estimators.affinity, spark_ap.multilevel, "
        "spark_ap.prepare.builders, spark_ap.session; "
        "print(sorted(m for m in sys.modules if m.startswith('spark_ap.app')))": "[]",
    }
    for code, expected in checks.items():
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.split("\n")[-2] == expected, code
