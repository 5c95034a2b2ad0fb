"""Two writers never mix: a second run on a folder in use is refused, and a dead owner's lock is taken over."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from spark_ap import AffinityPropagation, FolderInUseError, edges_from_matrix, similarity_matrix
from spark_ap import lock as lock_module
from spark_ap.lock import NAME, STALE, TAKEOVER, FolderLock
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


def _state(pid: int, task: int | None = None) -> str:
    """The state letter of process ``pid`` (of its thread ``task``) in /proc: R, S, T (stopped), Z, ..."""
    stat = f"/proc/{pid}/task/{task}/stat" if task else f"/proc/{pid}/stat"
    return Path(stat).read_text().rsplit(")", 1)[1].split()[0]


def _killed_owner(folder: Path) -> dict:
    """The lock a process of this host wrote in ``folder`` before it was killed and reaped, as read back."""
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    child.kill()
    child.wait()
    child.stdout.close()
    return json.loads((folder / NAME).read_text())


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
    folder = tmp_path / "out"
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    child.send_signal(signal.SIGKILL)
    deadline = time.time() + 30
    while _state(child.pid) != "Z" and time.time() < deadline:
        time.sleep(0.05)
    try:
        with FolderLock(folder, "next"):
            assert json.loads((folder / NAME).read_text())["what"] == "next"
    finally:
        child.wait()
        child.stdout.close()


def test_a_dead_pid_of_this_host_name_in_another_pid_namespace_is_not_trusted(tmp_path):
    # Two containers may have one host name and not one set of processes: a pid that does not run
    # here may run there, so only the heartbeat says whether that owner is gone.
    folder = tmp_path / "out"
    owner = _killed_owner(folder)
    lock = folder / NAME
    assert owner["host"] == socket.gethostname() and owner["space"]
    lock.write_text(json.dumps({**owner, "space": "pid:[4026532999] another container's"}))
    with pytest.raises(FolderInUseError, match=rf"in use by process {owner['pid']} on {owner['host']}"):
        with FolderLock(folder, "next"):
            pass
    assert json.loads(lock.read_text())["space"].endswith("another container's")  # left as it was

    lock.write_text(json.dumps(owner))  # its own process namespace: its pid is gone, taken over at once
    with FolderLock(folder, "next"):
        assert json.loads(lock.read_text())["what"] == "next"
    assert sorted(folder.iterdir()) == []


def test_the_heartbeat_refreshes_the_lock(tmp_path, monkeypatch):
    monkeypatch.setattr(lock_module, "HEARTBEAT", 0.05)
    lock = tmp_path / NAME
    with FolderLock(tmp_path, "a beating owner") as held:
        old = time.time() - STALE / 2
        os.utime(lock, (old, old))
        deadline = time.time() + 10
        while lock.stat().st_mtime < old + 1 and time.time() < deadline:
            time.sleep(0.02)
        assert lock.stat().st_mtime > time.time() - 5, "not refreshed"
        assert not held.lost


def test_a_lock_removed_under_its_owner_is_lost_and_not_made_again(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(lock_module, "HEARTBEAT", 0.05)
    lock = tmp_path / NAME
    with FolderLock(tmp_path, "an owner") as held:
        lock.unlink()
        deadline = time.time() + 10
        while not held.lost and time.time() < deadline:
            time.sleep(0.02)
        assert held.lost and not lock.exists()
    assert "no longer holds" in caplog.text and not lock.exists()


def test_markers_of_runs_that_died_taking_a_lock_over_neither_block_it_nor_stay(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    lock = folder / NAME
    dead, gone = "ab" * 16, "cd" * 16
    lock.write_text(json.dumps({"host": "a lost machine", "pid": 1, "what": "a dead run", "token": dead}))
    old = time.time() - STALE - 1
    os.utime(lock, (old, old))
    # A run that died taking this lock over, after making its marker; one that took another lock over.
    for name in (f"{TAKEOVER}{dead}.1", f"{TAKEOVER}{gone}.1"):
        (folder / name).write_text("{}")
        os.utime(folder / name, (old, old))
    with FolderLock(folder, "next"):
        assert json.loads(lock.read_text())["what"] == "next"
        assert sorted(p.name for p in folder.iterdir()) == [NAME]
    assert sorted(folder.iterdir()) == []


PAUSED = """
import sys, time
from pathlib import Path
import spark_ap.lock as lock

