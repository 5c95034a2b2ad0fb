"""Saves that lie are caught: a damaged save is set aside with a warning naming the file, and the run
goes on from the save before it or from the start, to exactly the uninterrupted result."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
from sklearn.datasets import make_blobs

from spark_ap import AffinityPropagation, edges_from_matrix, similarity_matrix
from tests.conftest import saves
from tests.test_resume import PARAMS, outcome, run_with_fault


@pytest.fixture(scope="module")
def blobs(spark):
    X, _ = make_blobs(36, centers=3, random_state=5)
    return edges_from_matrix(spark, similarity_matrix(X)).cache()


@pytest.fixture(scope="module")
def uninterrupted(blobs):
    return AffinityPropagation(**PARAMS).run(blobs)


def _parts(folder):
    return sorted(p for p in folder.iterdir() if p.name.startswith("part-"))


def _no_hadoop_checksum(path):
    """Remove the .crc file Hadoop's local file system keeps beside ``path``: on HDFS or S3 there is
    none, and spark-ap's own checks must catch the damage."""
    (path.parent / f".{path.name}.crc").unlink(missing_ok=True)


def truncate(save):
    part = _parts(save)[0]
    part.write_bytes(part.read_bytes()[:-100])
    return part.name


def flip_a_byte(save):
    part = _parts(save)[0]
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0x01
    part.write_bytes(bytes(data))
    _no_hadoop_checksum(part)
    return part.name


def remove_a_part(save):
    part = _parts(save)[-1]
    part.unlink()
    return part.name


def json_of_the_other_save(save):
    # The newest save's JSON replaced by the older save's, itself intact: it names another iteration.
    older = sorted(p for p in save.parent.glob("iteration-*") if p != save)[0]
    shutil.copy(older / "_spark_ap_state.json", save / "_spark_ap_state.json")
    _no_hadoop_checksum(save / "_spark_ap_state.json")
    return "_spark_ap_state.json"


def edit_the_json(save):
    meta = save / "_spark_ap_state.json"
    data = json.loads(meta.read_text())
    data["last"]["exemplars"] += 1
    meta.write_text(json.dumps(data))
    _no_hadoop_checksum(meta)
    return "_spark_ap_state.json"


@pytest.fixture(scope="module")
def blocks_saves(blobs, tmp_path_factory):
    """A finished blocks run's state dir: Spark writes its saves, a part file per partition."""
    folder = tmp_path_factory.mktemp("blocks-saves")
    AffinityPropagation(**PARAMS, stateDir=str(folder), checkpointInterval=5, engine="blocks").run(blobs)
    return folder


@pytest.mark.parametrize("damage", [truncate, flip_a_byte, remove_a_part, json_of_the_other_save, edit_the_json])
def test_a_damaged_newest_save_is_set_aside_and_the_run_resumes_from_the_one_before(
    blobs, uninterrupted, blocks_saves, tmp_path, caplog, damage
):
    # A copy of the same saves for each damage (the state dir is not part of a run's identity).
    state = tmp_path / "state"
    shutil.copytree(blocks_saves, state)
    params = dict(**PARAMS, stateDir=str(state), checkpointInterval=5, engine="blocks")
    last = uninterrupted.numIterations // 5 * 5
    assert saves(state) == [last - 5, last]  # the two newest saves

    name = damage(state / f"iteration-{last:06d}")
    with caplog.at_level(logging.WARNING, logger="spark_ap"):
        again = AffinityPropagation(**params).run(blobs)

    assert f"iteration-{last:06d}" in caplog.text and name in caplog.text and "damaged" in caplog.text
    assert again.resumedFrom == last - 5
    assert outcome(again) == outcome(uninterrupted)
    assert (state / f"damaged-iteration-{last:06d}").is_dir()  # kept for inspection


def test_with_every_save_damaged_the_run_starts_over(blobs, uninterrupted, tmp_path, caplog):
    # The local engine: the driver writes its saves.
    params = dict(**PARAMS, stateDir=str(tmp_path), checkpointInterval=5, engine="local")
    AffinityPropagation(**params).run(blobs)
    for iteration in saves(tmp_path):
        flip_a_byte(tmp_path / f"iteration-{iteration:06d}")

    with caplog.at_level(logging.WARNING, logger="spark_ap"):
        again = AffinityPropagation(**params).run(blobs)

    assert caplog.text.count("it is set aside as damaged-iteration-") == 2
    assert again.resumedFrom is None
    assert outcome(again) == outcome(uninterrupted)


def test_a_save_from_a_version_without_checksums_is_not_trusted(blobs, uninterrupted, tmp_path, caplog):
    params = dict(**PARAMS, stateDir=str(tmp_path), checkpointInterval=5, engine="local")
    AffinityPropagation(**params).run(blobs)
    for iteration in saves(tmp_path):
        meta = tmp_path / f"iteration-{iteration:06d}" / "_spark_ap_state.json"
        data = json.loads(meta.read_text())
        del data["sha256"], data["files"]
        meta.write_text(json.dumps(data))
        _no_hadoop_checksum(meta)

    with caplog.at_level(logging.WARNING, logger="spark_ap"):
        again = AffinityPropagation(**params).run(blobs)

    assert "does not match its checksum" in caplog.text
    assert again.resumedFrom is None and outcome(again) == outcome(uninterrupted)


