"""A cheaper ``importlib.invalidate_caches()`` in PySpark's Python workers, on Python before 3.12.

PySpark's worker calls ``importlib.invalidate_caches()`` before every task, after it
puts the task's Python files on ``sys.path``. Since Python 3.10 that makes every
``zipimport`` importer read its archive's whole directory again, and a worker's
``sys.path`` holds three archives: ``pyspark.zip``, py4j's, and Spark's core jar (15 MB,
thousands of entries). On the machines spark-ap is tested on that costs 0.1 to 0.2 s per
task, most of a small task's time (CPython gh-103200, fixed in 3.12, where the directory is
read again only when next used; Spark SPARK-54744, after 4.1, calls it only when files were
added).

:func:`install` makes an importer read its archive again only when the file changed since
it last read it (another size or modification time), which is what invalidating the cache
is for: a task that ships a new version of a zip still imports the new one. It acts in
PySpark's workers alone, once per process, when spark-ap's code first runs there (a worker
is reused for many tasks, which gain from then on); a driver, a notebook or Airflow are
left as they are.
"""

from __future__ import annotations

import os
import sys
import zipimport


def install() -> None:
    """Patch ``zipimport.zipimporter.invalidate_caches`` in a PySpark worker on Python < 3.12."""
    if sys.version_info >= (3, 12) or "pyspark.worker" not in sys.modules:
        return
    reread = zipimport.zipimporter.invalidate_caches
    if getattr(reread, "reads_only_changed_archives", False):
        return

    def invalidate_caches(self: zipimport.zipimporter) -> None:
        try:
            stat = os.stat(self.archive)
            stamp = (stat.st_mtime_ns, stat.st_size)
        except OSError:  # gone: let zipimport say so
            stamp = None
        if stamp is not None and getattr(self, "_spark_ap_stamp", None) == stamp:
            return
        reread(self)
        self._spark_ap_stamp = stamp

    invalidate_caches.reads_only_changed_archives = True
    zipimport.zipimporter.invalidate_caches = invalidate_caches
