"""The fitted model of a feature table: its exemplars, which assign new points to clusters.

``MultiLevelAffinityPropagation().fit(features)`` returns an
:class:`AffinityPropagationModel`; ``model.transform(df)`` adds ``cluster`` and
``exemplar`` to every row, from the exemplar most similar to the row's
features under the model's metric (scikit-learn's ``AffinityPropagation.predict``),
on batch and streaming DataFrames alike.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pyspark.ml import Model
from pyspark.ml.functions import vector_to_array
from pyspark.ml.linalg import VectorUDT
from pyspark.ml.util import DefaultParamsReader, DefaultParamsWriter, MLReadable, MLReader, MLWritable, MLWriter
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spark_ap.errors import InvalidInputError, InvalidParamError
from spark_ap.lib.mlparams import spec_param
from spark_ap.params import SPECS

if TYPE_CHECKING:
    from spark_ap.multilevel.result import MultiLevelResult


class AffinityPropagationModel(Model, MLReadable, MLWritable):
    """Exemplars with their features, and the metric that compares points with them.

    Attributes
    ----------
    exemplars : pandas.DataFrame
        ``cluster, exemplar, features``: one row per cluster, in cluster order.
    summary : MultiLevelResult or None
        What the run that fit the model returned (assignments, levels,
        history, ...); None for a loaded model.

    Notes
    -----
    A point takes the cluster of the exemplar with the largest similarity
    (``-|x - e|^2``, or the cosine); of exactly equal ones, the lowest cluster.
    On the points it was fit on this is the run's own assignment wherever the
    run assigned a point to its most similar exemplar: always on a complete
    graph (up to ``exactBelow`` points); above, a point follows its level-0
    exemplar through the levels and may end in a cluster whose exemplar is not
    the most similar one.
    """

    featuresCol = spec_param("featuresCol")
    metric = spec_param("metric")

    def __init__(self, exemplars: pd.DataFrame | None = None, summary: MultiLevelResult | None = None) -> None:
        super().__init__()
        self._setDefault(featuresCol=SPECS["featuresCol"].default, metric=SPECS["metric"].default)
        self.exemplars = exemplars
        self.summary = summary

    def getFeaturesCol(self) -> str:
        return self.getOrDefault(self.featuresCol)

    def getMetric(self) -> str:
        return self.getOrDefault(self.metric)

    @property
    def hasSummary(self) -> bool:
        return self.summary is not None

    def clusterCenters(self) -> list[np.ndarray]:
        """The exemplars' feature vectors, in cluster order (as pyspark.ml's KMeansModel names them)."""
        return [np.asarray(v, dtype=float) for v in self.exemplars["features"]]

    def _transform(self, dataset: DataFrame) -> DataFrame:
        centers, metric = self.clusterCenters(), self.getMetric()

        @F.pandas_udf("int")
        def nearest(x: pd.Series) -> pd.Series:
            cluster, _ = nearest_exemplar(np.array(x.tolist(), dtype=float), centers, metric)
            return pd.Series(cluster, dtype="int32")

        column = dataset[self.getFeaturesCol()]
        if isinstance(dataset.schema[self.getFeaturesCol()].dataType, VectorUDT):
            column = vector_to_array(column)
        table = dataset.sparkSession.createDataFrame(self.exemplars[["cluster", "exemplar"]])
        return dataset.withColumn("cluster", nearest(column)).join(F.broadcast(table), "cluster", "left")

    def write(self) -> MLWriter:
        return _ModelWriter(self)

    @classmethod
    def read(cls) -> MLReader:
        return _ModelReader()


def nearest_exemplar(X: np.ndarray, centers: list[np.ndarray], metric: str) -> tuple[np.ndarray, np.ndarray]:
    """The most similar exemplar of each row of ``X`` (an n x d array), and the distance to it.

    Parameters
    ----------
    X : ndarray of shape (n, d)
        The points.
    centers : list of ndarray of shape (d,)
        The exemplars' features, in cluster order.
    metric : {"sqeuclidean", "cosine"}
        The model's similarity: ``-|x - e|^2`` or the cosine.

    Returns
    -------
    cluster : ndarray of shape (n,)
        Index of the most similar exemplar; of exactly equal ones, the lowest.
    distance : ndarray of shape (n,)
        To that exemplar: the Euclidean distance ``|x - e|``, or ``1 - cosine``;
        not finite for points whose arithmetic overflows.
    """
    with np.errstate(over="ignore", invalid="ignore"):  # out-of-range points give a distance of inf or nan
        return _nearest(X, np.asarray(centers, dtype=float), metric)


def _nearest(X: np.ndarray, E: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    if metric == "cosine":
        E = E / np.linalg.norm(E, axis=1, keepdims=True)
        X = X / np.linalg.norm(X, axis=1, keepdims=True)
        similarity = X @ E.T
    else:
        # -|x - e|^2 less -|x|^2, which is the same for every exemplar.
        similarity = 2 * X @ E.T - np.einsum("ij,ij->i", E, E)
    cluster = np.argmax(similarity, axis=1)  # ties: the lowest cluster
    if metric == "cosine":
        distance = 1.0 - similarity[np.arange(len(X)), cluster]
    else:
        distance = np.linalg.norm(X - E[cluster], axis=1)
    return cluster, distance


class _ModelWriter(MLWriter):
    """Params as pyspark.ml writes them (``metadata``), exemplars as Parquet (``data``)."""

    def __init__(self, instance: AffinityPropagationModel) -> None:
        super().__init__()
        self.instance = instance

    def saveImpl(self, path: str) -> None:
        spark = self.sparkSession
        DefaultParamsWriter.saveMetadata(self.instance, path, spark)
        data = self.instance.exemplars.assign(
            features=[list(map(float, v)) for v in self.instance.exemplars["features"]]
        )
        spark.createDataFrame(data).coalesce(1).write.parquet(os.path.join(path, "data"))


class _ModelReader(MLReader):
    def load(self, path: str) -> AffinityPropagationModel:
        try:
            metadata, exemplars = self._read(path)
        except (OSError, ValueError, KeyError, StopIteration) as error:  # what a folder of other files raises
            raise InvalidInputError(f"{path} is not a readable spark-ap model: {error!r}") from error
        if exemplars.empty:
            raise InvalidInputError(f"The model {path} has no exemplars: it cannot assign points")
        model = AffinityPropagationModel(exemplars.reset_index(drop=True))
        model._resetUid(metadata["uid"])
        DefaultParamsReader.getAndSetParams(model, metadata)
        try:
            SPECS["metric"].check(model.getMetric())
        except InvalidParamError as error:
            raise InvalidInputError(f"The model {path} was not written by spark-ap: {error}") from None
        return model

    def _read(self, path: str) -> tuple[dict, pd.DataFrame]:
        local = Path(path.removeprefix("file://"))
        if "://" not in str(local) and local.is_dir():
            # A folder on the driver's own disk is read there: a cluster's executors need not see it.
            parts = sorted((local / "metadata").glob("part-*"))
            if not parts:
                raise FileNotFoundError(f"no metadata/part-* file in {local}")
            metadata = DefaultParamsReader._parseMetaData(parts[0].read_text().splitlines()[0])
            return metadata, pd.read_parquet(local / "data").sort_values("cluster")
        spark = SparkSession.active()
        metadata = DefaultParamsReader.loadMetadata(path, spark)
        return metadata, spark.read.parquet(os.path.join(path, "data")).toPandas().sort_values("cluster")


def fitted_model(estimator: Any, points: DataFrame, result: MultiLevelResult) -> AffinityPropagationModel:
    """The model of ``result``: its exemplars with their features (``points``: ``id, x`` as given)."""
    exemplars = (
        result.exemplars.select("cluster", "exemplar")
        .join(points.select(F.col("id").alias("exemplar"), F.col("x").alias("features")), "exemplar")
        .orderBy("cluster")
        .toPandas()[["cluster", "exemplar", "features"]]
    )
    model = AffinityPropagationModel(exemplars, summary=result)
    model._set(featuresCol=estimator.getFeaturesCol(), metric=estimator.getMetric())
    return model
