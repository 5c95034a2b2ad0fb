"""A run saves its state and resumes from it with exactly the uninterrupted result."""

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pyspark.sql import functions as F
from sklearn.datasets import make_blobs

from spark_ap import AffinityPropagation, InvalidParamError, StateMismatchError, edges_from_matrix, similarity_matrix
from spark_ap.app.config import DEFAULT_CONFIG
from spark_ap.app.job import main
from spark_ap.engines.blocks.storage import Part
from spark_ap.run.cluster import graph_facts
from tests.conftest import assignment_rows, saves, wait_for_save, written_rows

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PARAMS = dict(damping=0.7, convergenceIter=15, seed=4)


def outcome(result) -> tuple:
    """Everything a run decides: assignments, iterations, history and the final messages."""
    return (
        assignment_rows(result),
        result.numIterations,
        result.converged,
        [tuple(row) for row in result.history.itertuples(index=False)],
        sorted(tuple(row) for row in result.messages.collect()),
    )


@pytest.fixture(scope="module")
def blobs(spark):
    X, _ = make_blobs(36, centers=3, random_state=5)
    return edges_from_matrix(spark, similarity_matrix(X)).cache()


@pytest.fixture(scope="module")
def uninterrupted(blobs):
    """The run without any state saved: the oracle of every resumed run."""
    return AffinityPropagation(**PARAMS).run(blobs)


def test_a_rerun_resumes_from_the_newest_save(blobs, uninterrupted, tmp_path):
    first = AffinityPropagation(**PARAMS, stateDir=str(tmp_path), checkpointInterval=5).run(blobs)
    assert first.resumedFrom is None
    assert outcome(first) == outcome(uninterrupted)
    # The two newest saves are kept: the last two multiples of 5.
    last = uninterrupted.numIterations // 5 * 5
    assert saves(tmp_path) == [last - 5, last] and 0 < last < uninterrupted.numIterations

    again = AffinityPropagation(**PARAMS, stateDir=str(tmp_path), checkpointInterval=5).run(blobs)
    assert again.resumedFrom == last
    assert outcome(again) == outcome(uninterrupted)


def test_a_save_of_the_last_iteration_resumes_to_the_same_end(blobs, uninterrupted, tmp_path):
    # Saves at 0 and at the last iteration only.
    AffinityPropagation(**PARAMS, stateDir=str(tmp_path), checkpointInterval=uninterrupted.numIterations).run(blobs)
    assert saves(tmp_path) == [0, uninterrupted.numIterations]
    again = AffinityPropagation(**PARAMS, stateDir=str(tmp_path), checkpointInterval=3).run(blobs)
    assert again.resumedFrom == uninterrupted.numIterations
    assert outcome(again) == outcome(uninterrupted)


@pytest.mark.filterwarnings("ignore::spark_ap.ConvergenceWarning")  # the 3-iteration run
def test_a_save_of_another_run_is_refused(spark, blobs, tmp_path):
    AffinityPropagation(**PARAMS, stateDir=str(tmp_path), maxIter=3, checkpointInterval=2).run(blobs)
    with pytest.raises(StateMismatchError, match=r"params\.damping 0\.7 then, 0\.8 now"):
        AffinityPropagation(**{**PARAMS, "damping": 0.8}, stateDir=str(tmp_path), maxIter=3).run(blobs)
    changed = blobs.withColumn("similarity", blobs["similarity"] - (blobs["src"] == 7).cast("double"))
    with pytest.raises(StateMismatchError, match=r"input\.checksum"):
        AffinityPropagation(**PARAMS, stateDir=str(tmp_path), maxIter=3).run(changed)
    assert saves(tmp_path) == [0, 2]  # refused without touching the saves


@pytest.mark.filterwarnings("ignore::spark_ap.ConvergenceWarning")  # one iteration
def test_every_engine_saves_the_same_state_before_the_first_iteration(spark, blobs, tmp_path):
    # The local engine writes it from its arrays on the driver, the others from Spark's plan.
    saved = {}
    for engine in ("local", "blocks", "graphframes"):
        folder = tmp_path / engine
        AffinityPropagation(**PARAMS, engine=engine, maxIter=1, checkpointInterval=5, stateDir=str(folder)).run(blobs)
        assert saves(folder) == [0]
        frame = spark.read.parquet(str(folder / "iteration-000000"))
        saved[engine] = (frame.schema.simpleString(), sorted(tuple(row) for row in frame.collect()))
    assert saved["local"] == saved["blocks"] == saved["graphframes"]
    schema, rows = saved["local"]
    assert schema.startswith("struct<src:bigint,dst:bigint,similarity:double,s:double,r:double,a:double,e:boolean")
    assert len(rows) == 36 * 36  # the complete graph of the 36 points, self-edges included
    # No message and no decision yet; s is the similarity with its tiny noise.
    assert {tuple(row[4:]) for row in rows} == {(0.0, 0.0, False, 0, False)}
    assert all(s == pytest.approx(similarity, rel=1e-14, abs=1e-300) for _, _, similarity, s, *_ in rows)


