"""What the Airflow DAG's tasks do, kept here so the DAG file only wires them.

See ``dags/spark_ap_pipeline.py``. Airflow parses DAG files often, so what the
DAG file calls at parse time (:func:`submit_options`) imports no Spark, numpy
or pandas; the tasks import them when they run.
"""

from __future__ import annotations

import json
import logging
import os
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from datetime import time as dt_time
from pathlib import Path

from spark_ap.app.config import SUBMIT_SETTINGS, read_config
from spark_ap.app.folders import LATEST, SUMMARY
from spark_ap.app.preflight import check_input, check_output
from spark_ap.errors import FolderInUseError, InvalidInputError, InvalidParamError
from spark_ap.files import Files, basename, files_for, is_uri, join, parent
from spark_ap.params import SPECS
from spark_ap.session import graphframes_conf, logging_conf

log = logging.getLogger("spark_ap")


TEMPLATED = ("input", "output_root")
# What of a task's context the TEMPLATED params may use: the run's dates and Airflow's date
# functions (macros.ds_add, ...), and nothing that reaches connections, variables or the database.
DATE_CONTEXT = (
    "ds",
    "ds_nodash",
    "ts",
    "ts_nodash",
    "ts_nodash_with_tz",
    "logical_date",
    "data_interval_start",
    "data_interval_end",
    "prev_data_interval_start_success",
    "prev_data_interval_end_success",
    "run_id",
    "macros",
)

PRESETS = {"@once", "@continuous", "@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly"}


def run_date(context: dict) -> datetime:
    """The date a DAG run is for: the date its triggering asset event carries (:func:`event_date`),
    else its logical date, else ``run_after`` when it has none."""
    return event_date(context) or context.get("logical_date") or context["dag_run"].run_after


def folder_name(date: datetime) -> str:
    """The run folder's name for the run of ``date``: ``2026-12-01`` at midnight UTC, else
    ``2026-12-01T063000Z`` (with microseconds when it has them). No colons: Hadoop reads
    them as a URI's scheme. :func:`folder_date` reads it back."""
    utc = date.astimezone(timezone.utc)
    if utc.time() == dt_time(0):
        return utc.strftime("%Y-%m-%d")
    return utc.strftime("%Y-%m-%dT%H%M%S") + (f".{utc.microsecond:06d}" if utc.microsecond else "") + "Z"


def folder_date(name: str) -> datetime | None:
    """The date of a run folder named by :func:`folder_name`, or None for any other name."""
    for layout in ("%Y-%m-%d", "%Y-%m-%dT%H%M%SZ", "%Y-%m-%dT%H%M%S.%fZ"):
        try:
            return datetime.strptime(name, layout).replace(tzinfo=timezone.utc)
        except ValueError:
            continue
    return None


def run_folder(output_root: str, date: datetime) -> str:
    """``output_root/<date>``: one folder per data interval, whichever DAG run (a retry, a
    cleared task, a backfill) computes it; a URI for an ``output_root`` that is one."""
    return join(output_root, folder_name(date))


def event_date(context: dict) -> datetime | None:
    """The date an asset-triggered run is for: the ``logical_date`` (or ``date``) in the extra of
    the newest event that triggered it, as the upstream DAG published it; None for other runs, or
    an event without one."""
    events = [event for found in (context.get("triggering_asset_events") or {}).values() for event in found]
    for event in reversed(events):
        extra = getattr(event, "extra", None) or {}
        value = extra.get("logical_date") or extra.get("date")
        if value:
            try:
                when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
            except ValueError:
                raise InvalidInputError(f"the triggering asset event's date {value!r} is not an ISO date") from None
            return when if when.tzinfo else when.replace(tzinfo=timezone.utc)
    return None


def event_input(context: dict) -> str | None:
    """The input an asset-triggered run reads: the ``uri`` (or ``path``) in the extra of the newest
    event that triggered it; None for other runs, or an event without one."""
    events = [event for found in (context.get("triggering_asset_events") or {}).values() for event in found]
    for event in reversed(events):
        extra = getattr(event, "extra", None) or {}
        value = extra.get("uri") or extra.get("path")
        if value:
            return str(value)
    return None


