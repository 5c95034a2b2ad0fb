"""The streaming job: points from a Kafka topic, each assigned to the nearest exemplar of the newest model.

    spark-ap stream --bootstrap-servers kafka:9092 --input-topic points \\
        --output-topic assignments --dead-letter-topic points-rejected \\
        --model output/latest --checkpoint-location /data/checkpoints/assign

Under ``spark-submit``: ``scripts/spark_ap_job.py stream ...`` with
``--packages`` naming :data:`spark_ap.session.KAFKA_PACKAGE` (``spark-ap stream``
adds it itself).

Records
-------
In: a JSON object per Kafka record, ``{"id": 17, "features": [0.3, 1.2]}``
(``id`` a string or an integer; the features as many numbers as the model's
exemplars have).

Out, keyed by the id: ``{"id", "cluster", "exemplar", "distance",
"model_version"}``, where ``distance`` is the Euclidean distance to the exemplar
(``1 - cosine`` for a cosine model) and ``model_version`` the name of the run
folder the model came from. Each record carries the header ``source``:
``<topic>/<partition>/<offset>`` of the point it answers.

A record that cannot be assigned (not JSON, no id, features missing, of the
wrong length, not numbers, NaN or infinite, or anything else that fails on
it) goes to the dead-letter topic under its own key (which may be null):
``{"reason", "value", "source", "model_version"}``, the value as it came
(decoded as UTF-8, bad bytes replaced; the first 64 KiB, with
``value_bytes`` the whole length when it is longer). Nothing is dropped.

The model
---------
``--model`` is a run folder (holding ``model/``), a model folder, or a
symbolic link to a run folder such as the DAG's ``<output_root>/latest``. The
link is read again before every micro-batch: a new run published by the DAG is
used from the next micro-batch on, without restarting the stream. A model that
cannot be read leaves the previous one in use, with a warning.

Delivery
--------
Spark records each micro-batch's offsets in the checkpoint before it runs,
and spark-ap the model the batch uses beside them (``<checkpoint>/models/``).
A batch that was interrupted is run again after a restart with the same
records and the same model, so it writes the same records again. Delivery is
at least once, and every repeat is identical (key, value and ``source``
header): the records of the one micro-batch in flight when the job died, and
those of a task Spark retried (a failed task, a lost executor, speculation).
A committed batch is never run again. A consumer that needs each point once
drops repeats of a ``source``, or keeps the last record per key on a
compacted output topic (where the ids ``17`` and ``"17"`` share the key).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pyspark.errors import AnalysisException, StreamingQueryException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spark_ap.errors import InvalidInputError, SparkAPError
from spark_ap.estimators.model import AffinityPropagationModel, nearest_exemplar
from spark_ap.session import KAFKA_PACKAGE, REPOSITORIES_ENV, spark_session

log = logging.getLogger("spark_ap.stream")

#: Of the records a micro-batch writes: the output topic's and the dead-letter topic's.
RECORDS_SCHEMA = "topic string, key binary, value binary, source string"
#: A dead letter keeps at most this many bytes of the value (well below Kafka's default 1 MB records).
MAX_DEAD_VALUE = 65536


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="spark-ap stream",
        description="Read points (JSON: id, features) from a Kafka topic, assign each to the nearest exemplar of "
        "the newest model and write id, cluster, exemplar, distance and model_version to an output topic; records "
        "that cannot be assigned go to a dead-letter topic with the reason.",
    )
    p.add_argument("--bootstrap-servers", required=True, help="Kafka brokers, host:port[,host:port...]")
    p.add_argument("--input-topic", required=True, help="topic of the points")
    p.add_argument("--output-topic", required=True, help="topic of the assignments")
    p.add_argument("--dead-letter-topic", required=True, help="topic of the records that could not be assigned")
    p.add_argument(
        "--model",
        required=True,
        help="run folder, model folder, or a link to a run folder (the DAG's <output_root>/latest), read again "
        "before every micro-batch",
    )
    p.add_argument(
        "--checkpoint-location",
        required=True,
        help="folder of the stream's progress; a restart with the same folder goes on where the job stopped",
    )
    p.add_argument("--features-field", default="features", help="JSON field of the feature values (default features)")
    p.add_argument(
        "--starting-offsets",
        choices=("earliest", "latest"),
        default="earliest",
        help="where a new stream starts reading (default earliest); a restart goes on from its checkpoint",
    )
    p.add_argument("--trigger-seconds", type=float, default=5.0, help="seconds between micro-batches (default 5)")
    p.add_argument("--max-offsets-per-trigger", type=int, help="at most this many records per micro-batch")
    p.add_argument(
        "--available-now",
        action="store_true",
        help="assign the records in the topic now, in micro-batches, and stop (for scheduled runs and tests)",
    )
    p.add_argument(
        "--kafka-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Kafka client setting for source and sink (e.g. security.protocol=SASL_SSL); may repeat",
    )
    p.add_argument("--master", help="Spark master URL (default: spark-submit's, else local[*])")
    p.add_argument(
        "--repositories",
        help=f"extra Maven repositories for Spark's packages, comma-separated (also {REPOSITORIES_ENV})",
    )
    return p


# ---------------------------------------------------------------------------------------------- records


def assign_records(
    records: pd.DataFrame, model: _Loaded, topics: tuple[str, str], features_field: str = "features"
) -> pd.DataFrame:
    """The output and dead-letter records of a batch of Kafka records.

    Parameters
    ----------
    records : pandas.DataFrame
        ``key, value, topic, partition, offset`` as Spark's Kafka source gives them.
    model : _Loaded
        The model, its centers and version.
    topics : (str, str)
        The output topic and the dead-letter topic.
    features_field : str
        The JSON field of the feature values.

    Returns
    -------
    pandas.DataFrame
        :data:`RECORDS_SCHEMA`: one record per input record, for one of ``topics``.
    """
    output_topic, dead_letter_topic = topics
    coordinates = zip(records["topic"], records["partition"], records["offset"], strict=True)
    sources = [f"{topic}/{partition}/{offset}" for topic, partition, offset in coordinates]
    out: list[tuple | None] = [None] * len(records)

    def reject(i: int, problem: str) -> None:
        value = records["value"].iloc[i]
        text = None if value is None else bytes(value[:MAX_DEAD_VALUE]).decode("utf-8", errors="replace")
        letter = {"reason": problem, "value": text, "source": sources[i], "model_version": model.version}
        if value is not None and len(value) > MAX_DEAD_VALUE:
            letter["value_bytes"] = len(value)  # the value is cut to its first MAX_DEAD_VALUE bytes
        out[i] = (dead_letter_topic, records["key"].iloc[i], json.dumps(letter, ensure_ascii=False).encode())

    good, ids, rows = [], [], []
    for i, value in enumerate(records["value"]):
        try:
            point, problem = parse_point(value, features_field, model.dimension, model.metric)
        except Exception as error:  # whatever a record does, the stream goes on and the record is kept
            point, problem = None, f"could not be read: {type(error).__name__}: {error}"
        if problem is None:
            good.append(i)
            ids.append(point[0])
            rows.append(point[1])
        else:
            reject(i, problem)
    if good:
        cluster, distance = nearest_exemplar(np.array(rows, dtype=float), model.centers, model.metric)
        for i, point_id, c, d in zip(good, ids, cluster, distance, strict=True):
            if not np.isfinite(d):  # features so large or so small that the arithmetic overflows
                reject(i, f"the distance to the nearest exemplar is {d}: {features_field} out of range")
                continue
            answer = {
                "id": point_id,
                "cluster": int(model.clusters[c]),
                "exemplar": model.exemplars[c],
                "distance": float(d),
                "model_version": model.version,
            }
            out[i] = (output_topic, str(point_id).encode(), json.dumps(answer, allow_nan=False).encode())
    return pd.DataFrame(
        {
            "topic": [o[0] for o in out],
            "key": [o[1] for o in out],
            "value": [o[2] for o in out],
            "source": sources,
        }
    )


def parse_point(
    value: Any, features_field: str, dimension: int, metric: str = "sqeuclidean"
) -> tuple[tuple[Any, list[float]] | None, str | None]:
    """``((id, features), None)`` for a good record's value, else ``(None, reason)``."""
    if value is None:
        return None, "no value (a null Kafka record)"
    try:
        point = json.loads(bytes(value).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        return None, f"not JSON: {error}"
    if not isinstance(point, dict):
        return None, f"not a JSON object but a {type(point).__name__}"
    point_id = point.get("id")
    if point_id is None:
        return None, "no id"
    if isinstance(point_id, bool) or not isinstance(point_id, (int, str)):
        return None, f"id must be a string or an integer, not {json.dumps(point_id)}"
    features = point.get(features_field)
    if features is None:
        return None, f"no {features_field}"
    if not isinstance(features, list) or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in features):
        return None, f"{features_field} must be a list of numbers, not {json.dumps(features)[:80]}"
    if len(features) != dimension:
        return None, f"{features_field} has {len(features)} values; the model's exemplars have {dimension}"
    bad = next((j for j, v in enumerate(features) if not math.isfinite(v)), None)
    if bad is not None:
        return None, f"{features_field}[{bad}] is {features[bad]}"
    if metric == "cosine" and not any(features):
        return None, f"{features_field} are all 0: the cosine with an exemplar is undefined"
    return (point_id, [float(v) for v in features]), None


