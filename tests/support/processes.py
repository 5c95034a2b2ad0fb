"""Process groups of the services the tests start (each in a session of its own): signal one, and
kill one and wait until none of it runs, so that no JVM outlives its test."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


class ProcessGroupError(RuntimeError):
    """Members of a process group still run after SIGKILL."""


def signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """Send ``sig`` to the process group led by ``proc``, if it still has members."""
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def group_alive(pgid: int) -> bool:
    """Whether process group ``pgid`` has a member that is not a zombie."""
    proc_dir = Path("/proc")
    if not proc_dir.is_dir():  # not Linux: zombies count as members
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    for stat in proc_dir.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process went away while we looked
        # After the command name: state, ppid, pgrp, ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def kill_group(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """SIGKILL the process group led by ``proc`` and wait until none of it runs.

    Raises
    ------
    ProcessGroupError
        If members of the group still run after ``timeout`` seconds.
    """
    signal_group(proc, signal.SIGKILL)
    proc.wait(timeout=timeout)
    deadline = time.monotonic() + timeout
    while group_alive(proc.pid):
        # Children the leader forked just before it died may have missed the first kill.
        signal_group(proc, signal.SIGKILL)
        if time.monotonic() > deadline:
            raise ProcessGroupError(f"process group {proc.pid} still has live members after SIGKILL")
        time.sleep(0.05)


def stop_group(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the process group led by ``proc``, give it ``grace`` seconds (0 kills at once), then
    :func:`kill_group` whatever is left."""
    signal_group(proc, signal.SIGTERM if grace > 0 else signal.SIGKILL)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    kill_group(proc)
