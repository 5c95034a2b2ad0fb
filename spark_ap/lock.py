"""A lock on a folder that two runs must not write at once: the job's output folder, a state directory.

The lock is a file (``.spark-ap.lock``) created atomically (``O_CREAT | O_EXCL``) holding its owner
(host, process id, what it runs, and a token of its own) and refreshed by a heartbeat thread every
:data:`HEARTBEAT` seconds. A second run finding it is refused with :class:`~spark_ap.FolderInUseError`,
naming the owner, unless the owner is gone: a heartbeat older than :data:`STALE` seconds (an owner on
another machine that died, or a process id reused), or a process of this host that no longer runs. A
dead owner therefore holds a folder for at most a minute, and a killed run's rerun (a DAG retry)
takes it over at once on the same host. "This host" is the host name and the process namespace
together: two containers with one host name do not see each other's processes, so between them
only the heartbeat tells.

Taking a dead owner's lock over is a race of its own: every run that finds it decides the owner is
gone. Only the run that creates the takeover marker ``.spark-ap.lock.takeover-<token>.<n>`` first
removes that lock; the others wait and look again, and then find the new owner's. Owners are told
apart by their token, never by host and pid: an owner that was paused past the heartbeat window and
wakes up after its lock was taken over finds another token there, and neither refreshes nor removes
that lock (:attr:`FolderLock.lost` says so).

A lock taken with ``reentrant=True`` lets the same thread lock that folder again: such an inner
``with`` (the estimator's, inside the job's hold on a shared state dir) neither waits nor lets go.
Any other second lock on a held folder is refused, in this process as in another.

The folder may be local or a URI (:mod:`spark_ap.files`). On a local disk and on HDFS the lock file's
creation is atomic (``O_EXCL``; the namenode's create without overwrite), so of two runs exactly one
gets it. An object store (S3, GCS) checks that the lock is absent before it writes it, so two runs
starting within the same fraction of a second may both get it there: docs/job.md's table says so.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import random
import re
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from spark_ap.errors import FolderInUseError, InvalidInputError
from spark_ap.files import Files, files_for, join

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger("spark_ap")

NAME = ".spark-ap.lock"
TAKEOVER = f"{NAME}.takeover-"  # + the dead lock's key + "." + a generation: see _claim
HEARTBEAT = 10.0  # seconds between two refreshes of the lock file
STALE = 60.0  # a lock not refreshed for this long is a dead owner's
TRIES = 40  # looks at a lock that is being written or taken over, before giving up
PAUSE = 0.05  # seconds (up to twice that) between two such looks
GENERATIONS = 100  # takeover markers of one lock left behind by runs that died taking it over
# (folder, thread) -> how many ``with`` blocks of that thread hold it, for locks taken reentrant=True.
_HELD: dict[tuple[str, int], int] = {}


class _Seen(NamedTuple):
    """A lock file as one look found it."""

    owner: dict  # its JSON; empty while its creator is writing it, or unreadable
    key: str  # the owner's token, or a digest of the file for a lock without one
    age: float  # seconds since its last heartbeat


class FolderLock:
    """Hold ``folder`` for the ``with`` block; ``what`` says who holds it, in the refusal of others.

    ``spark`` reads a folder given as a URI (the active session when None); a local folder needs none.

    Attributes
    ----------
    token : str
        This lock's own name, in the lock file: what tells it from any other owner's.
    lost : bool
        Whether the lock was taken from this run while it held it (it was paused past
        :data:`STALE`): a warning says so, and the lock file, another run's now, is left alone.
    """

    def __init__(
        self, folder: str | os.PathLike, what: str, spark: SparkSession | None = None, *, reentrant: bool = False
    ) -> None:
        self.folder = str(folder)
        self.path = join(self.folder, NAME)
        self.what = what
        self.token = uuid.uuid4().hex
        self.lost = False
        self._spark = spark
        self._files: Files | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self._created = False
        self._key = (self.folder.rstrip("/"), threading.get_ident())
        self._reentrant = reentrant

    def __enter__(self) -> FolderLock:
        if self._key in _HELD:  # this thread holds it already: an outer block lets go of it
            _HELD[self._key] += 1
            return self
        files = self._files = files_for(self.folder, self._spark)
        kind = files.kind(self.folder)
        if kind == "file":
            raise InvalidInputError(f"{self.folder} is a file, not a folder")
        self._created = kind is None
        try:
            files.mkdirs(self.folder)
        except OSError as error:
            raise InvalidInputError(f"Cannot create the folder {self.folder}: {error.strerror or error}") from None
        owner = {
            "host": socket.gethostname(),
            "space": _space(),
            "pid": os.getpid(),
            "what": self.what,
            "since": time.time(),
            "token": self.token,
        }
        data = json.dumps(owner).encode()
        for _ in range(TRIES):
            if self._acquire(files, data):
                break
        else:
            raise FolderInUseError(f"{self.folder} is being locked by another run at this moment; try again")
        _clean(files, self.folder)
        if self._reentrant:
            _HELD[self._key] = 1
        self._beat = threading.Thread(target=self._heartbeat, name="spark-ap lock", daemon=True)
        self._beat.start()
        return self

    def _acquire(self, files: Files, data: bytes) -> bool:
        """One try at the lock: whether this run has it now. Raises the refusal when a live owner has it."""
        try:
            files.write(self.path, data, exclusive=True)
            return True
        except FileExistsError:
            pass
        except PermissionError as error:
            raise InvalidInputError(
                f"Cannot write in {self.folder} ({error.strerror or error}): a run writes its lock "
                f"({NAME}) and its files there; choose a folder it may write, or give it that right"
            ) from None
        seen = _look(files, self.path)
        if seen is None:
            return False  # let go since: try again at once
        if not _dead(seen):
            if seen.owner:
                raise FolderInUseError(_refusal(self.folder, seen, self.path)) from None
            _pause()  # being written by its creator: look again when it says who it is
        elif not _take_over(files, self.folder, seen.key):
            _pause()  # another run is taking it over: its lock will be there in a moment
        return False

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT):
            try:
                if not self._still_held():
                    return
                # A takeover may fall between the look and the touch: it refreshes the new owner's
                # lock, which that owner made a moment ago, once.
                self._files.touch(self.path)
            except Exception:  # the session is gone: nothing left to refresh
                return

    def _still_held(self) -> bool:
        """Whether the lock file is still this lock's; if not, say it was lost, once."""
        seen = _look(self._files, self.path)
        if seen is not None and seen.key == self.token:
            return True
        if not self.lost:
            self.lost = True
            log.warning(
                "this run (%s) no longer holds %s: %s. A lock goes to another run after %.0f s without "
                "a heartbeat: was this one paused? It leaves that lock alone",
                self.what,
                self.path,
                "it was removed" if seen is None else f"{_who(seen.owner)} took it over",
                STALE,
            )
        return False

    def __exit__(self, *exc) -> None:
        if self._key in _HELD:
            _HELD[self._key] -= 1
            if _HELD[self._key]:
                return  # an inner block of this thread's: the outer one lets go
            del _HELD[self._key]
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        files = self._files
        if self._still_held():
            # Were this run paused between the look and the delete for over STALE seconds, the lock
            # removed could be its next owner's: the look is the last thing before the delete.
            files.delete(self.path)
        _clean(files, self.folder)
        if self._created and not files.names(self.folder):
            files.delete(self.folder)  # made only to hold the lock: a refused run leaves nothing behind