lock.HEARTBEAT = 0.05  # its first beat after the pause comes at once
folder, go = sys.argv[1], Path(sys.argv[2])
with lock.FolderLock(folder, "a paused owner") as held:
    print("held", flush=True)
    while not go.exists():
        time.sleep(0.01)
    deadline = time.time() + 3
    while not held.lost and time.time() < deadline:
        time.sleep(0.01)
print("lost" if held.lost else "kept", flush=True)
"""


def test_an_owner_paused_past_its_heartbeat_neither_refreshes_nor_removes_the_next_owners_lock(tmp_path, monkeypatch):
    monkeypatch.setattr(lock_module, "HEARTBEAT", 600.0)  # this test's lock keeps the mtime it is given
    folder, go = tmp_path / "out", tmp_path / "go"
    lock = folder / NAME
    child = subprocess.Popen([sys.executable, "-c", PAUSED, str(folder), str(go)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        child.send_signal(signal.SIGSTOP)  # a driver stuck in a long GC pause, a VM frozen for a while
        deadline = time.time() + 10
        while any(_state(child.pid, int(t)) != "T" for t in os.listdir(f"/proc/{child.pid}/task")):
            assert time.time() < deadline, "the owner did not stop"
            time.sleep(0.01)
        old = time.time() - STALE - 1
        os.utime(lock, (old, old))

        with FolderLock(folder, "the next owner"):
            assert json.loads(lock.read_text())["what"] == "the next owner"
            beat = time.time_ns() - 5 * 10**9
            os.utime(lock, ns=(beat, beat))
            go.touch()
            child.send_signal(signal.SIGCONT)  # it wakes up, beats and leaves its with block
            assert child.wait(timeout=60) == 0
            assert child.stdout.read().strip() == "lost"
            assert json.loads(lock.read_text())["pid"] == os.getpid()
            assert lock.stat().st_mtime_ns == beat, "refreshed by the owner it was taken from"
        assert sorted(folder.iterdir()) == []
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGCONT)
            child.kill()
            child.wait()
        child.stdout.close()


RACE = """
import json, multiprocessing, os, sys, time
from pathlib import Path
from spark_ap import FolderInUseError
from spark_ap.lock import NAME, FolderLock

root, trials, racers, hold = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])


def names_me(lock):
    try:
        return json.loads(lock.read_text())["pid"] == os.getpid()
    except (OSError, ValueError, KeyError):
        return False


def race(start, done, seen):
    for trial in range(trials):
        folder = root / f"trial-{trial}"
        start.wait()
        try:
            with FolderLock(folder, "a racer"):
                first = names_me(folder / NAME)
                time.sleep(hold)
                seen.put((trial, os.getpid(), "held", first and names_me(folder / NAME)))
        except FolderInUseError as error:
            seen.put((trial, os.getpid(), "refused", str(error)))
        done.wait()


if __name__ == "__main__":
    context = multiprocessing.get_context("fork")
    start, done = context.Barrier(racers + 1, timeout=60), context.Barrier(racers + 1, timeout=60)
    seen = context.Queue()
    processes = [context.Process(target=race, args=(start, done, seen)) for _ in range(racers)]
    for process in processes:
        process.start()
    stale = time.time() - 2 * 60
    for trial in range(trials):
        folder = root / f"trial-{trial}"
        folder.mkdir()
        dead = {"host": "a lost machine", "pid": 1, "what": "a dead run", "since": stale}
        (folder / NAME).write_text(json.dumps(dead))
        os.utime(folder / NAME, (stale, stale))
        start.wait()
        done.wait()
        print(json.dumps([seen.get(timeout=60) for _ in range(racers)]), flush=True)
    for process in processes:
        process.join()
