"""The streaming job's command line and its query: Kafka in, assignments and dead letters out."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pyspark.errors import AnalysisException, StreamingQueryException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spark_ap.app.preflight import OneLineParser, check_output
from spark_ap.app.stream.models import ModelSource, resolve_model
from spark_ap.app.stream.records import RECORDS_SCHEMA, _Loaded, assign_records
from spark_ap.errors import InvalidInputError, SparkAPError
from spark_ap.files import files_for, is_uri, join
from spark_ap.paths import local_path
from spark_ap.session import KAFKA_PACKAGE, REPOSITORIES_ENV, spark_session

log = logging.getLogger("spark_ap.stream")
# The options that name something (brokers, topics, a JSON field): none may be blank.
TEXT_FLAGS = ("--bootstrap-servers", "--input-topic", "--output-topic", "--dead-letter-topic", "--features-field")


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(
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
    # A local path as a file URI: a bare path would go to the cluster's default file system, away from the
    # model pins.
    where = args.checkpoint_location
    checkpoint = where if is_uri(where) else Path(local_path(where)).resolve().as_uri()
    writer = points.writeStream.foreachBatch(write).option("checkpointLocation", checkpoint)
    if args.available_now:
        writer = writer.trigger(availableNow=True)
    else:
        writer = writer.trigger(processingTime=f"{args.trigger_seconds} seconds")
    return writer.queryName("spark-ap-stream").start()


def run(spark: SparkSession, args: argparse.Namespace, kafka: dict[str, str]) -> None:
    """Start the stream and wait for it; start it once more after Spark's Kafka progress bug (below)."""
    models = ModelSource(args.model, args.checkpoint_location)
    models.newest()  # a model that does not load fails now, not at the first record
    for attempt in (1, 2):
        query = start(spark, args, kafka, models)
        log.info("Streaming %s -> %s (dead letters: %s)", args.input_topic, args.output_topic, args.dead_letter_topic)
        try:
            query.awaitTermination()
            return
        except StreamingQueryException as error:
            if attempt == 2 or not _progress_bug(error, args.checkpoint_location):
                raise
            # Spark's Kafka source 4.1.1 fails to report the progress of the first micro-batch after a
            # restart when that batch re-runs one the stopped job left unfinished (SPARK-55271). The
            # batch has run and is committed by then; a new start goes on after it.
            log.warning("Spark's Kafka source failed after re-running an unfinished batch (SPARK-55271); restarting")


def _progress_bug(error: Exception, checkpoint: str) -> bool:
    """``error`` is SPARK-55271's, raised after the batch it reported on was committed."""
    text = f"{error} {getattr(error, '_stackTrace', '')}"
    if "KafkaMicroBatchStream" not in text or '"scala.Option.get()" is null' not in text:
        return False
    files = files_for(checkpoint)
    try:
        batches = [files.names(join(checkpoint, d)) for d in ("offsets", "commits")]
    except OSError:  # no commits/ (no batch committed yet), or not a folder: not the bug, and its own error says why
        return False
    offsets, commits = ({int(name) for name in names if name.isdigit()} for names in batches)
    return bool(offsets) and max(offsets) in commits


def stream_failure(error: StreamingQueryException) -> str:
    """The first line of what stopped the query: the Python error of a failed micro-batch, else Spark's cause."""
    text = str(error)
    if "Traceback (most recent call last)" in text:
        # A micro-batch's own error (foreachBatch): after the traceback's frames (indented), the line naming it.
        lines = text.split("Traceback (most recent call last)")[-1].splitlines()
        frames = [i for i, line in enumerate(lines) if line.startswith('  File "')]
        after = [line for line in lines[frames[-1] + 1 :] if line.strip() and not line[0].isspace()] if frames else []
        if after:
            return after[0][:500]
    causes = [line.split("Caused by: ", 1)[1] for line in text.splitlines() if line.startswith("Caused by: ")]
    first = text.split("terminated with exception: ", 1)[-1].strip().splitlines() or [type(error).__name__]
    return (causes[-1] if causes else first[0])[:500]


def main(argv: list[str] | None = None) -> int:
    """Run the streaming job until it is stopped (or, with ``--available-now``, until the topic is read)."""
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)
    try:
        for flag in (*TEXT_FLAGS, "--model", "--checkpoint-location"):
            if not getattr(args, flag[2:].replace("-", "_")).strip():
                # A blank topic or server reaches Kafka's client, which fails mid-start with a stack trace.
                raise InvalidInputError(f"{flag} is empty")
        check_output(args.checkpoint_location, "--checkpoint-location")
        seconds, offsets = args.trigger_seconds, args.max_offsets_per_trigger
        if not 0 < seconds < float("inf"):  # nan too
            raise InvalidInputError(f"--trigger-seconds must be a positive number of seconds; got {seconds:g}")
        if offsets is not None and offsets < 1:
            raise InvalidInputError(f"--max-offsets-per-trigger must be at least 1; got {offsets}")
        # A model and a checkpoint given as URIs are read through Spark: they are checked once it runs.
        remote = is_uri(args.model) or is_uri(args.checkpoint_location)
        if not remote:
            resolve_model(args.model)
        kafka = kafka_options(args)
        # Micro-batches shuffle nothing, and Spark warns that AQE does not apply to streams.
        conf = {"spark.jars.packages": KAFKA_PACKAGE, "spark.sql.adaptive.enabled": "false"}
        spark = spark_session(master=args.master, repositories=args.repositories, **conf)
        if remote:
            resolve_model(args.model)
        run(spark, args, kafka)
    except (SparkAPError, OSError) as error:  # OSError: a file system's refusal, one line naming the path
        print(f"spark-ap stream: error: {error}", file=sys.stderr)
        return 2
    except StreamingQueryException as error:  # Spark has logged the whole of it; this says what failed
        print(f"spark-ap stream: error: the stream stopped: {stream_failure(error)}", file=sys.stderr)
        return 1
    return 0
