"""A lock on a folder that two runs must not write at once: the job's output folder, a state directory.

The lock is a file (``.spark-ap.lock``) created atomically (``O_CREAT | O_EXCL``) holding its owner
(host, process id, what it runs) and refreshed by a heartbeat thread every :data:`HEARTBEAT` seconds.
A second run finding it is refused with :class:`~spark_ap.FolderInUseError`, naming the owner,
unless the owner is gone: a heartbeat older than :data:`STALE` seconds (an owner on another machine
that died, or a process id reused), or a process of this host that no longer runs. A dead owner
therefore holds a folder for at most a minute, and a killed run's rerun (a DAG retry) takes it over
at once on the same host.

The folder may be local or a URI (:mod:`spark_ap.files`). On a local disk and on HDFS the lock file's
creation is atomic (``O_EXCL``; the namenode's create without overwrite), so of two runs exactly one
gets it. An object store (S3, GCS) checks that the lock is absent before it writes it, so two runs
starting within the same fraction of a second may both get it there: docs/job.md's table says so.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from spark_ap.errors import FolderInUseError, InvalidInputError
from spark_ap.files import Files, files_for, join

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger("spark_ap")

NAME = ".spark-ap.lock"
HEARTBEAT = 10.0  # seconds between two refreshes of the lock file
STALE = 60.0  # a lock not refreshed for this long is a dead owner's


class FolderLock:
    """Hold ``folder`` for the ``with`` block; ``what`` says who holds it, in the refusal of others.

    ``spark`` reads a folder given as a URI (the active session when None); a local folder needs none.
    """

    def __init__(self, folder: str | os.PathLike, what: str, spark: SparkSession | None = None) -> None:
        self.folder = str(folder)
        self.path = join(self.folder, NAME)
        self.what = what
        self._spark = spark
        self._files: Files | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self._created = False

    def __enter__(self) -> FolderLock:
        files = self._files = files_for(self.folder, self._spark)
        kind = files.kind(self.folder)
        if kind == "file":
            raise InvalidInputError(f"{self.folder} is a file, not a folder")
        self._created = kind is None
        try:
            files.mkdirs(self.folder)
        except OSError as error:
            raise InvalidInputError(f"Cannot create the folder {self.folder}: {error.strerror or error}") from None
        owner = {"host": socket.gethostname(), "pid": os.getpid(), "what": self.what, "since": time.time()}
        for _ in range(3):
            try:
                files.write(self.path, json.dumps(owner).encode(), exclusive=True)
            except FileExistsError:
                held = _read(files, self.path)
                if not _dead(files, held, self.path):
                    raise FolderInUseError(_refusal(files, self.folder, held, self.path)) from None
                log.warning("taking over %s from %s, which is gone", self.path, _who(held))
                files.delete(self.path)
                continue
            break
        else:
            raise FolderInUseError(f"{self.folder} is being locked by another run at this moment; try again")
        self._beat = threading.Thread(target=self._heartbeat, name="spark-ap lock", daemon=True)
        self._beat.start()
        return self

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT):
            try:
                self._files.touch(self.path)
            except Exception:  # removed under us, or the session is gone: nothing left to refresh
                return

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        files = self._files
        held = _read(files, self.path)
        if held.get("pid") == os.getpid() and held.get("host") == socket.gethostname():
            files.delete(self.path)
        if self._created and not files.names(self.folder):
            files.delete(self.folder)  # made only to hold the lock: a refused run leaves nothing behind


def folder_lock(folder: str | None, what: str, spark: SparkSession | None = None):
    """A :class:`FolderLock` on ``folder``, or a lock that does nothing when there is no folder."""
    from contextlib import nullcontext

    return nullcontext() if not folder else FolderLock(folder, what, spark)


def _read(files: Files, path: str) -> dict:
    try:
        held = json.loads(files.read(path))
    except (OSError, ValueError):
        return {}  # being written, or removed: its age decides
    return held if isinstance(held, dict) else {}


def _age(files: Files, path: str) -> float | None:
    """Seconds since the lock ``path`` was last refreshed; None when it is gone."""
    try:
        return time.time() - files.modified(path)
    except FileNotFoundError:
        return None


def _dead(files: Files, held: dict, path: str) -> bool:
    """Whether the owner of the lock ``path`` is gone: no heartbeat for :data:`STALE` seconds, or (on
    this host) its process no longer runs."""
    age = _age(files, path)
    if age is None or age > STALE:
        return True
    pid = held.get("pid")
    return held.get("host") == socket.gethostname() and isinstance(pid, int) and not _running(pid)


def _running(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, killed but not yet reaped by its parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        # /proc/<pid>/stat: "pid (name) state ...", the name may hold spaces and parentheses.
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc (not Linux): the signal said it exists


def _who(held: dict) -> str:
    return f"process {held.get('pid', '?')} on {held.get('host', '?')} ({held.get('what', 'a spark-ap run')})"


def _refusal(files: Files, folder: str, held: dict, path: str) -> str:
    since = held.get("since")
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(since)) if isinstance(since, (int, float)) else "?"
    age = _age(files, path)
    beat = "the lock was let go just now" if age is None else f"last heartbeat {age:.0f} s ago"
    return (
        f"{folder} is in use by {_who(held)}, since {started} ({beat}); wait for it "
        f"to finish or stop it. A lock whose owner is gone is taken over (after {STALE:.0f} s without "
        f"a heartbeat from another machine); {path} says who holds it."
    )