# ---------------------------------------------------------------------------------------------- the model


class _Loaded:
    """A model as the micro-batches use it: plain arrays, so the Python workers get them by value."""

    def __init__(self, model: AffinityPropagationModel, version: str, folder: Path):
        self.version = version
        self.folder = folder
        self.metric = model.getMetric()
        self.centers = model.clusterCenters()
        self.dimension = len(self.centers[0])
        self.clusters = [int(c) for c in model.exemplars["cluster"]]
        self.exemplars = [_plain(e) for e in model.exemplars["exemplar"]]


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def resolve_model(path: str | Path) -> tuple[str, Path]:
    """``(version, model folder)`` of what ``path`` points at now.

    The version is the name of the run folder that holds the model (after
    following links), or of the model folder itself when it is not ``model``.
    """
    real = Path(os.path.realpath(path))
    if (real / "model" / "metadata").is_dir():
        return real.name, real / "model"
    if (real / "metadata").is_dir():
        return (real.parent.name if real.name == "model" else real.name), real
    raise InvalidInputError(
        f"--model {path} holds no model: expected a run folder with model/ (a feature run's), a model folder "
        "with metadata/ (AffinityPropagationModel.save), or a link to a run folder"
    )


class ModelSource:
    """The model each micro-batch uses: the newest, or the one a replayed batch used before.

    Which model folder a batch uses is written to ``<checkpoint>/models/<batch>``
    once the model has loaded and before the batch writes anything, so a batch
    run again after a failure assigns its records exactly as the first attempt
    did. A newest model that cannot be read (a link being replaced, a broken
    folder) leaves the previous one in use, with a warning.
    """

    def __init__(self, path: str, checkpoint: str):
        self.path = path
        self.pins = Path(checkpoint) / "models"
        self.current: _Loaded | None = None

    def for_batch(self, batch_id: int) -> _Loaded:
        """The model of micro-batch ``batch_id``: the one pinned to it, else the newest, pinned now."""
        pin = self.pins / str(batch_id)
        if pin.is_file():
            version, folder = json.loads(pin.read_text())
            if Path(folder).is_dir():
                return self.load(version, Path(folder))
            gone = "Batch %d ran with model %s, which is gone (%s); it runs again with the newest"
            log.warning(gone, batch_id, version, folder)
        try:
            model = self.load(*resolve_model(self.path))
        except Exception as error:
            if self.current is None:
                raise
            model = self.current
            log.warning(
                "The model at %s cannot be read (%s); batch %d keeps %s", self.path, error, batch_id, model.version
            )
        self.pins.mkdir(parents=True, exist_ok=True)
        staged = pin.with_suffix(".tmp")
        staged.write_text(json.dumps([model.version, str(model.folder)]))
        os.replace(staged, pin)
        for old in self.pins.iterdir():  # the pins of batches long committed
            if old.name.isdigit() and int(old.name) < batch_id - 100:
                old.unlink(missing_ok=True)
        return model

    def load(self, version: str, folder: Path) -> _Loaded:
        """The model in ``folder``; loaded once, and only the newest stays loaded."""
        if self.current is None or self.current.folder != folder:
            model = AffinityPropagationModel.load(str(folder))
            self.current = _Loaded(model, version, folder)
            log.info("Model %s: %d exemplars, %s, from %s", version, len(model.exemplars), model.getMetric(), folder)
        return self.current


