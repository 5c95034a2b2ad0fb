"""PySpark's workers read a zip archive's directory again only when the archive changed (Python < 3.12)."""

import importlib
import sys
import types
import zipfile
import zipimport

import pytest

from spark_ap import _workers

pytestmark = pytest.mark.skipif(sys.version_info >= (3, 12), reason="Python 3.12 reads zip directories lazily")


@pytest.fixture
def as_a_worker(monkeypatch):
    """This process looking like a PySpark worker, and zipimport restored afterwards."""
    monkeypatch.setitem(sys.modules, "pyspark.worker", types.ModuleType("pyspark.worker"))
    monkeypatch.setattr(zipimport.zipimporter, "invalidate_caches", zipimport.zipimporter.invalidate_caches)


def test_an_unchanged_archive_is_read_once_and_a_changed_one_again(as_a_worker, monkeypatch, tmp_path):
    archive = tmp_path / "shipped.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("spark_ap_shipped_a.py", "VALUE = 1\n")
    monkeypatch.syspath_prepend(str(archive))
    reads = []
    read_directory = zipimport._read_directory
    monkeypatch.setattr(zipimport, "_read_directory", lambda path: reads.append(path) or read_directory(path))
    assert importlib.import_module("spark_ap_shipped_a").VALUE == 1  # its importer reads it
    assert reads.count(str(archive)) == 1

    _workers.install()
    importlib.invalidate_caches()  # the first time: read again, and its size and time noted
    importlib.invalidate_caches()
    importlib.invalidate_caches()
    assert reads.count(str(archive)) == 2

    # A task that ships a new version of the archive imports what is in it.
    with zipfile.ZipFile(archive, "a") as z:
        z.writestr("spark_ap_shipped_b.py", "VALUE = 2\n")
    importlib.invalidate_caches()
    assert reads.count(str(archive)) == 3
    assert importlib.import_module("spark_ap_shipped_b").VALUE == 2
    for name in ("spark_ap_shipped_a", "spark_ap_shipped_b"):
        sys.modules.pop(name)


def test_outside_a_worker_nothing_changes(monkeypatch):
    monkeypatch.delitem(sys.modules, "pyspark.worker", raising=False)
    before = zipimport.zipimporter.invalidate_caches
    _workers.install()
    assert zipimport.zipimporter.invalidate_caches is before


def test_spark_workers_running_spark_ap_get_it(spark):
    def patched(_):
        import zipimport

        import spark_ap  # noqa: F401 (what running any of spark-ap's functions does first)

        return getattr(zipimport.zipimporter.invalidate_caches, "reads_only_changed_archives", False)

    assert spark.sparkContext.parallelize([0, 1], 2).map(patched).collect() == [True, True]