@pytest.mark.parametrize("ids", ["long", "string"])
def test_the_fingerprint_is_the_exact_sum_of_the_edges_hashes(spark, ids):
    rng = np.random.default_rng(5)
    pairs, values = rng.integers(0, 2**40, (3000, 2)).tolist(), rng.normal(size=3000).tolist()
    cast = str if ids == "string" else int
    rows = [(cast(i), cast(j), v) for (i, j), v in zip(pairs, values, strict=True)]
    graph = spark.createDataFrame(rows, f"src {ids}, dst {ids}, similarity double")
    h = F.xxhash64("src", "dst", "similarity")
    hashes = [row.h for row in graph.select(h.alias("h")).collect()]
    assert min(hashes) < 0 < max(hashes) and abs(sum(hashes)) > 2**63  # both signs, past any long
    assert graph_facts(graph)["checksum"] == sum(hashes)
    # What saves of earlier versions hold: Spark's decimal sum, the same number.
    assert graph.agg(F.sum(h.cast("decimal(20,0)"))).first()[0] == sum(hashes)
    assert graph_facts(graph.limit(0))["checksum"] is None


class _DropBlocks(logging.Handler):
    """When the engine logs ``iteration``, drop the run's blocks in executor storage, as a lost executor would."""

    def __init__(self, spark, iteration: int) -> None:
        super().__init__()
        self.spark, self.iteration, self.lost = spark, iteration, 0
        self.before = set(self._blocks())  # other tests' cached data stays

    def _blocks(self) -> dict:
        return dict(self.spark.sparkContext._jsc.getPersistentRDDs().items())

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith(f"iteration {self.iteration}/") and not self.lost:
            for rdd_id, rdd in self._blocks().items():
                if rdd_id not in self.before:
                    rdd.unpersist(True)
                    self.lost += 1


def chunk_files(spark) -> Path:
    """The blocks engine's folder of chunk files in the executor's local directory (the driver's, on local[*])."""
    return Path(spark.sparkContext.parallelize([0], 1).map(lambda _: Part.root("")).first())


class _RemoveChunkFiles(logging.Handler):
    """When the engine logs ``iteration``, remove the blocks engine's chunk files from the executor's
    local directory (the driver's, on local[*]), as a lost executor or a task run elsewhere would."""

    def __init__(self, spark, iteration: int) -> None:
        super().__init__()
        self.iteration, self.lost = iteration, 0
        self.root = chunk_files(spark)

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith(f"iteration {self.iteration}/") and not self.lost:
            self.lost = sum(1 for path in self.root.rglob("*") if path.is_file())
            shutil.rmtree(self.root)


def run_with_fault(fault: logging.Handler, blobs, state_dir, caplog):
    """A blocks run saving every 5 iterations in ``state_dir``, with ``fault`` (a handler of spark-ap's
    log that does its damage when a given line is logged) in place, and the log kept in ``caplog``."""
    logging.getLogger("spark_ap").addHandler(fault)
    try:
        with caplog.at_level(logging.INFO, logger="spark_ap"):
            return AffinityPropagation(**PARAMS, stateDir=str(state_dir), checkpointInterval=5, engine="blocks").run(
                blobs
            )
    finally:
        logging.getLogger("spark_ap").removeHandler(fault)


@pytest.mark.parametrize("fault", [_DropBlocks, _RemoveChunkFiles])
def test_a_failed_iteration_is_retried_from_the_newest_save(spark, blobs, uninterrupted, tmp_path, caplog, fault):
    lose = fault(spark, 7)
    result = run_with_fault(lose, blobs, tmp_path, caplog)
    assert lose.lost > 0
    assert "iteration 8 failed" in caplog.text and "retrying from the state of iteration 5" in caplog.text
    if fault is _RemoveChunkFiles:
        assert "ChunkLostError" in caplog.text  # the log says why
    assert outcome(result) == outcome(uninterrupted)