# ---------------------------------------------------------------------------------------------- the job


def assign_batch(batch: DataFrame, model: _Loaded, topics: tuple[str, str], features_field: str) -> DataFrame:
    """The records a micro-batch writes: one per input record, with the topic it goes to."""

    def assign(parts):
        for records in parts:
            yield assign_records(records, model, topics, features_field)

    return batch.select("key", "value", "topic", "partition", "offset").mapInPandas(assign, RECORDS_SCHEMA)


def kafka_options(args: argparse.Namespace) -> dict[str, str]:
    """The Kafka clients' settings of source and sink: the brokers and every ``--kafka-option``."""
    kafka = {"kafka.bootstrap.servers": args.bootstrap_servers}
    for option in args.kafka_option:
        key, sep, value = option.partition("=")
        if not sep or not key:
            raise InvalidInputError(f"--kafka-option {option!r}: expected KEY=VALUE, e.g. security.protocol=SSL")
        kafka[f"kafka.{key}"] = value
    return kafka


def start(spark: SparkSession, args: argparse.Namespace, kafka: dict[str, str], models: ModelSource):
    """Start the stream; return the running :class:`~pyspark.sql.streaming.StreamingQuery`."""
    topics = (args.output_topic, args.dead_letter_topic)

    def write(batch: DataFrame, batch_id: int) -> None:
        model = models.for_batch(batch_id)
        header = F.struct(F.lit("source").alias("key"), F.col("source").cast("binary").alias("value"))
        records = assign_batch(batch, model, topics, args.features_field)
        records = records.select("topic", "key", "value", F.array(header).alias("headers"))
        records.write.format("kafka").options(**kafka).save()
        log.info("Batch %d assigned with model %s", batch_id, model.version)

    reader = spark.readStream.format("kafka").options(**kafka)
    reader = reader.option("subscribe", args.input_topic).option("startingOffsets", args.starting_offsets)
    if args.max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", str(args.max_offsets_per_trigger))
    try:
        points = reader.load()
    except AnalysisException as error:
        if "kafka" not in str(error).lower():
            raise
        raise SparkAPError(
            f"Spark has no Kafka source: give it the package {KAFKA_PACKAGE} (spark-submit --packages; "
            f"spark-ap stream adds it itself). Spark said: {str(error).splitlines()[0]}"
        ) from error
    # As a file URI: a bare path would go to the cluster's default file system, away from the model pins.
    checkpoint = Path(args.checkpoint_location).resolve().as_uri()
    writer = points.writeStream.foreachBatch(write).option("checkpointLocation", checkpoint)
    if args.available_now:
        writer = writer.trigger(availableNow=True)
    else:
        writer = writer.trigger(processingTime=f"{args.trigger_seconds} seconds")
    return writer.queryName("spark-ap-stream").start()


