"""The fitted model of a feature table: its exemplars, which assign new points to clusters.

``MultiLevelAffinityPropagation().fit(features)`` returns an
:class:`AffinityPropagationModel`; ``model.transform(df)`` adds ``cluster`` and
``exemplar`` to every row, from the exemplar most similar to the row's
features under the model's metric (scikit-learn's ``AffinityPropagation.predict``),
on batch and streaming DataFrames alike.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pyspark.ml import Model
from pyspark.ml.functions import vector_to_array
from pyspark.ml.linalg import VectorUDT
from pyspark.ml.util import DefaultParamsReader, DefaultParamsWriter, MLReadable, MLReader, MLWritable, MLWriter
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spark_ap.checksums import first_difference, local_digests, sha256_json
from spark_ap.compat import ml_io
from spark_ap.errors import ColumnTypeError, InvalidInputError, InvalidParamError
from spark_ap.estimators._params import spec_param
from spark_ap.params import SPECS
from spark_ap.paths import dangling_link, local_path

log = logging.getLogger("spark_ap")


class AffinityPropagationModel(Model, MLReadable, MLWritable):
    """Exemplars with their features, and the metric that compares points with them.

    Attributes
    ----------
    exemplars : pandas.DataFrame
        ``cluster, exemplar, features``: one row per cluster, in cluster order.
    summary : MultiLevelResult or None
        What the run that fit the model returned (assignments, levels,
        history, ...); None for a loaded model. (Typed ``Any`` here: the
        model sits below the estimator that fits it.)

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

    def __init__(self, exemplars: pd.DataFrame | None = None, summary: Any = None) -> None:
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

        if not centers:
            raise InvalidInputError("transform: the model has no exemplars; it cannot assign points")
        column = self._checked_features(dataset, len(centers[0]))
        table = dataset.sparkSession.createDataFrame(self.exemplars[["cluster", "exemplar"]])
        return dataset.withColumn("cluster", nearest(column)).join(F.broadcast(table), "cluster", "left")

    def _checked_features(self, dataset: DataFrame, dimensions: int) -> Column:
        """The features column as an array, once the table is known to hold only rows the model can assign.

        Refused with :class:`~spark_ap.InvalidInputError` naming the column, how many rows
        and an example: a missing features column, columns ``cluster``/``exemplar`` that
        transform would add, and rows whose features are null, hold a null or NaN or
        infinity, have another length than the exemplars', or (cosine) are all 0. A stream
        cannot be counted in advance: ``spark-ap stream`` checks each record instead.
        """
        name = self.getFeaturesCol()
        if name not in dataset.columns:
            raise InvalidInputError(f"transform: the table has no features column {name!r}; it has {dataset.columns}")
        taken = [c for c in ("cluster", "exemplar") if c in dataset.columns]
        if taken:
            raise InvalidInputError(
                f"transform: the table already has a column {taken[0]!r}, which transform adds; drop or rename it"
            )
        column, dtype = dataset[name], dataset.schema[name].dataType
        if isinstance(dtype, VectorUDT):
            column = vector_to_array(column)
        elif not (isinstance(dtype, T.ArrayType) and isinstance(dtype.elementType, T.NumericType)):
            raise ColumnTypeError(
                f"transform: the features column {name!r} has type {dtype.simpleString()}; it must be an array "
                "of numbers or an ML vector"
            )
        if dataset.isStreaming:
            return column
        bad = column.isNull() | (F.size(column) != dimensions)
        bad = bad | F.exists(column, lambda v: v.isNull() | F.isnan(v) | (F.abs(v) == float("inf")))
        if self.getMetric() == "cosine":
            bad = bad | F.forall(column, lambda v: v == 0)
        else:
            # |x|^2 overflows: so do the squared distances to every exemplar, and the nearest is undefined.
            bad = bad | (F.aggregate(column, F.lit(0.0), lambda acc, v: acc + v * v) == float("inf"))
        rows = dataset.where(bad)
        count = rows.count()
        if count:
            example = rows.select(column.alias(name)).first()[0]
            zero = " or all 0 (cosine)" if self.getMetric() == "cosine" else ""
            raise InvalidInputError(
                f"transform: {count} row(s) of {name!r} cannot be assigned (null, a null or NaN or infinite value, "
                f"not {dimensions} values{zero or ', values whose squares overflow'}), e.g. {example!r:.80}"
            )
        return column

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
        DefaultParamsWriter.saveMetadata(self.instance, path, ml_io(spark))
        data = self.instance.exemplars.assign(
            features=[list(map(float, v)) for v in self.instance.exemplars["features"]]
        )
        spark.createDataFrame(data).coalesce(1).write.parquet(os.path.join(path, "data"))
        folder = _local(path)
        if folder is not None:  # on the driver's disk: what load checks first
            files = local_digests(folder)
            (folder / CHECKSUMS).write_text(json.dumps({"files": files, "sha256": sha256_json(files)}, indent=1))


class _ModelReader(MLReader):
    def load(self, path: str) -> AffinityPropagationModel:
        if not path.strip():
            raise InvalidInputError("The model path is empty; give the model folder (a run's model/)")
        folder = _local(path)
        if folder is not None and not folder.is_dir():
            # Spark's reader would say its metadata path is not found, naming no model.
            what = dangling_link(folder) or (
                "a file, not a model folder" if folder.exists() else "a folder that does not exist"
            )
            raise InvalidInputError(f"The model {path} is {what}")
        if folder is not None:
            _check_files(folder)
        try:
            metadata, exemplars = self._read(path)
        except (OSError, ValueError, KeyError) as error:  # what a folder of other files raises
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
        local = _local(path)
        if local is not None and local.is_dir():
            # A folder on the driver's own disk is read there: a cluster's executors need not see it.
            parts = sorted((local / "metadata").glob("part-*"))
            if not parts:
                raise FileNotFoundError(f"no metadata/part-* file in {local}")
            metadata = DefaultParamsReader._parseMetaData(parts[0].read_text().splitlines()[0])
            return metadata, pd.read_parquet(local / "data").sort_values("cluster")
        spark = SparkSession.active()
        metadata = DefaultParamsReader.loadMetadata(path, ml_io(spark))
        return metadata, spark.read.parquet(os.path.join(path, "data")).toPandas().sort_values("cluster")


# A model folder on the driver's disk lists its files' sizes and SHA-256 here, checked before a load.
CHECKSUMS = "checksums.json"


def _local(path: str) -> Path | None:
    """``path`` as a folder of the driver's file system, or None for a URI of another (hdfs://, s3a://)."""
    local = local_path(path)
    return None if local is None else Path(local)


def _check_files(folder: Path) -> None:
    """Refuse a model folder whose files are not those written (missing, truncated, changed, added)."""
    listed = folder / CHECKSUMS
    if not listed.is_file():
        log.warning(
            "The model %s has no %s (written by an older spark-ap?): its files are not checked", folder, CHECKSUMS
        )
        return
    try:
        written = json.loads(listed.read_text())
        files = written["files"]
        intact = written["sha256"] == sha256_json(files)
    except (ValueError, KeyError, TypeError):
        intact = False
    if not intact:
        raise InvalidInputError(f"The model {folder} is damaged: {listed} does not match its checksum")
    problem = first_difference(files, local_digests(folder, leave_out=(CHECKSUMS,)), str(folder))
    if problem:
        raise InvalidInputError(f"The model {folder} is damaged: {problem}")
