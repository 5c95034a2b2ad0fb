"""The installed environment is the one the project pins and tests."""

import importlib.metadata
import pathlib


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