def render_dates(params: dict, context: dict) -> dict:
    """``params`` with ``input`` and ``output_root`` rendered by the DAG's own Jinja
    environment (Airflow's sandbox) against the run's dates, e.g.
    ``/data/similarities/dt={{ ds }}/``. A run without a logical date renders the date
    macros of its ``run_after``. Only the dates of the context (:data:`DATE_CONTEXT`) are
    there: not Airflow's ``conn`` or ``var``, which would let anyone who may trigger the DAG
    read a password back from a folder name. The other params are data and are never rendered."""
    env = context["dag"].get_template_env()
    date = run_date(context)
    # Airflow's date macros; a run without a logical date (Airflow 3's manual and
    # asset-triggered runs) has none in its context, and its run_after stands in.
    macros = {
        "ds": date.strftime("%Y-%m-%d"),
        "ds_nodash": date.strftime("%Y%m%d"),
        "ts": date.isoformat(),
        "ts_nodash": date.strftime("%Y%m%dT%H%M%S"),
        "logical_date": date,
        "data_interval_start": date,
        "data_interval_end": date,
    }
    if event_date(context) is None:  # an event's date stands for the run's own dates
        macros.update({key: context[key] for key in DATE_CONTEXT if context.get(key) is not None})
    elif context.get("macros") is not None:
        macros["macros"] = context["macros"]
    rendered = dict(params)
    if event_input(context) is not None:  # the event names the data: no template to render
        rendered["input"] = event_input(context)
    for name in TEMPLATED:
        if name == "input" and event_input(context) is not None:
            continue
        try:
            rendered[name] = env.from_string(params[name]).render(**macros)
        except Exception as error:  # jinja2's errors, whatever their class, say what is wrong
            raise InvalidInputError(f"{name}: the template {params[name]!r} does not render: {error}") from error
        if not rendered[name].strip():
            raise InvalidInputError(f"{name}: the template {params[name]!r} renders to an empty path")
    return rendered


def ingest(params: dict, context: dict, config: list[str] = ()) -> dict:
    """The DAG's ingest task: render the run's dated paths, check the input and the run folder,
    and give the job's arguments (:func:`job_arguments`, after ``config``'s); a bad one fails
    here, before Spark."""
    dated = render_dates(params, context)
    check_input(dated["input"], dated["kind"])
    job = job_arguments(dated, run_date(context), config)
    check_output(job["output"])
    run_type = str(getattr(context["dag_run"], "run_type", "manual"))
    return {**job, "publish": publishes(run_type, bool(params.get("publish"))), "started": time.time()}


# The runs whose results are the production results: they move latest and send the asset event.
PUBLISHING_RUNS = ("scheduled", "backfill", "asset_triggered")


def publishes(run_type: str, asked: bool) -> bool:
    """Whether a run of ``run_type`` publishes: a scheduled, backfill or asset-triggered run always;
    any other (a manual run from the form or the API) only when its ``publish`` param is on, so an
    experiment with other params moves neither ``latest`` nor what downstream DAGs consume."""
    return run_type.lower().rsplit(".", 1)[-1] in PUBLISHING_RUNS or asked


def why_not_publish(job: dict, summary: dict) -> str | None:
    """Why the run of ``job`` (:func:`ingest`'s) does not publish the run folder of ``summary``
    (:func:`read_summary`'s); None when it does. A run that found its date finished before it
    started (a rerun, a cleared task) changed nothing and sends no second event for it."""
    if not job["publish"]:
        return "a manual run publishes only with its publish param on: latest and the results asset stay as they are"
    if summary["written_at"] < job["started"]:
        return f"{job['output']} was finished before this run started and is unchanged: no new results event"
    return None


