"""Two writers never mix: a second run on a folder in use is refused, and a dead owner's lock is taken over."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from spark_ap import AffinityPropagation, FolderInUseError, edges_from_matrix, similarity_matrix
from spark_ap.lock import NAME, STALE, FolderLock
from tests.conftest import BIN, ROOT

HOLD = """
import sys, time
from spark_ap.lock import FolderLock
with FolderLock(sys.argv[1], "a test's holder"):
    print("held", flush=True)
    time.sleep(600)
"""


@pytest.fixture
def holder(tmp_path):
    """Another process holding a lock on ``tmp_path / 'state'``, as a running job would."""
    folder = tmp_path / "state"
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    yield folder, process
    process.kill()
    process.wait()


def test_a_state_dir_in_use_by_another_process_is_refused(spark, holder):
    folder, process = holder
    edges = edges_from_matrix(spark, similarity_matrix(np.random.RandomState(0).randn(12, 2)))
    with pytest.raises(FolderInUseError, match=rf"in use by process {process.pid} on .*a test's holder"):
        AffinityPropagation(stateDir=str(folder), checkpointInterval=5).run(edges)
    assert not list(folder.glob("iteration-*"))  # nothing written beside the owner's

    process.kill()  # the owner dies without letting go: its lock is taken over at once on its host
    process.wait()
    result = AffinityPropagation(stateDir=str(folder), checkpointInterval=5).run(edges)
    assert result.converged and not (folder / NAME).exists()  # let go at the end


def test_a_lock_of_another_machine_is_refused_while_it_beats_and_taken_over_after(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    lock = folder / NAME
    lock.write_text(json.dumps({"host": "elsewhere", "pid": 1, "what": "spark-ap --output out", "since": 0}))
    with pytest.raises(FolderInUseError, match="in use by process 1 on elsewhere"):
        with FolderLock(folder, "second"):
            pass
    old = time.time() - STALE - 1  # no heartbeat for longer than STALE: its owner is gone
    os.utime(lock, (old, old))
    with FolderLock(folder, "second"):
        assert json.loads(lock.read_text())["what"] == "second"
    assert not lock.exists()


def test_a_lock_of_a_killed_process_not_yet_reaped_is_taken_over(tmp_path):
    # A killed driver whose parent has not reaped it is a zombie: its pid still answers signals.
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.time() + 30
    while open(f"/proc/{child.pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z" and time.time() < deadline:
        time.sleep(0.05)
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / NAME).write_text(json.dumps({"host": socket.gethostname(), "pid": child.pid, "what": "killed"}))
    try:
        with FolderLock(folder, "next"):
            assert json.loads((folder / NAME).read_text())["what"] == "next"
    finally:
        child.wait()


@pytest.mark.slow
def test_two_jobs_on_one_output_folder(tmp_path):
    # A long job (its iterations cannot converge), and a second job on its output folder.
    out = tmp_path / "run"
    args = ["--input", str(ROOT / "examples" / "blobs_400.csv"), "--kind", "features", "--output", str(out)]
    long = [*args, "--max-iter", "100000", "--convergence-iter", "100000"]
    first = subprocess.Popen(
        [str(BIN / "spark-ap"), *long], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.time() + 120
        while not list((out / "state").glob("iteration-*")) and time.time() < deadline and first.poll() is None:
            time.sleep(0.5)
        assert first.poll() is None and (out / NAME).exists()

        second = subprocess.run([str(BIN / "spark-ap"), *args], capture_output=True, text=True, timeout=300)
        assert second.returncode == 2
        assert f"is in use by process {first.pid}" in second.stderr, second.stderr
        assert len(second.stderr.strip().splitlines()) == 1  # one line, no traceback

        os.killpg(first.pid, signal.SIGKILL)  # as a lost machine: the lock stays behind
        first.wait(timeout=60)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert (out / NAME).exists()

    # Its owner gone, the folder is taken over by the next job (which starts afresh: other params).
    again = subprocess.run([str(BIN / "spark-ap"), *args, "--restart"], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "taking over" in again.stderr and (out / "summary.json").is_file() and not (out / NAME).exists()
