"""A SparkSession with settings that suit the engine, and the GraphFrames package on its classpath.

GraphFrames is a JVM package as well as a Python one. Spark resolves it from
Maven coordinates (``spark.jars.packages``) through Maven Central and any extra
repositories (``spark.jars.repositories``): on a cluster without internet
access, an internal Maven mirror given in ``SPARK_AP_REPOSITORIES``. A cluster
that ships its own jars passes them with ``spark.jars`` instead, and then no
package is resolved.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from spark_ap.errors import GraphFramesUnavailableError, reason

if TYPE_CHECKING:  # Spark is imported where a session is made: the DAG file reads this module's settings
    from pyspark.sql import SparkSession


# The JVM side of GraphFrames 0.11.0, one build per Spark line's Scala: Spark 4.x is
# Scala 2.13, Spark 3.5 Scala 2.12. Each brings its graphframes-graphx artifact along.
GRAPHFRAMES_VERSION = "0.11.0"


def graphframes_package(spark_version: str) -> str:
    """The GraphFrames artifact built for Spark ``spark_version`` ("4.1.4", "3.5.9")."""
    major = int(spark_version.split(".")[0])
    build = "spark4_2.13" if major >= 4 else "spark3_2.12"
    return f"io.graphframes:graphframes-{build}:{GRAPHFRAMES_VERSION}"


def _installed_spark() -> str:
    from importlib.metadata import version  # pyspark's own version, without importing Spark

    return version("pyspark")


# The artifact for the installed pyspark: what spark_session() and submit_arguments() resolve.
GRAPHFRAMES_PACKAGE = graphframes_package(_installed_spark())
# Spark's Kafka source and sink, for the streaming job (spark_ap.app.stream). 4.1.1 is the
# newest 4.1 release Maven serves here; a 4.1 connector runs on any Spark 4.1.x.
KAFKA_PACKAGE = "org.apache.spark:spark-sql-kafka-0-10_2.13:4.1.1"
# Comma-separated URLs of extra Maven repositories, as spark.jars.repositories takes them.
REPOSITORIES_ENV = "SPARK_AP_REPOSITORIES"
# Where Spark's resolver looks when told nothing else (besides the local caches).
DEFAULT_REPOSITORIES = ("Maven Central (https://repo1.maven.org/maven2)", "https://repos.spark-packages.org")

DEFAULTS = {
    "spark.app.name": "spark-ap",
    # Per-iteration progress comes from our log lines and job descriptions;
    # Spark's console progress bar would interleave with them.
    "spark.ui.showConsoleProgress": "false",
    # Let the cleaner delete checkpoint files of states that are no longer referenced.
    "spark.cleaner.referenceTracking.cleanCheckpoints": "true",
    # A graphframes run uses about 110 classes of generated code, more than Spark's cache of
    # 100 keeps: every run in a session compiled them all again (about 0.5 s of a 5 s run on
    # a small graph). Set when the session starts; the classes it keeps cost little (the same
    # metaspace after six runs of the three engines).
    "spark.sql.codegen.cache.maxEntries": "1000",
}


# Spark's logging for spark-ap runs: warnings and errors (see the file).
LOG4J2_FILE = Path(__file__).resolve().parent / "log4j2.properties"


def logging_conf(conf: dict[str, str] | None = None) -> dict[str, str]:
    """The driver option that points Spark's logging at :data:`LOG4J2_FILE`, merged with ``conf``'s.

    Empty when the caller configures Spark's logging already: a
    ``log4j2.configurationFile`` among ``spark.driver.extraJavaOptions``, or a
    ``log4j2.properties`` in ``SPARK_CONF_DIR``. Spark's log level can be
    raised again with the setting ``spark.log.level`` (e.g. ``INFO``).
    """
    conf = conf or {}
    options = conf.get("spark.driver.extraJavaOptions", "")
    conf_dir = os.environ.get("SPARK_CONF_DIR")
    if "log4j2.configurationFile" in options or (conf_dir and (Path(conf_dir) / "log4j2.properties").is_file()):
        return {}
    option = f"-Dlog4j2.configurationFile={LOG4J2_FILE.as_uri()}"
    return {"spark.driver.extraJavaOptions": f"{options} {option}".strip()}


def _split(value: str | None) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


def _merge(*lists: Iterable[str]) -> str:
    """Comma-separated, in order, each item once."""
    return ",".join(dict.fromkeys(item for items in lists for item in items))


def graphframes_conf(conf: dict[str, str] | None = None, repositories: str | None = None) -> dict[str, str]:
    """The settings that put GraphFrames on a new session's classpath, merged with ``conf``'s.

    Parameters
    ----------
    conf : dict, optional
        Spark settings the caller gives. Packages in ``spark.jars.packages`` are
        kept; a graphframes jar in ``spark.jars`` means no package is added.
    repositories : str, optional
        Extra Maven repositories (comma-separated URLs), added to those of
        ``conf`` and of the ``SPARK_AP_REPOSITORIES`` environment variable.

    Returns
    -------
    dict
        ``spark.jars.packages`` and, when there are any, ``spark.jars.repositories``.
    """
    conf = conf or {}
    packages = _split(conf.get("spark.jars.packages"))
    if not any(p.startswith("io.graphframes:") for p in packages) and not any(
        "graphframes" in jar.rsplit("/", 1)[-1] for jar in _split(conf.get("spark.jars"))
    ):
        packages.append(GRAPHFRAMES_PACKAGE)
    out = {"spark.jars.packages": _merge(packages)} if packages else {}
    repos = _merge(
        _split(conf.get("spark.jars.repositories")), _split(repositories), _split(os.environ.get(REPOSITORIES_ENV))
    )
    if repos:
        out["spark.jars.repositories"] = repos
    return out


def submit_arguments(
    conf: dict[str, str] | None = None,
    repositories: str | None = None,
    *,
    code: str | os.PathLike | None = None,
    jars: str | os.PathLike | None = None,
) -> list[str]:
    """``spark-submit`` options that give a job spark-ap's code and GraphFrames.

    Parameters
    ----------
    conf, repositories
        As :func:`graphframes_conf`: ``--packages`` and ``--repositories``, which Spark resolves
        from Maven as the job starts.
    code : path, optional
        A folder: spark-ap's code is zipped into it (:func:`package_zip`) and shipped with
        ``--py-files``, so the executors need not have spark-ap installed (their Python needs
        numpy, pandas and pyarrow, as pyspark's own pandas functions do).
    jars : path, optional
        A folder holding GraphFrames' two jars (``graphframes-spark4_2.13`` and
        ``graphframes-graphx-spark4_2.13``): shipped with ``--jars`` instead of resolving
        the package, for a cluster without access to a Maven repository.
    """
    args = []
    if jars is not None:
        found = sorted(str(p) for p in Path(jars).glob("*graphframes*.jar"))
        if not found:
            raise GraphFramesUnavailableError(f"{jars} holds no graphframes jars (graphframes-*.jar)")
        conf = {**(conf or {}), "spark.jars": _merge(_split((conf or {}).get("spark.jars")), found)}
        args += ["--jars", conf["spark.jars"]]
    settings = graphframes_conf(conf, repositories)
    if "spark.jars.packages" in settings:
        args += ["--packages", settings["spark.jars.packages"]]
    if "spark.jars.repositories" in settings and "spark.jars.packages" in settings:
        args += ["--repositories", settings["spark.jars.repositories"]]
    if code is not None:
        args += ["--py-files", str(package_zip(code))]
    return args


def job_script() -> str:
    """The spark-submit application file of the spark-ap job, in the installed package."""
    return str(Path(__file__).resolve().parent / "app" / "entry.py")


def package_zip(folder: str | os.PathLike) -> Path:
    """Zip spark-ap's code (the installed ``spark_ap`` package, its data files too) into
    ``folder/spark_ap-<version>.zip`` for ``--py-files``, and return its path.

    The zip is the same bytes for the same code (sorted entries, fixed times), so a rebuild that
    changed nothing leaves the file as it was and a cluster's cache of it stays valid.
    """
    import zipfile

    from spark_ap import __version__

    package = Path(__file__).resolve().parent
    target = Path(folder) / f"spark_ap-{__version__}.zip"
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = target.with_name(f".{target.name}.{os.getpid()}")
    with zipfile.ZipFile(staged, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(package.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                entry = zipfile.ZipInfo(str(path.relative_to(package.parent)), date_time=(1980, 1, 1, 0, 0, 0))
                entry.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(entry, path.read_bytes())
    if target.exists() and target.read_bytes() == staged.read_bytes():
        staged.unlink()
    else:
        os.replace(staged, target)
    return target


def unavailable_message(settings: dict[str, str], problem: str, remedy: str = "") -> str:
    """``problem``, the packages and repositories Spark was given, and how to point it at GraphFrames."""
    tried = [*DEFAULT_REPOSITORIES, *_split(settings.get("spark.jars.repositories"))]
    if settings.get("spark.jars.ivySettings"):
        tried = [f"those of the Ivy settings file {settings['spark.jars.ivySettings']}"]
    return (
        f"{problem} Packages: {settings.get('spark.jars.packages') or 'none'}. "
        f"Repositories: {', '.join(tried)}, and the local Maven and Ivy caches. {remedy}"
        f"Set {REPOSITORIES_ENV} to a Maven repository that holds {GRAPHFRAMES_PACKAGE} (comma-separated URLs, "
        "e.g. an internal mirror https://maven.example.com/releases, or file:///opt/maven), or give the "
        "graphframes-spark4_2.13 and graphframes-graphx-spark4_2.13 jars with spark.jars (spark-submit --jars)."
    )


def spark_session(master: str | None = None, *, repositories: str | None = None, **conf: str) -> SparkSession:
    """Return the active SparkSession, or build one with GraphFrames on its classpath.

    Parameters
    ----------
    master : str, optional
        Spark master URL. By default the one ``spark-submit`` or the
        environment gives, else ``local[*]``.
    repositories : str, optional
        Extra Maven repositories to resolve GraphFrames from, comma-separated
        (see :func:`graphframes_conf`); ``SPARK_AP_REPOSITORIES`` adds more.
    **conf : str
        Spark settings, e.g. ``spark_session(**{"spark.sql.shuffle.partitions": "8"})``;
        they win over :data:`DEFAULTS`. Ignored when a session is already active,
        since most settings cannot change on a running context. Unless given here,
        by spark-submit or by ``spark-defaults.conf``, ``spark.sql.shuffle.partitions``
        is two per core of the application rather than Spark's 200. Spark logs
        warnings and errors only (:func:`logging_conf`); ``"spark.log.level": "INFO"``
        brings its INFO lines back.

    Raises
    ------
    GraphFramesUnavailableError
        Spark could not resolve the GraphFrames package.

    Notes
    -----
    Spark's Python workers must run the same interpreter as the driver, so
    ``PYSPARK_PYTHON`` is set to it unless the environment already says.
    Under ``spark-submit`` the JVM is already running and the packages must be
    given to ``spark-submit`` itself (:func:`submit_arguments`).
    """
    from pyspark.errors import PySparkRuntimeError
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    settings = {**DEFAULTS, **conf}
    settings.update(graphframes_conf(settings, repositories))
    settings.update(logging_conf(settings))
    builder = SparkSession.builder
    if master is not None:
        builder = builder.master(master)
    for key, value in settings.items():
        builder = builder.config(key, value)
    try:
        session = builder.getOrCreate()
    except PySparkRuntimeError as error:
        # The JVM exits before it starts when spark-submit cannot resolve a package.
        # getCondition is Spark 4.0's name for getErrorClass (Spark 3.5).
        condition = error.getCondition() if hasattr(error, "getCondition") else error.getErrorClass()
        if condition != "JAVA_GATEWAY_EXITED":
            raise
        raise GraphFramesUnavailableError(
            unavailable_message(
                settings,
                "Spark did not start: it could not resolve the packages it was given (its resolver's "
                "report is printed above).",
            )
        ) from error
    from spark_ap.compat import is_connect

    if not is_connect(session) and not session.sparkContext.getConf().contains("spark.sql.shuffle.partitions"):
        # Spark's 200 shuffle partitions cost a graphframes iteration on a small graph 4 to 5 s
        # against under 1 s with a few; two per core suits the engines at every size.
        session.conf.set("spark.sql.shuffle.partitions", str(2 * session.sparkContext.defaultParallelism))
    return session


def require_graphframes(spark: SparkSession) -> None:
    """Raise :class:`GraphFramesUnavailableError` unless GraphFrames works in ``spark``.

    A classic session made without the package (a notebook's own, or
    ``spark-submit`` without ``--packages``) runs everything but the GraphFrames
    parts. In a Spark Connect session GraphFrames runs on the server, through
    its Connect plugin: a query of one empty graph asks the server whether it
    has it.
    """
    from spark_ap.compat import is_connect

    if is_connect(spark):
        _require_graphframes_plugin(spark)
        return
    jvm = spark.sparkContext._jvm
    try:
        jvm.Thread.currentThread().getContextClassLoader().loadClass("org.graphframes.GraphFramePythonAPI")
    except Exception as error:
        raise GraphFramesUnavailableError(
            unavailable_message(
                dict(spark.sparkContext.getConf().getAll()),
                "GraphFrames' JVM classes (org.graphframes) are not on this Spark session's classpath.",
                "Build the session with spark_ap.spark_session() or give spark-submit the options of "
                "spark_ap.session.submit_arguments(). ",
            )
        ) from error


# What a Spark Connect server needs to run GraphFrames' queries (GraphFrames' Connect plugin).
GRAPHFRAMES_CONNECT_PACKAGE = f"io.graphframes:graphframes-connect-spark4_2.13:{GRAPHFRAMES_VERSION}"
GRAPHFRAMES_CONNECT_PLUGIN = "org.apache.spark.sql.graphframes.GraphFramesConnect"


def _require_graphframes_plugin(spark: SparkSession) -> None:
    from graphframes import GraphFrame

    vertices = spark.range(0)
    edges = vertices.select(vertices["id"].alias("src"), vertices["id"].alias("dst"))
    try:
        GraphFrame(vertices, edges).triplets.collect()
    except Exception as error:
        raise GraphFramesUnavailableError(
            "GraphFrames does not run on this Spark Connect server: it needs GraphFrames' server plugin "
            f"(start the server with --packages {GRAPHFRAMES_CONNECT_PACKAGE} and --conf "
            f"spark.connect.extensions.relation.classes={GRAPHFRAMES_CONNECT_PLUGIN}), or use "
            f"engine='local', which needs only DataFrames. The server said: {reason(error)}"
        ) from error