def run(spark: SparkSession, args: argparse.Namespace, kafka: dict[str, str]) -> None:
    """Start the stream and wait for it; start it once more after Spark's Kafka progress bug (below)."""
    models = ModelSource(args.model, args.checkpoint_location)
    models.load(*resolve_model(args.model))  # a model that does not load fails now, not at the first record
    for attempt in (1, 2):
        query = start(spark, args, kafka, models)
        log.info("Streaming %s -> %s (dead letters: %s)", args.input_topic, args.output_topic, args.dead_letter_topic)
        try:
            query.awaitTermination()
            return
        except StreamingQueryException as error:
            if attempt == 2 or not _progress_bug(error, Path(args.checkpoint_location)):
                raise
            # Spark's Kafka source 4.1.1 fails to report the progress of the first micro-batch after a
            # restart when that batch re-runs one the stopped job left unfinished (SPARK-55271). The
            # batch has run and is committed by then; a new start goes on after it.
            log.warning("Spark's Kafka source failed after re-running an unfinished batch (SPARK-55271); restarting")


def _progress_bug(error: Exception, checkpoint: Path) -> bool:
    """``error`` is SPARK-55271's, raised after the batch it reported on was committed."""
    text = f"{error} {getattr(error, '_stackTrace', '')}"
    if "KafkaMicroBatchStream" not in text or '"scala.Option.get()" is null' not in text:
        return False
    batches = [(checkpoint / d).iterdir() for d in ("offsets", "commits")]
    offsets, commits = ({int(p.name) for p in files if p.name.isdigit()} for files in batches)
    return bool(offsets) and max(offsets) in commits


def main(argv: list[str] | None = None) -> int:
    """Run the streaming job until it is stopped (or, with ``--available-now``, until the topic is read)."""
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)
    try:
        for flag, path in (("--model", args.model), ("--checkpoint-location", args.checkpoint_location)):
            if "://" in path and not path.startswith("file://"):
                # The latest link and the model pins are read and written as files by the driver.
                where = "a path of the driver's file system (a local disk or a mount), not a URL"
                raise InvalidInputError(f"{flag} {path}: must be {where}")
        args.model, args.checkpoint_location = (
            p.removeprefix("file://") for p in (args.model, args.checkpoint_location)
        )
        seconds, offsets = args.trigger_seconds, args.max_offsets_per_trigger
        if not 0 < seconds < float("inf"):  # nan too
            raise InvalidInputError(f"--trigger-seconds must be a positive number of seconds; got {seconds:g}")
        if offsets is not None and offsets < 1:
            raise InvalidInputError(f"--max-offsets-per-trigger must be at least 1; got {offsets}")
        resolve_model(args.model)
        kafka = kafka_options(args)
        # Micro-batches shuffle nothing, and Spark warns that AQE does not apply to streams.
        conf = {"spark.jars.packages": KAFKA_PACKAGE, "spark.sql.adaptive.enabled": "false"}
        spark = spark_session(master=args.master, repositories=args.repositories, **conf)
        run(spark, args, kafka)
    except SparkAPError as error:
        print(f"spark-ap stream: error: {error}", file=sys.stderr)
        return 2
    return 0
