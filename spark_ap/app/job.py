"""One whole run from the command line: read, build or validate the graph, cluster, write.

Installed as the ``spark-ap`` command; under ``spark-submit`` run
``scripts/spark_ap_job.py`` with the same options. ``spark-ap --help`` lists them.
"""

from __future__ import annotations

import argparse
import logging
import re
import shlex
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spark_ap.app.config import SECTIONS, read_config
from spark_ap.app.export import (
    damaged_files,
    export_run,
    output_status,
    read_json,
    redact,
    redact_text,
)
from spark_ap.app.folders import STATE, SUMMARY
from spark_ap.app.preflight import OneLineParser, check_edge_columns, check_input, check_output, input_format
from spark_ap.checksums import sha256_json
from spark_ap.errors import InvalidInputError, InvalidParamError, SparkAPError, reason
from spark_ap.estimators.affinity import OPERATIONAL_PARAMS, AffinityPropagation
from spark_ap.files import files_for, is_uri, join
from spark_ap.lock import FolderLock
from spark_ap.multilevel import MultiLevelAffinityPropagation
from spark_ap.params import INPUT_KINDS, SPECS, cli_preference, in_section
from spark_ap.prepare.validation import validate_edges, validate_features
from spark_ap.run.state import StateStore
from spark_ap.session import REPOSITORIES_ENV, job_script, spark_session, submit_arguments

log = logging.getLogger("spark_ap")


GROUPS = {
    "ap": "Affinity Propagation (the YAML file's ap section)",
    "features": "feature tables only, --kind features (the YAML file's features section)",
    "input": "input columns (the YAML file's input section)",
}


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="spark-ap",
        description="Affinity Propagation clustering on Spark: read a similarity graph or a feature table, "
        "cluster it, and write a run folder (assignments, exemplars, summary, history, plots). Options win over "
        "the --config file, which wins over the defaults shown.",
        epilog="spark-ap stream --help: the streaming job, which assigns points from Kafka with a fitted model.",
    )
    p.add_argument("--input", required=True, help="edge or feature table: a Parquet or CSV file or folder")
    p.add_argument(
        "--output",
        required=True,
        help="run folder to write; it must not exist yet, or hold an interrupted run of the same input and params, "
        "which is then resumed",
    )
    p.add_argument("--format", choices=("parquet", "csv"), help="input format (default: from the file suffix)")
    p.add_argument("--config", help="YAML settings file (see spark_ap/app/spark-ap.yaml); options given here win")
    p.add_argument("--kind", choices=INPUT_KINDS, help="the input holds edges or feature vectors (default edges)")
    groups = {section: p.add_argument_group(title) for section, title in GROUPS.items()}
    for section, group in groups.items():
        for spec in in_section(section):
            options = {"dest": spec.name, "help": f"{spec.doc} (default {spec.default})"}
            options["metavar"] = spec.flag[2:].upper()
            if spec.choices:
                options["choices"], options["metavar"] = spec.choices, None
            else:
                options["type"] = cli_preference if spec.name == "preference" else spec.type
            group.add_argument(spec.flag, **options)
    groups["ap"].add_argument(
        "--no-noise", dest="noise", action="store_const", const="none", help="the same as --noise none"
    )
    p.add_argument(
        "--state-dir",
        help="where the run saves its state every --checkpoint-interval iterations (default: OUTPUT/state; "
        "on a multi-machine cluster give storage every executor can write, e.g. hdfs://...)",
    )
    p.add_argument(
        "--restart",
        action="store_true",
        help="discard a saved state instead of resuming from it (needed when the input or params changed)",
    )
    p.add_argument(
        "--checkpoint-dir",
        help="Spark checkpoint directory; used for reliable checkpoints only when the state is not saved "
        "(--checkpoint-interval -1 turns the saves off)",
    )
    p.add_argument("--master", help="Spark master URL when not run by spark-submit (default local[*])")
    p.add_argument(
        "--repositories",
        help="extra Maven repositories (comma-separated URLs) to resolve the GraphFrames package from when the "
        f"job starts Spark itself, added to {REPOSITORIES_ENV} and spark.jars.repositories; under spark-submit "
        "give spark-submit --packages and --repositories instead",
    )
    p.add_argument(
        "--validate-only",
        action="store_true",
        help="check the input (columns, types, nulls, duplicates, ...) and the output folder, then stop",
    )
    p.add_argument(
        "--skip-existing",
        action="store_true",
        help="if the output folder already holds this finished run, stop without error (for retried tasks); "
        "one whose input changed since (its files' sizes and times) runs again, the old files kept aside",
    )
    p.add_argument(
        "--recompute",
        action="store_true",
        help="run the output folder's finished run again, with these params, even if nothing changed; the old "
        "files are kept in a .replaced-* folder beside the new ones (the DAG's recompute param)",
    )
    return p


