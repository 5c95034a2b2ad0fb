"""spark-ap: Affinity Propagation clustering on Apache Spark.

>>> from spark_ap import AffinityPropagation, spark_session
>>> spark = spark_session()                                   # doctest: +SKIP
>>> AffinityPropagation(preference="median").assignClusters(edges)  # doctest: +SKIP

The names below are imported when first used, so that ``import spark_ap.params``
(the Airflow DAG does, whenever Airflow parses it) does not load Spark.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from spark_ap import _workers

__version__ = "0.1.0"

# In a PySpark worker (which imports spark-ap to run its functions): cheaper tasks from then on.
_workers.install()

# Where the public names live; the rest of __all__ are the error types of spark_ap.errors.
_MODULES = {
    "AffinityPropagation": "spark_ap.estimators.affinity",
    "AffinityPropagationModel": "spark_ap.estimators.model",
    "AffinityPropagationResult": "spark_ap.estimators.affinity",
    "MultiLevelAffinityPropagation": "spark_ap.multilevel",
    "MultiLevelResult": "spark_ap.multilevel",
    "edges_from_features": "spark_ap.prepare.builders",
    "edges_from_matrix": "spark_ap.prepare.builders",
    "similarity_matrix": "spark_ap.prepare.builders",
    "spark_session": "spark_ap.session",
}

__all__ = [
    "AffinityPropagation",
    "AffinityPropagationModel",
    "AffinityPropagationResult",
    "ClassicSessionRequiredError",
    "ColumnTypeError",
    "ConvergenceWarning",
    "DuplicateEdgeError",
    "EmptyInputError",
    "FolderInUseError",
    "GraphFramesUnavailableError",
    "InvalidInputError",
    "InvalidParamError",
    "InvalidValueError",
    "MissingColumnError",
    "MultiLevelAffinityPropagation",
    "MultiLevelResult",
    "SaveUnreadableError",
    "SparkAPError",
    "StateMismatchError",
    "edges_from_features",
    "edges_from_matrix",
    "similarity_matrix",
    "spark_session",
]


def __getattr__(name: str):
    if name not in __all__:
        raise AttributeError(f"module 'spark_ap' has no attribute {name!r}")
    value = getattr(importlib.import_module(_MODULES.get(name, "spark_ap.errors")), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


if TYPE_CHECKING:
    from spark_ap.errors import (
        ClassicSessionRequiredError,
        ColumnTypeError,
        ConvergenceWarning,
        DuplicateEdgeError,
        EmptyInputError,
        FolderInUseError,
        GraphFramesUnavailableError,
        InvalidInputError,
        InvalidParamError,
        InvalidValueError,
        MissingColumnError,
        SaveUnreadableError,
        SparkAPError,
        StateMismatchError,
    )
    from spark_ap.estimators.affinity import AffinityPropagation, AffinityPropagationResult
    from spark_ap.estimators.model import AffinityPropagationModel
    from spark_ap.multilevel import MultiLevelAffinityPropagation, MultiLevelResult
    from spark_ap.prepare.builders import edges_from_features, edges_from_matrix, similarity_matrix
    from spark_ap.session import spark_session
