"""The fitted model of a feature table: its exemplars, which assign new points to clusters.

``MultiLevelAffinityPropagation().fit(features)`` returns an
:class:`AffinityPropagationModel`; ``model.transform(df)`` adds ``cluster`` and
``exemplar`` to every row, from the exemplar most similar to the row's
features under the model's metric (scikit-learn's ``AffinityPropagation.predict``),
on batch and streaming DataFrames alike; the points the model was fit on keep the
fit's own labels. With ``assignment="withRoom"`` a batch is placed instead into the
room the fitted clusters have left under ``maxClusterSize`` (docs/capacity.md).
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pyspark.ml import Model
from pyspark.ml.functions import vector_to_array
from pyspark.ml.linalg import VectorUDT
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.util import DefaultParamsReader, DefaultParamsWriter, MLReadable, MLReader, MLWritable, MLWriter
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spark_ap.checksums import first_difference, local_digests, sha256_json
from spark_ap.compat import ml_io
from spark_ap.engines.capacity import CapacityWarning, transport
from spark_ap.errors import ColumnTypeError, InvalidInputError, InvalidParamError, user_stacklevel
from spark_ap.estimators._params import spec_param
from spark_ap.params import SPECS
from spark_ap.paths import dangling_link, local_path

log = logging.getLogger("spark_ap")

# How transform assigns a batch: each point to its most similar exemplar, or placed under the capacity.
ASSIGNMENTS = ("nearest", "withRoom")


def unit_rows(column: Column) -> Column:
    """Each array of ``column`` scaled to unit length: the cosine metric's points, as the fit has them."""
    norm = F.sqrt(F.aggregate(column, F.lit(0.0), lambda acc, v: acc + v * v))
    return F.transform(column, lambda v: v / norm)