def _hash_fails(monkeypatch, marker):
    """Make the executors' hashing of a part file fail while ``marker`` exists (once, when the
    failing task removes it; always, with ``keep``), as a lost executor or an out-of-memory would:
    the job fails in Spark, the files are untouched."""
    from spark_ap.run import state

    digest = state._stream_digest

    def failing(path, marker=str(marker), digest=digest):
        import os

        if os.path.exists(marker):
            if not marker.endswith("keep"):
                os.remove(marker)
            raise MemoryError("the executor ran out of memory hashing a part file")
        return digest(path)

    monkeypatch.setattr(state, "_stream_digest", failing)


def test_a_hash_job_that_fails_once_sets_no_save_aside_and_is_tried_again(
    blobs, uninterrupted, blocks_saves, tmp_path, caplog, monkeypatch
):
    state = tmp_path / "state"
    shutil.copytree(blocks_saves, state)
    before = saves(state)
    marker = tmp_path / "fail-once"
    marker.touch()
    _hash_fails(monkeypatch, marker)
    with caplog.at_level(logging.WARNING, logger="spark_ap"):
        again = AffinityPropagation(**PARAMS, stateDir=str(state), checkpointInterval=5, engine="blocks").run(blobs)
    assert not marker.exists()  # the fault happened
    assert "trying again" in caplog.text and "damaged" not in caplog.text
    assert again.resumedFrom == before[-1]
    assert outcome(again) == outcome(uninterrupted)


def test_a_hash_job_that_keeps_failing_stops_the_run_in_one_line_and_keeps_every_save(
    blobs, blocks_saves, tmp_path, monkeypatch
):
    from spark_ap import SaveUnreadableError
    from spark_ap.checksums import local_digests

    state = tmp_path / "state"
    shutil.copytree(blocks_saves, state)
    files = local_digests(state)
    marker = tmp_path / "fail-keep"
    marker.touch()
    _hash_fails(monkeypatch, marker)
    with pytest.raises(SaveUnreadableError, match=r"could not be hashed in 3 tries .*no save was set aside") as error:
        AffinityPropagation(**PARAMS, stateDir=str(state), checkpointInterval=5, engine="blocks").run(blobs)
    assert "\n" not in str(error.value) and str(state) in str(error.value)
    assert local_digests(state) == files  # every save as it was: none renamed, none deleted


@pytest.mark.slow  # a whole blocks run repeated from the start: make test-slow
def test_a_run_whose_saves_are_all_damaged_when_an_iteration_fails_starts_over(
    spark, blobs, uninterrupted, tmp_path, caplog
):
    """An iteration fails (the chunk files lost) and no save is intact: the run goes on from the start."""
    from tests.test_resume import chunk_files

    class DamageEverything(logging.Handler):
        def __init__(self):
            super().__init__()
            self.done, self.root = False, chunk_files(spark)

        def emit(self, record):
            if record.getMessage().startswith("iteration 7/") and not self.done:
                self.done = True
                for iteration in saves(tmp_path):
                    flip_a_byte(tmp_path / f"iteration-{iteration:06d}")
                shutil.rmtree(self.root)

    fault = DamageEverything()
    again = run_with_fault(fault, blobs, tmp_path, caplog)
    assert fault.done
    assert "iteration 8 failed" in caplog.text and "retrying from the start: no intact save is left" in caplog.text
    assert outcome(again) == outcome(uninterrupted)


@pytest.mark.slow  # a blocks run writing a part file per 100 rows: make test-slow
def test_a_save_written_by_spark_keeps_its_part_files_small(blobs, uninterrupted, tmp_path, monkeypatch):
    """Spark writes a save's part files at most ROWS_PER_FILE rows each (binaryFiles, which hashes
    them on HDFS and object stores, holds a file whole), and the run resumes from them."""
    import pyarrow.parquet as pq

    from spark_ap.run import state as state_module

    monkeypatch.setattr(state_module, "ROWS_PER_FILE", 100)
    params = dict(**PARAMS, stateDir=str(tmp_path), checkpointInterval=5, engine="blocks")
    AffinityPropagation(**params).run(blobs)
    last = saves(tmp_path)[-1]
    rows = [pq.ParquetFile(part).metadata.num_rows for part in _parts(tmp_path / f"iteration-{last:06d}")]
    assert sum(rows) == blobs.count() + 36  # the edges and each point's self-edge
    assert max(rows) <= 100 and len(rows) > blobs.rdd.getNumPartitions()
    again = AffinityPropagation(**params).run(blobs)
    assert again.resumedFrom == last and outcome(again) == outcome(uninterrupted)