def test_a_final_assignment_that_fails_is_retried_from_the_newest_save(spark, blobs, uninterrupted, tmp_path, caplog):
    # The chunk files go right after the last iteration, so the labels cannot be read from them.
    last = uninterrupted.numIterations
    lose = _RemoveChunkFiles(spark, last)
    result = run_with_fault(lose, blobs, tmp_path, caplog)
    assert lose.lost > 0
    saved = last // 5 * 5
    assert "the final assignment failed" in caplog.text
    assert f"retrying from the state of iteration {saved}" in caplog.text
    assert outcome(result) == outcome(uninterrupted)


@pytest.mark.parametrize("engine", ["blocks", pytest.param("graphframes", marks=pytest.mark.slow)])
def test_without_a_state_dir_a_failed_iteration_goes_back_to_the_checkpoint_directory(
    spark, blobs, uninterrupted, caplog, engine
):
    # The session has a checkpoint directory (conftest): every 5th state is written there, and what
    # the executors held (their cached blocks, the chunk files) goes at iteration 7.
    assert spark.sparkContext.getCheckpointDir()
    faults = [_DropBlocks(spark, 7)] + ([_RemoveChunkFiles(spark, 7)] if engine == "blocks" else [])
    for fault in faults:
        logging.getLogger("spark_ap").addHandler(fault)
    try:
        with caplog.at_level(logging.INFO, logger="spark_ap"):
            result = AffinityPropagation(**PARAMS, checkpointInterval=5, engine=engine).run(blobs)
    finally:
        for fault in faults:
            logging.getLogger("spark_ap").removeHandler(fault)
    assert all(fault.lost > 0 for fault in faults)
    assert "iteration 8 failed" in caplog.text
    assert "retrying from the reliable checkpoint of iteration 5, repeating 2 iterations" in caplog.text
    assert outcome(result) == outcome(uninterrupted)


@pytest.mark.parametrize("engine", ["blocks", "graphframes"])
def test_without_a_checkpoint_directory_a_failed_iteration_says_what_to_set(spark, blobs, caplog, engine):
    lose = _DropBlocks(spark, 3)
    logging.getLogger("spark_ap").addHandler(lose)
    try:
        with caplog.at_level(logging.INFO, logger="spark_ap"), pytest.raises(Exception) as failed:
            AffinityPropagation(**PARAMS, checkpointKind="local", engine=engine).run(blobs)
    finally:
        logging.getLogger("spark_ap").removeHandler(lose)
    assert lose.lost > 0
    (said,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR and "failed" in r.getMessage()]
    assert said.startswith("iteration 4 failed and the run has no copy of its state outside the executors")
    assert "setCheckpointDir" in said and "stateDir" in said and "\n" not in said
    assert said in failed.value.__notes__


def test_the_chunk_files_of_a_run_go_with_its_result(spark, blobs, uninterrupted):
    root = chunk_files(spark)
    before = set(root.glob("*")) if root.exists() else set()
    result = AffinityPropagation(**PARAMS, engine="blocks").run(blobs)
    (run,) = set(root.glob("*")) - before
    # Per partition its sources; per chunk its sources' positions among them, its static arrays
    # and the last two versions of its messages.
    last = result.numIterations
    for partition in run.iterdir():
        names = {path.name for path in partition.iterdir()}
        chunks = {name.split(".")[0] for name in names} - {"sources"}
        assert chunks and "sources" in names
        kept = {f"{k}.{kind}" for k in chunks for kind in ("i", "static", last - 1, last)}
        assert names == {"sources"} | kept
    assert outcome(result) == outcome(uninterrupted)  # read from those files
    result.unpersist()
    assert not run.exists()