class AffinityPropagationModel(Model, MLReadable, MLWritable):
    """Exemplars with their features, and the metric that compares points with them.

    Attributes
    ----------
    exemplars : pandas.DataFrame
        ``cluster, exemplar, features, size``: one row per cluster, in cluster
        order; ``size`` is the cluster's number of points in the fit (absent
        from a model saved before the sizes were kept).
    displaced : pandas.DataFrame
        ``id, features, cluster``: the points of the fit whose cluster is not
        their most similar exemplar's (a capacity's placement, the levels) or
        -1 (left out by the capacity: docs/capacity.md#points-left-out), with
        their features as the fit compared them (cosine: of unit length).
        Empty when every point of the fit is at its most similar exemplar.
    summary : MultiLevelResult or None
        What the run that fit the model returned (assignments, levels,
        history, ...); None for a loaded model. (Typed ``Any`` here: the
        model sits below the estimator that fits it.)

    Params
    ------
    featuresCol, idCol, metric
        As the estimator's.
    maxClusterSize : int
        The fit's bound on a cluster's points (0: none), which ``withRoom`` keeps.
    assignment : {"nearest", "withRoom"}, default "nearest"
        How :meth:`transform` assigns a batch (see the Notes).

    Notes
    -----
    ``assignment="nearest"``: a point takes the cluster of the exemplar with
    the largest similarity (``-|x - e|^2``, or the cosine); of exactly equal
    ones, the lowest cluster, on batch and streaming DataFrames. A row whose id
    (``idCol``) and features are those of a point of :attr:`displaced` takes
    the fit's cluster instead (-1 and a null exemplar for a point the fit left
    out), so on the points it was fit on transform gives the fit's own labels
    exactly: the other points of the fit are at their most similar exemplar,
    which transform computes from the same features. The model keeps only the
    displaced points, not every point of the fit. Rows of a table without
    ``idCol`` all take the most similar exemplar.

    ``assignment="withRoom"`` (batches only): the rows are new points, added to
    the fitted clusters without putting more than ``maxClusterSize`` points in
    any, given the fitted ``size``. Each cluster has room for ``maxClusterSize
    - size`` more; of the placements into that room, the one that places the
    most rows and, of those, has the largest total similarity of the rows to
    their exemplars (the capacity's exact placement,
    :func:`~spark_ap.engines.capacity.transport`). A row that does not fit has
    cluster -1 and a null exemplar, and a ``CapacityWarning`` counts such
    rows. The batch's ids (``idCol``, unique) and features are read onto the
    driver, which weighs every row against every exemplar. Without a bound
    (``maxClusterSize`` 0) it is ``"nearest"``.
    """

    featuresCol = spec_param("featuresCol")
    idCol = spec_param("idCol")
    metric = spec_param("metric")
    maxClusterSize = spec_param("maxClusterSize")
    assignment = Param(
        Params._dummy(),
        "assignment",
        "how transform assigns a batch: nearest (the most similar exemplar) or withRoom (placed under "
        "maxClusterSize, given the fitted cluster sizes)",
        typeConverter=TypeConverters.toString,
    )

    def __init__(
        self, exemplars: pd.DataFrame | None = None, summary: Any = None, displaced: pd.DataFrame | None = None
    ) -> None:
        super().__init__()
        self._setDefault(
            featuresCol=SPECS["featuresCol"].default,
            idCol=SPECS["idCol"].default,
            metric=SPECS["metric"].default,
            maxClusterSize=0,
            assignment="nearest",
        )
        self.exemplars = exemplars
        self.summary = summary
        self.displaced = pd.DataFrame({"id": [], "features": [], "cluster": []}) if displaced is None else displaced

    def getFeaturesCol(self) -> str:
        return self.getOrDefault(self.featuresCol)

    def getIdCol(self) -> str:
        return self.getOrDefault(self.idCol)

    def getMetric(self) -> str:
        return self.getOrDefault(self.metric)

    def getMaxClusterSize(self) -> int:
        """The fit's bound on a cluster's points; 0: none (a model saved without it too)."""
        return self.getOrDefault(self.maxClusterSize)

    def getAssignment(self) -> str:
        return self.getOrDefault(self.assignment)

    def setAssignment(self, value: str) -> AffinityPropagationModel:
        """``"nearest"`` (the default) or ``"withRoom"``: see the class's Notes."""
        if value not in ASSIGNMENTS:
            raise InvalidParamError(f"assignment must be one of {ASSIGNMENTS}; got {value!r}")
        return self._set(assignment=value)

    def clusterSizes(self) -> list[int] | None:
        """Each cluster's number of points in the fit, in cluster order; None for a model saved without them."""
        if self.exemplars is None or "size" not in self.exemplars.columns:
            return None
        return [int(v) for v in self.exemplars["size"]]

    @property
    def hasSummary(self) -> bool:
        return self.summary is not None

    def clusterCenters(self) -> list[np.ndarray]:
        """The exemplars' feature vectors, in cluster order (as pyspark.ml's KMeansModel names them)."""
        return [np.asarray(v, dtype=float) for v in self.exemplars["features"]]

    def _transform(self, dataset: DataFrame) -> DataFrame:
        centers = self.clusterCenters()
        if not centers:
            raise InvalidInputError("transform: the model has no exemplars; it cannot assign points")
        assignment = self.getAssignment()
        if assignment not in ASSIGNMENTS:
            raise InvalidParamError(f"assignment must be one of {ASSIGNMENTS}; got {assignment!r}")
        column = self._checked_features(dataset, len(centers[0]))
        x = column.cast("array<double>")
        if self.getMetric() == "cosine":
            x = unit_rows(x)  # as the fit's points are: the same arithmetic, the same nearest exemplar
        if assignment == "withRoom" and self.getMaxClusterSize():
            cluster = self._with_room(dataset, x)
        else:
            cluster = self._nearest_or_fitted(dataset, x)
        table = dataset.sparkSession.createDataFrame(self.exemplars[["cluster", "exemplar"]])
        return cluster.join(F.broadcast(table), "cluster", "left")

    def _nearest_or_fitted(self, dataset: DataFrame, x: Column) -> DataFrame:
        """``dataset`` with ``cluster``: the most similar exemplar's, or the fit's for a displaced point."""
        centers, metric = self.clusterCenters(), self.getMetric()

        @F.pandas_udf("int")
        def nearest(x: pd.Series) -> pd.Series:
            cluster, _ = nearest_exemplar(np.array(x.tolist(), dtype=float), centers, metric)
            return pd.Series(cluster, dtype="int32")

        id_col = self.getIdCol()
        if self.displaced.empty or id_col not in dataset.columns:
            return dataset.withColumn("cluster", nearest(x))
        kind = dataset.schema[id_col].dataType
        fitted = dataset.sparkSession.createDataFrame(
            pd.DataFrame(
                {
                    "id": self.displaced["id"],
                    "features": [list(map(float, v)) for v in self.displaced["features"]],
                    "cluster": self.displaced["cluster"].astype("int32"),
                }
            )
        ).select(
            F.col("id").cast(kind).alias("__fit_id"),
            F.col("features").alias("__fit_x"),
            F.col("cluster").alias("__fit_cluster"),
        )
        joined = dataset.withColumn("__x", x).join(
            F.broadcast(fitted), (F.col(id_col) == F.col("__fit_id")) & (F.col("__x") == F.col("__fit_x")), "left"
        )
        cluster = F.when(F.col("__fit_id").isNotNull(), F.col("__fit_cluster")).otherwise(nearest(F.col("__x")))
        return joined.withColumn("cluster", cluster).drop("__x", "__fit_id", "__fit_x", "__fit_cluster")

    def _with_room(self, dataset: DataFrame, x: Column) -> DataFrame:
        """``dataset`` with ``cluster``: its rows placed into the room the fitted clusters have left."""
        if dataset.isStreaming:
            raise InvalidInputError(
                'transform: assignment="withRoom" places a whole batch at once; a stream takes "nearest"'
            )
        sizes = self.clusterSizes()
        if sizes is None:
            raise InvalidInputError(
                'transform: assignment="withRoom" needs the fitted cluster sizes, which this model (saved by '
                'an older spark-ap) lacks; fit it again, or use "nearest"'
            )
        id_col = self.getIdCol()
        if id_col not in dataset.columns:
            raise InvalidInputError(
                f'transform: assignment="withRoom" joins the placement back by id; the table has no {id_col!r} '
                f"column (idCol); it has {dataset.columns}"
            )
        rows = dataset.select(F.col(id_col).alias("id"), x.alias("x")).toPandas()
        if rows["id"].isna().any() or rows["id"].duplicated().any():
            raise InvalidInputError(
                f'transform: assignment="withRoom" needs one row per id; {id_col!r} has null or repeated values'
            )
        room = np.maximum(self.getMaxClusterSize() - np.asarray(sizes, dtype=np.int64), 0)
        X = np.array(rows["x"].tolist(), dtype=float).reshape(len(rows), -1)
        cluster = place_with_room(X, self.clusterCenters(), self.getMetric(), room)
        left = int((cluster < 0).sum())
        if left:
            warnings.warn(
                f"{left} of {len(rows)} points of the batch could not be placed and are in no cluster (cluster -1): "
                f"the {len(sizes)} clusters have room for {int(room.sum())} more at "
                f"maxClusterSize={self.getMaxClusterSize()}.",
                CapacityWarning,
                stacklevel=user_stacklevel(),
            )
        kind = dataset.schema[id_col].dataType
        placed = dataset.sparkSession.createDataFrame(
            pd.DataFrame({"id": rows["id"], "cluster": cluster}),
            T.StructType([T.StructField(id_col, kind), T.StructField("cluster", T.IntegerType())]),
        )
        return dataset.join(F.broadcast(placed), id_col, "left")

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