"""


def test_many_runs_racing_for_a_dead_owners_lock_leave_it_to_exactly_one(tmp_path):
    # In each trial the racers find one lock of a lost machine, two minutes without a heartbeat, and
    # start together; the one that gets it holds it for the rest of the trial, so every other one
    # must be refused, and the lock file must name the holder for all its hold.
    trials, racers = 30, 8
    race = subprocess.run(
        [sys.executable, "-c", RACE, str(tmp_path), str(trials), str(racers), "0.3"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert race.returncode == 0, race.stderr
    outcomes = [json.loads(line) for line in race.stdout.splitlines()]
    assert len(outcomes) == trials
    holders = [[(pid, named) for _, pid, what, named in seen if what == "held"] for seen in outcomes]
    doubles = {trial: held for trial, held in enumerate(holders) if len(held) != 1}
    assert not doubles, f"{len(doubles)} of {trials} trials had other than one holder: {doubles}"
    assert all(named for [(_, named)] in holders), "a holder's lock file named another process"
    refusals = [why for seen in outcomes for _, _, what, why in seen if what == "refused"]
    assert len(refusals) == trials * (racers - 1)
    assert all("is in use by process" in why or "at this moment" in why for why in refusals), refusals
    assert all(sorted((tmp_path / f"trial-{trial}").iterdir()) == [] for trial in range(trials))


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


@pytest.mark.slow  # two jobs and a holder process: make test-slow
@pytest.mark.filterwarnings("ignore::spark_ap.ConvergenceWarning")  # the 2-iteration run
def test_restart_on_a_shared_state_dir_keeps_the_saves_another_run_holds(spark, tmp_path, capsys):
    from spark_ap.app.job import main
    from tests.conftest import saves

    edges = edges_from_matrix(spark, similarity_matrix(np.random.RandomState(0).randn(12, 2)))
    edges.write.parquet(str(tmp_path / "edges.parquet"))
    shared = tmp_path / "shared-state"
    AffinityPropagation(damping=0.6, stateDir=str(shared), maxIter=2).run(edges)
    held = saves(shared)
    args = ["--input", str(tmp_path / "edges.parquet"), "--output", str(tmp_path / "run"), "--state-dir", str(shared)]
    other = subprocess.Popen([sys.executable, "-c", HOLD, str(shared)], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "held"  # another run writing its saves there
        assert main([*args, "--restart"]) == 2
        assert f"is in use by process {other.pid}" in capsys.readouterr().err
        assert saves(shared) == held and held  # none deleted by the refused restart
    finally:
        other.kill()
        other.wait()
        other.stdout.close()
    assert main([*args, "--restart"]) == 0  # its owner gone, the restart clears them and runs
    assert not shared.exists()  # and the finished run's saves, and the folder, are gone


def test_a_reentrant_lock_is_let_go_by_the_outer_block_and_any_other_second_lock_refused(tmp_path):
    with FolderLock(tmp_path, "outer", reentrant=True) as outer:
        with FolderLock(tmp_path, "inner"):
            assert json.loads((tmp_path / NAME).read_text())["token"] == outer.token
        assert (tmp_path / NAME).exists()  # the inner block did not let it go
    assert not (tmp_path / NAME).exists()
    with FolderLock(tmp_path, "a first writer"):
        with pytest.raises(FolderInUseError, match="a first writer"), FolderLock(tmp_path, "a second writer"):
            pass


@pytest.fixture
def read_only(tmp_path):
    """A folder no run may write in, even as root (made immutable there)."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
    elif subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("root here cannot make a folder read-only (chattr +i refused)")
    yield folder
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    folder.chmod(0o755)


def test_a_read_only_output_folder_is_refused_in_one_line_naming_it(read_only, tmp_path, capsys):
    from spark_ap.app.job import main

    edges = tmp_path / "edges.csv"
    edges.write_text("src,dst,similarity\n0,1,-1.0\n1,0,-1.0\n")
    assert main(["--input", str(edges), "--output", str(read_only)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"spark-ap: error: Cannot write in {read_only}") and "\n" not in err
    assert list(read_only.iterdir()) == []