@pytest.mark.slow  # a spark-submit JVM started twice; make test-slow, beside the same kill on HDFS
def test_a_killed_spark_submit_job_resumes_to_the_uninterrupted_result(spark, blobs, uninterrupted, tmp_path):
    edges = tmp_path / "edges.parquet"
    blobs.write.parquet(str(edges))
    out = tmp_path / "run"
    args = ["--input", str(edges), "--output", str(out), "--checkpoint-interval", "2", "--damping", "0.7"]
    args += ["--seed", "4", "--preference", "median", "--engine", "blocks"]
    # With the settings file, whose spark section the job's own session applies under
    # spark-submit (the command line wins over its ap section).
    args += ["--config", str(DEFAULT_CONFIG)]
    # A job of its own, in a process group of its own: SIGKILL takes the JVM and
    # the Python driver at once, as a lost machine would.
    job = subprocess.Popen(
        [str(BIN / "spark-submit"), "--master", "local[2]", str(ROOT / "scripts" / "spark_ap_job.py"), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for_save(out / "state", 4, job)
        os.killpg(job.pid, signal.SIGKILL)
        job.wait(timeout=60)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    killed_at = saves(out / "state")[-1]
    assert not (out / "summary.json").exists() and killed_at < uninterrupted.numIterations

    # The rerun, here on the suite's session, finds the save and finishes the run.
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed_from_iteration"] >= killed_at
    assert summary["iterations"] == uninterrupted.numIterations
    assert written_rows(out) == assignment_rows(uninterrupted)
    assert not (out / "state").exists()  # a finished run keeps no saves


@pytest.mark.filterwarnings("ignore::spark_ap.ConvergenceWarning")  # the 2-iteration run
def test_restart_discards_a_save_of_other_params(spark, blobs, tmp_path, capsys):
    edges = tmp_path / "edges.parquet"
    blobs.write.parquet(str(edges))
    out = tmp_path / "run"
    AffinityPropagation(damping=0.6, stateDir=str(out / "state"), maxIter=2).run(blobs)
    args = ["--input", str(edges), "--output", str(out), "--damping", "0.9", "--seed", "4"]
    assert main(args) == 2
    assert "belongs to another run: params.damping 0.6 then, 0.9 now" in capsys.readouterr().err
    (out / "state" / "notes.txt").write_text("not a save")
    assert main([*args, "--restart"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed_from_iteration"] is None and summary["params"]["damping"] == 0.9
    # Clearing the saves deletes only what saving wrote.
    assert sorted(p.name for p in (out / "state").iterdir()) == ["notes.txt"]


def test_state_dir_needs_saves(tmp_path):
    with pytest.raises(InvalidParamError, match="stateDir needs checkpointInterval >= 1"):
        AffinityPropagation(stateDir=str(tmp_path), checkpointInterval=-1)


class _RemoveChunkFilesEveryIteration(_RemoveChunkFiles):
    """From ``iteration`` on, remove the chunk files at every iteration: every retry fails again."""

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("iteration ") and "/" in message.split()[1]:
            if int(message.split()[1].split("/")[0]) >= self.iteration and self.root.exists():
                self.lost += sum(1 for path in self.root.rglob("*") if path.is_file())
                shutil.rmtree(self.root)


@pytest.mark.parametrize("state_dir", [True, False])
def test_failed_iterations_are_retried_at_most_recoveries_times_and_only_with_a_state_dir(
    spark, blobs, tmp_path, caplog, state_dir
):
    from spark_ap.run.loop import RECOVERIES

    lose = _RemoveChunkFilesEveryIteration(spark, 6)
    logging.getLogger("spark_ap").addHandler(lose)
    params = dict(PARAMS, checkpointInterval=5, engine="blocks", **({"stateDir": str(tmp_path)} if state_dir else {}))
    try:
        with caplog.at_level(logging.INFO, logger="spark_ap"), pytest.raises(Exception, match="ChunkLostError"):
            AffinityPropagation(**params).run(blobs)
    finally:
        logging.getLogger("spark_ap").removeHandler(lose)
    retries = [r.getMessage() for r in caplog.records if "retrying from the state" in r.getMessage()]
    if state_dir:
        assert len(retries) == RECOVERIES and f"recovery {RECOVERIES} of {RECOVERIES}" in retries[-1]
    else:
        assert retries == []  # nothing to retry from


def test_a_bug_in_the_drivers_python_is_raised_at_once_not_retried(spark, blobs, tmp_path, caplog, monkeypatch):
    from spark_ap.engines.local import LocalEngine

    step, calls = LocalEngine.step, []

    def buggy(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 7:
            raise TypeError("unsupported operand type(s) for +: 'int' and 'NoneType'")
        return step(self, *args, **kwargs)

    monkeypatch.setattr(LocalEngine, "step", buggy)
    with caplog.at_level(logging.INFO, logger="spark_ap"), pytest.raises(TypeError, match="unsupported operand"):
        AffinityPropagation(**PARAMS, stateDir=str(tmp_path), checkpointInterval=5, engine="local").run(blobs)
    assert len(calls) == 7 and "retrying" not in caplog.text