def folder_lock(folder: str | None, what: str, spark: SparkSession | None = None):
    """A :class:`FolderLock` on ``folder``, or a lock that does nothing when there is no folder."""
    from contextlib import nullcontext

    return nullcontext() if not folder else FolderLock(folder, what, spark)


def _look(files: Files, path: str) -> _Seen | None:
    """The lock at ``path`` as it is now; None when there is none."""
    try:
        data = files.read(path)
        # After the content: were the file replaced in between, the age is the newer one's, which
        # makes its owner look alive rather than a live owner look dead.
        age = time.time() - files.modified(path)
    except FileNotFoundError:
        return None
    except OSError:
        data, age = b"", _age(files, path)  # unreadable: its age decides
        if age is None:
            return None
    try:
        owner = json.loads(data)
    except ValueError:
        owner = {}
    owner = owner if isinstance(owner, dict) else {}
    token = owner.get("token")
    # A file without a token of its own (being written, or an older spark-ap's) is known by its content.
    key = token if isinstance(token, str) and re.fullmatch(r"[0-9a-f]{32}", token) else _digest(data)
    return _Seen(owner, key, age)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


def _age(files: Files, path: str) -> float | None:
    """Seconds since ``path`` was last written or refreshed; None when it is gone."""
    try:
        return time.time() - files.modified(path)
    except FileNotFoundError:
        return None