def job_arguments(params: dict, date: datetime, config: list[str] = ()) -> dict:
    """The spark-ap job's command lines for the run of ``date`` (validate, cluster), the run
    folder it writes and the date, as ISO text. ``config`` (:func:`config_argument`) comes
    first: the DAG's params, given as options, win over the settings file.

    Raises
    ------
    InvalidParamError
        A param its spec refuses, named as the DAG spells it: the Params' JSON schema lets
        NaN through its bounds.
    """
    output = run_folder(params["output_root"], date)
    args = [*config, "--input", params["input"], "--output", str(output), "--kind", params["kind"]]
    for spec in SPECS.values():
        if spec.dag and (spec.section != "features" or params["kind"] == "features"):
            value = params[spec.snake]
            try:
                spec.check(value)
            except InvalidParamError as error:
                raise InvalidParamError(f"DAG param {spec.snake}: {error}") from None
            # JSON's 50.0 is the schema's integer 50, which the job's int option takes written as 50.
            value = int(value) if spec.type is int else value
            args += [spec.flag, str(value)]
    # A retried task finds the folder of a finished attempt and stops there (unless its input
    # changed since, or the run asks to recompute), or the state an interrupted attempt saved and
    # resumes from it.
    args.append("--skip-existing")
    if params.get("recompute"):
        args.append("--recompute")
    return {
        "args": args,
        "validate_args": [*args, "--validate-only"],
        "output": str(output),
        "date": date.isoformat(),
    }


def dag_settings(config: str | Path, root: Path) -> dict:
    """The DAG's schedule, catchup, and the defaults of its ``input``, ``kind`` and
    ``output_root`` params.

    From the settings file's ``airflow`` section, where relative paths are relative to
    ``root`` (the spark-ap checkout); the environment variable ``SPARK_AP_SCHEDULE``, read
    when Airflow parses the DAG file, wins over ``airflow.schedule``. A schedule is a cron
    expression, a preset such as ``@daily``, ``asset:<name>`` (run when the asset of that
    name gets an event, e.g. new similarities published upstream), or empty for none.
    """
    airflow = read_config(config).get("airflow", {}) if Path(config).is_file() else {}
    schedule = os.environ.get("SPARK_AP_SCHEDULE") or airflow.get("schedule") or None
    catchup = airflow.get("catchup", False)  # read_config checked the types

    def path(value: str) -> str:
        return value if "://" in value or Path(value).is_absolute() else str(root / value)

    return {
        "schedule": timetable(parse_schedule(schedule), airflow.get("intervals", "data")),
        "catchup": catchup,
        "input": path(str(airflow.get("input", "examples/blobs_400.csv"))),
        "kind": airflow.get("kind", "features"),
        "output_root": path(str(airflow.get("output_root", "output/runs"))),
    }


# The cron expression of each preset that repeats (@once and @continuous do not).
CRON_PRESETS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@quarterly": "0 0 1 */3 *",
    "@yearly": "0 0 1 1 *",
}


def timetable(schedule, intervals: str = "data"):
    """The DAG's timetable for a cron ``schedule`` (a preset or an expression), built here whatever
    the site's ``[scheduler] create_cron_data_intervals`` says: with ``intervals="data"`` a run
    covers the interval that has just ended (``CronDataIntervalTimetable``: the midnight run of
    2026-12-02 is dated 2026-12-01, ``{{ ds }}``, and reads that day's partition, now complete);
    with ``"trigger"`` a run is at its time and dated by it (``CronTriggerTimetable``). Any other
    schedule (None, an asset, @once) is returned as it is."""
    if not isinstance(schedule, str) or schedule in ("@once", "@continuous"):
        return schedule
    from airflow.sdk import CronDataIntervalTimetable, CronTriggerTimetable

    cron = CRON_PRESETS.get(schedule, schedule)
    if intervals == "trigger":
        return CronTriggerTimetable(cron, timezone="UTC")
    return CronDataIntervalTimetable(cron, timezone="UTC")


def parse_schedule(text: str | None):
    """None, a cron expression or preset as Airflow takes it, or the Asset of ``asset:<name>``."""
    if text is None:
        return None
    text = str(text).strip()
    if text.startswith("asset:"):
        from airflow.sdk import Asset

        return Asset(text.removeprefix("asset:").strip())
    if text in PRESETS or (not text.startswith("@") and len(text.split()) in (5, 6)):
        return text
    raise InvalidParamError(
        f"SPARK_AP_SCHEDULE / airflow.schedule: {text!r} is not a cron expression (5 fields), "
        f"a preset ({', '.join(sorted(PRESETS))}) or asset:<name>"
    )