def settings(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Built-in defaults, then the YAML file, then the command line."""
    merged: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    merged["input"] = {"kind": "edges", "metric": SPECS["metric"].default}
    if args.config:
        for section, values in read_config(args.config).items():
            merged[section].update(values)
    for section in GROUPS:
        for spec in in_section(section):
            if getattr(args, spec.name) is not None:
                merged[section][spec.name] = getattr(args, spec.name)
    if args.kind is not None:
        merged["input"]["kind"] = args.kind
    given = [spec.flag for spec in in_section("features") if getattr(args, spec.name) is not None]
    if given and merged["input"]["kind"] != "features":
        raise InvalidParamError(f"{', '.join(given)} apply to feature tables (--kind features), not to edges")
    if isinstance(args.preference, float) and 0 < args.preference < 1:
        log.warning(
            "--preference %s is the value %s; for the %s-quantile of the similarities give --preference quantile:%s",
            *[args.preference] * 4,
        )
    return merged


def edge_columns(conf: dict[str, dict[str, Any]]) -> dict[str, str]:
    """srcCol, dstCol, weightCol as configured for an edge input (a feature input makes src, dst, similarity)."""
    inp = conf["input"]
    if inp["kind"] == "features":
        return {}
    return {key: inp[key] for key in ("srcCol", "dstCol", "weightCol") if key in inp}


def estimator(conf: dict[str, dict[str, Any]], **extra: Any) -> AffinityPropagation | MultiLevelAffinityPropagation:
    """The estimator a run uses: AffinityPropagation on edges, MultiLevelAffinityPropagation on features.

    A feature run takes the ``ap`` params its estimator has (all but those
    about edge tables) and the ``features`` section.
    """
    inp, ap = conf["input"], conf["ap"]
    try:
        if inp["kind"] == "features":
            names = {param.name for param in MultiLevelAffinityPropagation().params}
            shared = {key: value for key, value in ap.items() if key in names}
            return MultiLevelAffinityPropagation(**shared, **conf["features"], metric=inp["metric"], **extra)
        return AffinityPropagation(**ap, **edge_columns(conf), **extra)
    except InvalidParamError as error:
        raise InvalidParamError(in_flags(str(error))) from error


def in_flags(message: str) -> str:
    """``message`` with the params' names as the command line spells them: ``maxIter`` -> ``--max-iter``."""
    names = "|".join(sorted(SPECS, key=len, reverse=True))
    return re.sub(rf"(?<![\w-])({names})(?![\w-])", lambda m: SPECS[m.group(1)].flag, message)


def run_params(conf: dict[str, dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    """What the summary records as the run's params: every estimator param, the input, its kind and metric."""
    params = estimator(conf).resultParams()
    inp = conf["input"]
    return {**params, "input": args.input, "kind": inp["kind"], "metric": inp["metric"]}


def check_paths(args: argparse.Namespace, params: dict[str, Any], spark: SparkSession | None = None) -> str:
    """Refuse a bad input, or an output folder that holds another run, before the run starts.

    Local paths are checked before Spark starts; an input or output given as a URI is read
    through ``spark`` (see :mod:`spark_ap.files`). Returns what the run does: ``"done"`` when
    ``--skip-existing`` is given and the output folder holds this very run, finished (same params,
    input and input files: :func:`input_fingerprint`), so there is nothing to do; ``"damaged"``
    when that run's files or summary are damaged, and ``"replaced"`` when its input changed since
    or ``--recompute`` is given: it runs again beside them, and they stay where they are, for
    readers of the folder (``latest``, the stream), until the rerun's files replace them
    (:func:`export_run`'s ``replace``); ``"run"`` otherwise.
    """
    check_input(args.input, params["kind"], args.format)
    check_output(args.output)
    if is_uri(args.input) and files_for(args.input, spark).kind(args.input) is None:
        raise InvalidInputError(f"The input {args.input} does not exist")
    if params["kind"] == "edges":
        check_edge_columns(args.input, args.format, [params["srcCol"], params["dstCol"], params["weightCol"]])
    files = files_for(args.output, spark)
    status = output_status(args.output, files)
    if status != "finished":
        return "run"
    if not (args.skip_existing or getattr(args, "recompute", False)):
        raise InvalidInputError(f"The output folder {args.output} already holds a finished run; choose a new one")
    aside = "they are then kept in a .{}-* folder beside them"
    try:
        summary = read_json(files, join(args.output, SUMMARY))
    except (OSError, ValueError) as error:
        problem = f"{join(args.output, SUMMARY)} cannot be read ({error})"
    else:
        if getattr(args, "recompute", False):
            log.warning("--recompute: the finished run in %s runs again (%s)", args.output, aside.format("replaced"))
            return "replaced"
        done = summary.get("params", {})
        if {k: v for k, v in done.items() if k not in OPERATIONAL_PARAMS} != redact(params):
            raise InvalidInputError(
                f"The output folder {args.output} already holds another run (other params or input); runs are "
                "never overwritten: to replace it, give --recompute (the DAG's recompute param), which keeps "
                "the old files in a .replaced-* folder beside the new ones"
            )
        problem = damaged_files(args.output, files)
        if problem is None:
            changed = input_change(summary.get("input_fingerprint"), input_fingerprint(args.input, spark))
            if changed is None:
                return "done"
            log.warning(
                "The input of the finished run in %s changed since it ran (%s): it runs again, and its files stay "
                "in place until the rerun's replace them (%s)",
                args.output,
                changed,
                aside.format("replaced"),
            )
            return "replaced"
    log.warning(
        "The finished run in %s is damaged: %s; it runs again, and its files stay in place until the "
        "rerun's replace them (%s)",
        args.output,
        problem,
        aside.format("damaged"),
    )
    return "damaged"


def input_fingerprint(path: str, spark: SparkSession | None = None) -> dict:
    """What the input ``path`` is, from the file system's listing alone (no pass over the data):
    its data files' count, bytes, and the SHA-256 of their names, sizes and modification times."""
    listing = files_for(path, spark).listing(path)
    return {
        "files": len(listing),
        "bytes": sum(size for size, _ in listing.values()),
        "sha256": sha256_json(listing),
    }


def input_change(then: dict | None, now: dict) -> str | None:
    """How the input's fingerprint ``now`` differs from ``then`` (a summary's); None when it does
    not, or when the summary has none (written by a spark-ap that did not record it)."""
    if not then or then == now:
        return None
    if (then.get("files"), then.get("bytes")) == (now["files"], now["bytes"]):
        return f"{now['files']} files of {now['bytes']} bytes then and now, written again since"
    return f"{then.get('files')} files of {then.get('bytes')} bytes then, {now['files']} of {now['bytes']} now"


def read_table(spark: SparkSession, path: str, fmt: str | None) -> DataFrame:
    """A Parquet or CSV table; CSV with a header row and inferred column types.

    A quote inside a quoted CSV field is doubled (``"say ""hi"" now"``), as RFC 4180, pandas,
    Python's csv module and spreadsheets write it; Spark's default escape is a backslash,
    which would keep those quotes in the value.
    """
    fmt = fmt or input_format(path)
    csv = spark.read.option("header", True).option("inferSchema", True).option("escape", '"')
    reader = csv if fmt == "csv" else spark.read
    # Hadoop reads {, }, [, ], * and ? in a path as a glob; an existing local
    # path means itself, so those characters are escaped.
    literal = re.sub(r"([\\{}\[\]*?])", r"\\\1", path) if "://" not in path and Path(path).exists() else path
    try:
        # Loading infers the schema, which reads the files: an unreadable input fails here.
        return reader.format(fmt).load(literal)
    except Exception as error:  # the JVM's reason, whatever its class, is in the message
        raise InvalidInputError(f"Could not read the input {path} as {fmt}: {reason(error)}") from error


def feature_table(table: DataFrame, id_col: str) -> tuple[DataFrame, list[str]]:
    """(id, features) from an id and numeric columns, or an id and one array/vector column."""
    if id_col not in table.columns:
        raise InvalidInputError(f"The feature table has no id column '{id_col}'; it has {table.columns}")
    others = [f for f in table.schema.fields if f.name != id_col]
    numeric = [f.name for f in others if isinstance(f.dataType, T.NumericType)]
    if len(others) == 1 and not numeric:
        return table.select(F.col(id_col).alias("id"), F.col(others[0].name).alias("features")), []
    if not numeric or len(numeric) != len(others):
        bad = [f"{f.name} ({f.dataType.simpleString()})" for f in others if f.name not in numeric]
        raise InvalidInputError(f"Feature columns must be numeric; not: {bad}")
    features = table.select(
        F.col(id_col).alias("id"), F.array(*[F.col(c).cast("double") for c in numeric]).alias("features")
    )
    return features, numeric


def session(args: argparse.Namespace, conf: dict[str, dict[str, Any]]) -> SparkSession:
    """The job's SparkSession: the ``spark`` settings, GraphFrames from the configured repositories."""
    return spark_session(
        master=args.master, repositories=args.repositories, **{k: str(v) for k, v in conf["spark"].items()}
    )


def main(argv: list[str] | None = None) -> int:
    """Run the job; bad input or params end it with exit code 2 and a one-line reason.

    ``spark-ap stream ...`` runs the streaming job instead (:mod:`spark_ap.app.stream`).
    """
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["stream"]:
        from spark_ap.app.stream import job as stream

        return stream.main(argv[1:])
    if argv[:1] == ["package"]:
        return package(argv[1:])
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # py4j says "Closing down clientserver connection" at exit, at INFO.
    logging.getLogger("py4j").setLevel(logging.WARNING)
    try:
        print(validate(args) if args.validate_only else run(args))
    # OSError: a file system's refusal (permission denied, a folder gone), already one line naming the path.
    except (SparkAPError, OSError) as error:
        print(f"spark-ap: error: {redact_text(str(error))}", file=sys.stderr)
        return 2
    return 0


def package(argv: list[str]) -> int:
    """``spark-ap package``: zip spark-ap's code for ``--py-files`` and print the spark-submit command
    that ships it, so that a cluster's executors need not have spark-ap installed."""
    p = OneLineParser(prog="spark-ap package", description=package.__doc__)
    p.add_argument("--to", default="dist", help="folder to write spark_ap-<version>.zip to (default dist)")
    p.add_argument("--jars", help="a folder holding GraphFrames' jars, shipped with --jars instead of --packages")
    args = p.parse_args(argv)
    try:
        options = submit_arguments(code=args.to, jars=args.jars)
    except SparkAPError as error:
        print(f"spark-ap: error: {error}", file=sys.stderr)
        return 2
    print(" ".join(["spark-submit", *map(shlex.quote, options), job_script(), "--input ... --output ..."]))
    return 0


def validate(args: argparse.Namespace) -> str:
    """Check the input and the output folder as a run would, without clustering; describe the input."""
    conf = settings(args)
    spark = session(args, conf) if _remote(args) else None
    check_paths(args, run_params(conf, args), spark)
    spark = spark or session(args, conf)
    table = read_table(spark, args.input, args.format)
    inp = conf["input"]
    if inp["kind"] == "features":
        features, _ = feature_table(table, inp.get("idCol", "id"))
        points = validate_features(features, "id", "features")
        return f"{args.input}: {points.count()} feature rows, valid"
    ap = estimator(conf)
    edges = validate_edges(table, ap.getSrcCol(), ap.getDstCol(), ap.getWeightCol(), ap.getDuplicates())
    n_edges = edges.count()
    n_vertices = edges.select(F.explode(F.array("src", "dst"))).distinct().count()
    return f"{args.input}: {n_edges} edges between {n_vertices} vertices, valid"


def _remote(args: argparse.Namespace) -> bool:
    """Whether the input or the output is a file system URI, read through Spark from the start."""
    return is_uri(args.input) or is_uri(args.output)


def default_state_dir(output: str) -> str:
    """The run's saves when no ``--state-dir`` is given: ``state/`` in the run folder, on its file system."""
    return join(output, STATE) if is_uri(output) else (Path(output).resolve() / STATE).as_uri()


def run(args: argparse.Namespace) -> str:
    """Read, build or validate the graph, cluster, and write the run folder; return its path.

    The output folder is locked for the whole run: a second job on it is refused (see :mod:`spark_ap.lock`).
    """
    conf = settings(args)
    params = run_params(conf, args)
    check_output(args.output)  # before the lock makes the folder
    # A URI's files are read through Spark's JVM: then the session starts before the checks.
    spark = session(args, conf) if _remote(args) else None
    with FolderLock(args.output, f"spark-ap --output {args.output}", spark):
        return _run(args, conf, params, spark)


def _run(
    args: argparse.Namespace, conf: dict[str, dict[str, Any]], params: dict[str, Any], spark: SparkSession | None
) -> str:
    does = check_paths(args, params, spark)
    if does == "done":
        log.info("%s already holds this run, finished; nothing to do", args.output)
        return args.output
    spark = spark or session(args, conf)
    if args.checkpoint_dir:
        spark.sparkContext.setCheckpointDir(args.checkpoint_dir)
    # A state dir of its own (the default, in the locked output folder) is this run's alone; one given
    # may be shared, so the run holds it from the --restart's clear to the end-of-run clear, and a
    # run on it never deletes saves another run is writing (the estimator's own lock is re-entrant).
    shared = args.state_dir or conf["ap"].pop("stateDir", None)
    state_dir = shared or default_state_dir(args.output)
    store = StateStore(spark, state_dir, identity={})
    hold = FolderLock(state_dir, f"spark-ap --state-dir {state_dir}", spark, reentrant=True)
    with hold if shared else nullcontext():
        if args.restart:
            store.clear()
        fingerprint = input_fingerprint(args.input, spark)  # before the data is read: a change after it reruns
        replace = does if does in ("damaged", "replaced") else None
        out, result = _cluster(args, conf, params, spark, state_dir, replace=replace, fingerprint=fingerprint)
        store.clear()  # the run is finished: its saves are no longer needed
    store.remove_if_empty()  # its lock file kept a given state dir until now
    log.info("wrote %s after %d iterations (converged=%s)", out, result.numIterations, result.converged)
    return out


def _cluster(
    args: argparse.Namespace,
    conf: dict[str, dict[str, Any]],
    params: dict[str, Any],
    spark: SparkSession,
    state_dir: str,
    replace: str | None = None,
    fingerprint: dict | None = None,
) -> tuple[str, Any]:
    """Read the input, cluster it with saves in ``state_dir``, and write the run folder: its path and the result."""
    inp = conf["input"]
    started = time.time()
    table = read_table(spark, args.input, args.format)
    points = None
    saving = int(conf["ap"].get("checkpointInterval", 10)) > 0
    ap = estimator(conf, stateDir=state_dir if saving else None)
    if inp["kind"] == "features":
        id_col = inp.get("idCol", "id")
        data, columns = feature_table(table, id_col)
        if len(columns) == 2:  # clusters.png draws a bounded sample of them
            points = table.select(F.col(id_col).alias("id"), *columns)
    else:
        data = table
    # A feature table's run is a fit: its model assigns new points (spark_ap.estimators.model).
    model = ap.fit(data) if inp["kind"] == "features" else None
    result = model.summary if model is not None else ap.run(data)
    timings = {"total": round(time.time() - started, 3)}
    out = export_run(
        result,
        args.output,
        params=params,
        points=points,
        timings=timings,
        model=model,
        replace=replace,
        input_fingerprint=fingerprint,
    )
    return out, result


if __name__ == "__main__":
    raise SystemExit(main())
