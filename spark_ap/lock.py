"""A lock on a folder that two runs must not write at once: the job's output folder, a state directory.

The lock is a file (``.spark-ap.lock``) created atomically (``O_CREAT | O_EXCL``) holding its owner
(host, process id, what it runs) and refreshed by a heartbeat thread every :data:`HEARTBEAT` seconds.
A second run finding it is refused with :class:`~spark_ap.FolderInUseError`, naming the owner,
unless the owner is gone: a heartbeat older than :data:`STALE` seconds (an owner on another machine
that died, or a process id reused), or a process of this host that no longer runs. A dead owner
therefore holds a folder for at most a minute, and a killed run's rerun (a DAG retry) takes it over
at once on the same host.

It works on file systems the driver sees as local folders (a disk, a shared mount); a folder given
as a URI (``hdfs://``, ``s3a://``) is not locked.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from pathlib import Path

from spark_ap.errors import FolderInUseError, InvalidInputError
from spark_ap.paths import local_path

log = logging.getLogger("spark_ap")

NAME = ".spark-ap.lock"
HEARTBEAT = 10.0  # seconds between two refreshes of the lock file
STALE = 60.0  # a lock not refreshed for this long is a dead owner's


class FolderLock:
    """Hold ``folder`` for the ``with`` block; ``what`` says who holds it, in the refusal of others."""

    def __init__(self, folder: str | os.PathLike, what: str) -> None:
        self.folder = Path(folder)
        self.path = self.folder / NAME
        self.what = what
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self._created = False

    def __enter__(self) -> FolderLock:
        if self.folder.exists() and not self.folder.is_dir():
            raise InvalidInputError(f"{self.folder} is a file, not a folder")
        self._created = not self.folder.exists()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise InvalidInputError(f"Cannot create the folder {self.folder}: {error.strerror or error}") from None
        owner = {"host": socket.gethostname(), "pid": os.getpid(), "what": self.what, "since": time.time()}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                held = _read(self.path)
                if not _dead(held, self.path):
                    raise FolderInUseError(_refusal(self.folder, held, self.path)) from None
                log.warning("taking over %s from %s, which is gone", self.path, _who(held))
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as file:
                json.dump(owner, file)
            break
        else:
            raise FolderInUseError(f"{self.folder} is being locked by another run at this moment; try again")
        self._beat = threading.Thread(target=self._heartbeat, name="spark-ap lock", daemon=True)
        self._beat.start()
        return self

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT):
            try:
                os.utime(self.path)
            except OSError:  # removed under us: nothing left to refresh
                return

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        held = _read(self.path)
        if held.get("pid") == os.getpid() and held.get("host") == socket.gethostname():
            self.path.unlink(missing_ok=True)
        if self._created and not any(self.folder.iterdir()):
            self.folder.rmdir()  # made only to hold the lock: a refused run leaves nothing behind


def lock_if_local(folder: str | None, what: str):
    """A :class:`FolderLock` on ``folder`` when it is a local path, else a lock that does nothing."""
    from contextlib import nullcontext

    local = local_path(folder) if folder else None
    return nullcontext() if local is None else FolderLock(local, what)


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # being written, or removed: its age decides


def _dead(held: dict, path: Path) -> bool:
    """Whether the owner of the lock ``path`` is gone: no heartbeat for :data:`STALE` seconds, or (on
    this host) its process no longer runs."""
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return True
    if age > STALE:
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


def _refusal(folder: Path, held: dict, path: Path) -> str:
    since = held.get("since")
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(since)) if isinstance(since, (int, float)) else "?"
    beat = time.time() - path.stat().st_mtime
    return (
        f"{folder} is in use by {_who(held)}, since {started} (last heartbeat {beat:.0f} s ago); wait for it "
        f"to finish or stop it. A lock whose owner is gone is taken over (after {STALE:.0f} s without "
        f"a heartbeat from another machine); {path} says who holds it."
    )