def submit_options(config: str | Path, root: Path | None = None) -> dict:
    """The DAG's SparkSubmitOperator arguments, from the settings file ``config``.

    The application is the job's file in the installed package (:func:`spark_ap.session.job_script`).
    The ``airflow`` section's ``conn_id`` (default ``spark_default``), ``deploy_mode``, memories,
    cores, executors, ``archives`` and ``env_vars`` are the operator's; ``ship_code`` names a
    folder (relative to ``root``) where spark-ap's code is zipped for ``--py-files`` (executors
    without spark-ap installed), before the section's ``py_files``. The ``spark`` section is the
    job's ``--conf``; GraphFrames comes from ``--packages`` and ``--repositories`` (with those of
    ``SPARK_AP_REPOSITORIES``), or from the section's ``spark.jars`` when it lists GraphFrames'
    jars. In cluster deploy mode the settings file itself goes with the job (``--files``), for
    its ``--config``. Spark's log is kept to spark-ap's lines and Spark's warnings, except in
    cluster deploy mode: the logging file is a path on this machine, not on the driver's.
    """
    from spark_ap.session import job_script, package_zip

    settings = read_config(config) if Path(config).is_file() else {}
    airflow = settings.get("airflow", {})
    spark = {key: str(value) for key, value in settings.get("spark", {}).items()}
    packages = graphframes_conf(spark)
    py_files = [item.strip() for item in str(airflow.get("py_files", "")).split(",") if item.strip()]
    if airflow.get("ship_code"):
        folder = Path(airflow["ship_code"])
        py_files.insert(0, str(package_zip(folder if folder.is_absolute() or root is None else root / folder)))
    resolved = {"spark.jars.packages", "spark.jars.repositories", "spark.jars"}
    on_cluster = airflow.get("deploy_mode") == "cluster"
    options = {
        "conn_id": "spark_default",
        **{key: airflow[key] for key in SUBMIT_SETTINGS if airflow.get(key) is not None},
        "application": job_script(),
        "packages": packages.get("spark.jars.packages"),
        "repositories": packages.get("spark.jars.repositories") if "spark.jars.packages" in packages else None,
        "jars": spark.get("spark.jars"),
        "py_files": ",".join(py_files),
        "files": str(config) if on_cluster and Path(config).is_file() else None,
        "conf": {
            "spark.ui.showConsoleProgress": "false",
            **{key: value for key, value in spark.items() if key not in resolved},
            **({} if on_cluster else logging_conf(spark)),
        },
    }
    return {key: value for key, value in options.items() if value}


def config_argument(config: str | Path, options: dict) -> list[str]:
    """``--config`` for the job: the settings file's path, or its name where ``--files`` ships it
    to a driver on the cluster (``options`` are :func:`submit_options`'); none without a file."""
    if not Path(config).is_file():
        return []
    return ["--config", Path(config).name if options.get("files") else str(config)]


# The settings of a spark section that reach a file system: its Hadoop settings (endpoints,
# credentials) and the jars that serve its scheme (hadoop-aws, ...).
STORAGE_SETTINGS = ("spark.hadoop.", "spark.jars")


def storage_conf(config: str | Path) -> dict[str, str]:
    """The settings file's Spark settings that :func:`files_of` needs to reach a cluster's file system."""
    spark = read_config(config).get("spark", {}) if Path(config).is_file() else {}
    return {key: str(value) for key, value in spark.items() if key.startswith(STORAGE_SETTINGS)}


def files_of(path: str, conf: dict[str, str] | None = None) -> Files:
    """The files of ``path`` for a DAG task (:func:`spark_ap.files.files_for`): a URI is read through a
    SparkSession of the task's own process, one local JVM started here when none runs, with ``conf``
    (:func:`storage_conf`); a local path needs none."""
    if is_uri(path):
        from pyspark.sql import SparkSession

        if SparkSession.getActiveSession() is None:
            builder = SparkSession.builder.master("local[1]").appName("spark-ap report")
            for key, value in {"spark.ui.enabled": "false", **(conf or {})}.items():
                builder = builder.config(key, value)
            builder.getOrCreate()
    return files_for(path)