def place_with_room(X: np.ndarray, centers: list[np.ndarray], metric: str, room: np.ndarray) -> np.ndarray:
    """Each row of ``X``'s cluster (-1: not placed), at most ``room[k]`` rows in cluster k: as many rows as
    can be placed and, of those placements, the largest total similarity (``-|x - e|^2`` or the cosine)
    of the rows to their exemplars (:func:`~spark_ap.engines.capacity.transport`)."""
    E = np.asarray(centers, dtype=float)
    if metric == "cosine":
        similarity = (X / np.linalg.norm(X, axis=1, keepdims=True)) @ (E / np.linalg.norm(E, axis=1, keepdims=True)).T
    else:
        similarity = -((X[:, None, :] - E[None, :, :]) ** 2).sum(-1)
    rows, columns = np.nonzero(np.broadcast_to(room > 0, similarity.shape))
    cluster = np.full(len(X), -1, dtype=np.int32)
    if rows.size:
        taken = transport(rows, columns, similarity[rows, columns], room)
        cluster[rows[taken]] = columns[taken]
    return cluster


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
        displaced = self.instance.displaced
        DefaultParamsWriter.saveMetadata(self.instance, path, ml_io(spark), extraMetadata={"displaced": len(displaced)})
        data = self.instance.exemplars.assign(
            features=[list(map(float, v)) for v in self.instance.exemplars["features"]]
        )
        spark.createDataFrame(data).coalesce(1).write.parquet(os.path.join(path, "data"))
        if len(displaced):  # the fit's labels where they are not the most similar exemplar's
            rows = displaced.assign(features=[list(map(float, v)) for v in displaced["features"]])
            spark.createDataFrame(rows).coalesce(1).write.parquet(os.path.join(path, DISPLACED))
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
            metadata, exemplars, displaced = self._read(path)
        except (OSError, ValueError, KeyError) as error:  # what a folder of other files raises
            raise InvalidInputError(f"{path} is not a readable spark-ap model: {error!r}") from error
        if exemplars.empty:
            raise InvalidInputError(f"The model {path} has no exemplars: it cannot assign points")
        model = AffinityPropagationModel(exemplars.reset_index(drop=True), displaced=displaced)
        model._resetUid(metadata["uid"])
        DefaultParamsReader.getAndSetParams(model, metadata)
        try:
            SPECS["metric"].check(model.getMetric())
        except InvalidParamError as error:
            raise InvalidInputError(f"The model {path} was not written by spark-ap: {error}") from None
        return model

    def _read(self, path: str) -> tuple[dict, pd.DataFrame, pd.DataFrame | None]:
        """Metadata, exemplars and the displaced points (None: a model saved without any, or before them)."""
        local = _local(path)
        if local is not None and local.is_dir():
            # A folder on the driver's own disk is read there: a cluster's executors need not see it.
            parts = sorted((local / "metadata").glob("part-*"))
            if not parts:
                raise FileNotFoundError(f"no metadata/part-* file in {local}")
            metadata = DefaultParamsReader._parseMetaData(parts[0].read_text().splitlines()[0])
            displaced = pd.read_parquet(local / DISPLACED) if metadata.get("displaced") else None
            return metadata, pd.read_parquet(local / "data").sort_values("cluster"), displaced
        spark = SparkSession.active()
        metadata = DefaultParamsReader.loadMetadata(path, ml_io(spark))
        displaced = spark.read.parquet(os.path.join(path, DISPLACED)).toPandas() if metadata.get("displaced") else None
        return metadata, spark.read.parquet(os.path.join(path, "data")).toPandas().sort_values("cluster"), displaced


# A model folder on the driver's disk lists its files' sizes and SHA-256 here, checked before a load.
CHECKSUMS = "checksums.json"
# The model's displaced points (AffinityPropagationModel.displaced), when there are any.
DISPLACED = "displaced"


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
