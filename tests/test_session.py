"""GraphFrames' JVM package reaches the session the way users resolve it, or the user is told how to."""

import os
import subprocess
import sys
import textwrap

import pytest

from spark_ap.session import GRAPHFRAMES_PACKAGE, REPOSITORIES_ENV, graphframes_conf, submit_arguments


def test_the_package_is_added_to_what_the_caller_asked_for(monkeypatch):
    monkeypatch.setenv(REPOSITORIES_ENV, "https://mirror.example/maven, file:///opt/maven")
    conf = graphframes_conf(
        {"spark.jars.packages": "org.example:tool_2.13:1.0", "spark.jars.repositories": "https://mirror.example/maven"},
        repositories="https://other.example/maven",
    )
    assert conf == {
        "spark.jars.packages": f"org.example:tool_2.13:1.0,{GRAPHFRAMES_PACKAGE}",
        "spark.jars.repositories": "https://mirror.example/maven,https://other.example/maven,file:///opt/maven",
    }
    assert submit_arguments(repositories="file:///x") == [
        "--packages",
        GRAPHFRAMES_PACKAGE,
        "--repositories",
        "file:///x,https://mirror.example/maven,file:///opt/maven",
    ]


def test_jars_of_its_own_or_another_graphframes_version_are_kept(monkeypatch):
    monkeypatch.delenv(REPOSITORIES_ENV, raising=False)
    jars = "/opt/jars/graphframes-spark4_2.13-0.11.0.jar,/opt/jars/graphframes-graphx-spark4_2.13-0.11.0.jar"
    assert graphframes_conf({"spark.jars": jars}) == {}
    own = "io.graphframes:graphframes-spark4_2.13:0.11.1"
    assert graphframes_conf({"spark.jars.packages": own}) == {"spark.jars.packages": own}


def python(code: str, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter with exactly ``env`` (plus what finding Java and Python needs,
    and the options of the tests' JVMs)."""
    keys = ("PATH", "HOME", "JAVA_HOME", "LANG", "SPARK_SUBMIT_OPTS")
    base = {key: os.environ[key] for key in keys if key in os.environ}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_a_fresh_process_gets_a_session_that_runs_graphframes():
    # Only SPARK_AP_REPOSITORIES says where to look (on a machine that reaches
    # Maven Central it may be unset: the package resolves from there).
    env = {REPOSITORIES_ENV: os.environ[REPOSITORIES_ENV]} if REPOSITORIES_ENV in os.environ else {}
    done = python(
        """
        from graphframes import GraphFrame
        from spark_ap import spark_session

        spark = spark_session("local[1]")
        v = spark.createDataFrame([(0,), (1,), (2,)], "id long")
        e = spark.createDataFrame([(0, 1), (1, 2), (2, 1)], "src long, dst long")
        print(spark.conf.get("spark.sql.shuffle.partitions"))
        print(sorted(tuple(row) for row in GraphFrame(v, e).inDegrees.collect()))
        """,
        env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[(1, 2), (2, 1)]"
    # Not Spark's 200: two per core (one here) unless the caller says.
    assert done.stdout.strip().splitlines()[-2] == "2"


def test_an_unresolvable_package_gives_one_clear_error(tmp_path):
    # An Ivy settings file whose only repository is empty, as on an air-gapped
    # machine with a mirror that lacks the package.
    (tmp_path / "empty").mkdir()
    settings = tmp_path / "ivysettings.xml"
    settings.write_text(
        f"""<ivysettings>
          <settings defaultResolver="mirror"/>
          <caches defaultCacheDir="{tmp_path}/cache"/>
          <resolvers>
            <ibiblio name="mirror" m2compatible="true" root="file://{tmp_path}/empty"/>
          </resolvers>
        </ivysettings>"""
    )
    done = python(
        f"""
        from spark_ap import spark_session
        spark_session("local[1]", **{{"spark.jars.ivySettings": "{settings}", "spark.jars.ivy": "{tmp_path}/ivy"}})
        """,
        {},
    )
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("spark_ap.errors.GraphFramesUnavailableError: Spark did not start")
    for words in (GRAPHFRAMES_PACKAGE, str(settings), REPOSITORIES_ENV, "spark.jars"):
        assert words in last
    assert "Py4J" not in last


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_session_without_the_package_is_told_how_to_get_it():
    # A notebook's own session, started without spark-ap's help.
    done = python(
        """
        from pyspark.sql import SparkSession
        from spark_ap import AffinityPropagation, GraphFramesUnavailableError

        spark = SparkSession.builder.master("local[1]").getOrCreate()
        edges = spark.createDataFrame([(0, 1, -1.0), (1, 0, -2.0)], "src long, dst long, similarity double")
        try:
            AffinityPropagation(engine="graphframes").run(edges)
        except GraphFramesUnavailableError as error:
            print(error)
        # Told before the set-up's passes over the edges: no Spark job ran.
        print(spark.sparkContext.statusTracker().getJobIdsForGroup())
        """,
        {},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    *_, message, jobs = done.stdout.strip().splitlines()
    assert jobs == "[]"
    assert "not on this Spark session's classpath" in message
    assert "spark_session()" in message and REPOSITORIES_ENV in message and "--jars" in message