def read_summary(output: str, conf: dict[str, str] | None = None) -> dict:
    """The run's summary.json, with the paths of its files; ``output`` may be a URI (read through Hadoop's
    FileSystem API, :func:`files_of` with the Spark settings ``conf``)."""
    files = files_of(output, conf)
    summary = json.loads(files.read(join(output, SUMMARY)))
    log.info(
        "spark-ap run %s: %d clusters, %d iterations, converged=%s",
        output,
        summary["clusters"],
        summary["iterations"],
        summary["converged"],
    )
    names = files.names(output)
    model = {"model": join(output, "model")} if "model" in names else {}
    written = files.modified(join(output, SUMMARY))
    listed = [join(output, name) for name in names]
    return {**summary, "folder": output, **model, "files": listed, "written_at": written}


def asset_extra(summary: dict, date: str) -> dict:
    """What the results asset's event carries: the run's date (ISO), its folder, its model if
    any, and the summary's headline numbers."""
    keys = ("folder", "model", "clusters", "iterations", "converged", "points", "net_similarity")
    return {"logical_date": date, **{key: summary[key] for key in keys if key in summary}}


def publish_latest(folder: str | os.PathLike, conf: dict[str, str] | None = None) -> str:
    """Point ``<output_root>/latest.json`` (and, on a local disk, the ``latest`` link beside it) at the
    finished run ``folder`` unless it points at a newer date, and return the pointer.

    ``latest.json`` names the run folder (``folder``, its name; ``uri``) and its ``date``; it is
    written whole in one step on any file system (:mod:`spark_ap.files`), so a reader sees the
    previous run or this one. On a local disk the ``latest`` link is replaced in one rename too, for
    people and tools that follow links; the pointer returned is then the link, else ``latest.json``.

    Run folders named by :func:`folder_name` are ordered by their dates: a backfill of last month, or
    an older run that finishes after a newer one, leaves ``latest`` where it is. Any other name (a
    folder of the user's) is newer than everything before it. Two runs finishing together take
    turns through ``<output_root>/.latest.lock``, created exclusively. A URI is read with the Spark
    settings ``conf`` (:func:`files_of`).
    """
    folder = str(folder).rstrip("/")
    files = files_of(folder, conf)
    if files.kind(join(folder, SUMMARY)) != "file":
        raise InvalidInputError(f"{folder} holds no finished run (no {SUMMARY}); latest is left as it is")
    root, name = parent(folder), basename(folder)
    pointer = join(root, LATEST) if is_uri(root) else join(root, "latest")
    with _turn(files, join(root, ".latest.lock")):
        current = latest_folder(root, files)
        date, newest = folder_date(name), folder_date(current or "")
        if newest is not None and date is not None and newest > date:
            log.info("latest stays on %s, newer than %s", current, name)
            return pointer
        record = {"folder": name, "uri": folder, "date": date.isoformat() if date else None}
        files.write(join(root, LATEST), (json.dumps(record) + "\n").encode())
        if not is_uri(root):
            link, staged = Path(pointer), Path(root) / f".latest-{os.getpid()}-{name}"
            staged.unlink(missing_ok=True)
            os.symlink(name, staged)
            os.replace(staged, link)
    return pointer


def latest_folder(root: str, files: Files | None = None) -> str | None:
    """The name of the run folder ``<root>/latest.json`` points at (or, written by an older spark-ap,
    the ``latest`` link), or None when there is none."""
    files = files or files_for(root)
    try:
        return json.loads(files.read(join(root, LATEST)))["folder"]
    except FileNotFoundError:
        link = None if is_uri(root) else Path(root) / "latest"
        return os.readlink(link) if link is not None and link.is_symlink() else None


# A lock on latest.json older than this is a dead run's: it is held for a read and a write.
_TURN_STALE = 30.0


@contextmanager
def _turn(files: Files, lock: str, wait: float = 120.0):
    """Hold the file ``lock`` (created exclusively) for the ``with`` block, waiting for another holder."""
    deadline = time.monotonic() + wait
    while True:
        try:
            files.write(lock, str(os.getpid()).encode(), exclusive=True)
            break
        except FileExistsError:
            try:
                if time.time() - files.modified(lock) > _TURN_STALE:
                    files.delete(lock)  # its holder died between its read and its write
                    continue
            except FileNotFoundError:
                continue
            if time.monotonic() > deadline:
                raise FolderInUseError(f"{lock} has been held for over {wait:.0f} s; latest is left as it is") from None
            time.sleep(0.1)
    try:
        yield
    finally:
        files.delete(lock)
