"""A SparkSession with settings that suit the engine."""

from __future__ import annotations

import os
import sys

from pyspark.sql import SparkSession

DEFAULTS = {
    "spark.app.name": "spark-ap",
    # Per-iteration progress comes from our log lines and job descriptions;
    # Spark's console progress bar would interleave with them.
    "spark.ui.showConsoleProgress": "false",
    # Let the cleaner delete checkpoint files of states that are no longer referenced.
    "spark.cleaner.referenceTracking.cleanCheckpoints": "true",
}


def spark_session(master: str | None = None, **conf: str) -> SparkSession:
    """Return the active SparkSession, or build one.

    Parameters
    ----------
    master : str, optional
        Spark master URL. By default the one ``spark-submit`` or the
        environment gives, else ``local[*]``.
    **conf : str
        Spark settings, e.g. ``spark_session(**{"spark.sql.shuffle.partitions": "8"})``;
        they win over :data:`DEFAULTS`. Ignored when a session is already active,
        since most settings cannot change on a running context.

    Notes
    -----
    Spark's Python workers must run the same interpreter as the driver, so
    ``PYSPARK_PYTHON`` is set to it unless the environment already says.
    """
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder
    if master is not None:
        builder = builder.master(master)
    for key, value in {**DEFAULTS, **conf}.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()
