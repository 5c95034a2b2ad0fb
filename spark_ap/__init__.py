"""spark-ap: Affinity Propagation clustering on Apache Spark.

>>> from spark_ap import AffinityPropagation, spark_session
>>> spark = spark_session()                                   # doctest: +SKIP
>>> AffinityPropagation(preference="median").assignClusters(edges)  # doctest: +SKIP
"""

from spark_ap.clustering import AffinityPropagation, AffinityPropagationResult
from spark_ap.errors import (
    ColumnTypeError,
    ConvergenceWarning,
    DuplicateEdgeError,
    EmptyInputError,
    GraphFramesUnavailableError,
    InvalidInputError,
    InvalidParamError,
    InvalidValueError,
    MissingColumnError,
    SparkAPError,
    StateMismatchError,
)
from spark_ap.graph import edges_from_features, edges_from_matrix, similarity_matrix
from spark_ap.multilevel import MultiLevelAffinityPropagation, MultiLevelResult
from spark_ap.session import spark_session

__version__ = "0.1.0"

__all__ = [
    "AffinityPropagation",
    "AffinityPropagationResult",
    "ColumnTypeError",
    "ConvergenceWarning",
    "DuplicateEdgeError",
    "EmptyInputError",
    "GraphFramesUnavailableError",
    "InvalidInputError",
    "InvalidParamError",
    "InvalidValueError",
    "MissingColumnError",
    "MultiLevelAffinityPropagation",
    "MultiLevelResult",
    "SparkAPError",
    "StateMismatchError",
    "edges_from_features",
    "edges_from_matrix",
    "similarity_matrix",
    "spark_session",
]