def _dead(seen: _Seen) -> bool:
    """Whether the owner of a lock is gone: no heartbeat for :data:`STALE` seconds, or (in this
    host's process namespace) its process no longer runs."""
    if seen.age > STALE:
        return True
    pid = seen.owner.get("pid")
    return _here(seen.owner) and isinstance(pid, int) and not _running(pid)


def _here(owner: dict) -> bool:
    """Whether ``owner``'s process id names a process of this one's namespace: the same host name
    and the same :func:`_space`. A lock without a space (an older spark-ap's) is not trusted."""
    return owner.get("host") == socket.gethostname() and owner.get("space") == _space()


@functools.cache
def _space() -> str:
    """Which processes this one's process ids name: its pid namespace and the kernel's boot.

    Two containers may share a host name, and a machine's initial pid namespace has the same
    number on every machine: both are needed. Empty where /proc has neither (not Linux).
    """
    parts = []
    try:
        parts.append(os.readlink("/proc/self/ns/pid"))
    except OSError:
        pass
    try:
        parts.append("boot:" + Path("/proc/sys/kernel/random/boot_id").read_text().strip())
    except OSError:
        pass
    return " ".join(parts)


def _take_over(files: Files, folder: str, key: str) -> bool:
    """Remove the dead lock ``key`` of ``folder``, unless another run is at it: whether this run was
    the one to look (the lock may be gone or alive again by then; the caller looks again)."""
    path = join(folder, NAME)
    marker = _claim(files, folder, key)
    if marker is None:
        return False
    try:
        seen = _look(files, path)
        if seen is not None and seen.key == key and _dead(seen):
            log.warning("taking over %s from %s, which is gone", path, _who(seen.owner))
            # The key was there a moment ago, and only the marker's maker removes a lock of that
            # key. Left open between that look and the delete: the owner itself, paused past
            # STALE, waking up in that instant and letting its lock go, and a new run making its
            # lock in the same instant, which would then be the lock removed.
            files.delete(path)
        return True
    finally:
        # The lock of that key is gone now or alive: a run that makes the marker again after
        # this looks first, and finds another key or a live owner.
        files.delete(marker)


def _claim(files: Files, folder: str, key: str) -> str | None:
    """The path of the marker this run made to take the lock ``key`` of ``folder`` over, or None when
    another run made it first.

    A marker is held for two file operations; one older than :data:`STALE` is a run's that died
    in between, and the next generation's marker is raced for instead.
    """
    mine = json.dumps({"host": socket.gethostname(), "pid": os.getpid()}).encode()
    for generation in range(1, GENERATIONS + 1):
        marker = join(folder, f"{TAKEOVER}{key}.{generation}")
        try:
            files.write(marker, mine, exclusive=True)
            return marker
        except FileExistsError:
            age = _age(files, marker)
            if age is None or age <= STALE:
                return None
    return None


def _clean(files: Files, folder: str) -> None:
    """Remove the takeover markers of locks that are gone (their takers died, or were left
    behind by one that looked later), so that they do not pile up nor keep the folder.

    The folder is listed before the lock is looked at: a lock of a marker's key that is gone by
    then never comes back (keys are unique tokens), and one that is there keeps its markers.
    """
    try:
        markers = [name for name in files.names(folder) if name.startswith(TAKEOVER)]
    except FileNotFoundError:
        return  # the folder went with everything in it
    if not markers:
        return
    seen = _look(files, join(folder, NAME))
    for name in markers:
        if seen is None or name[len(TAKEOVER) :].rsplit(".", 1)[0] != seen.key:
            files.delete(join(folder, name))


def _pause() -> None:
    """Wait a little, a different little for each run, so that waiting runs do not look all at once."""
    time.sleep(PAUSE * (1 + random.random()))


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


def _refusal(folder: str, seen: _Seen, path: str) -> str:
    since = seen.owner.get("since")
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(since)) if isinstance(since, (int, float)) else "?"
    return (
        f"{folder} is in use by {_who(seen.owner)}, since {started} (last heartbeat {seen.age:.0f} s ago); "
        f"wait for it to finish or stop it. A lock whose owner is gone is taken over (after {STALE:.0f} s "
        f"without a heartbeat from another machine or container); {path} says who holds it."
    )
