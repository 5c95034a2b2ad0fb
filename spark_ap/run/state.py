"""Durable saves of the edge state, so that a killed run resumes where it stopped.

A save is a folder ``iteration-000040`` in the state directory: the edge state
as Parquet plus ``_spark_ap_state.json`` with the iteration number, the history
so far, the last iteration's convergence counts and the run's identity (its
params and a fingerprint of its input graph). It is written under a temporary
name and renamed when complete, so a kill at any moment leaves either the
previous save or the new one, never half of one. The two newest saves are kept.

A save that lies is caught before it is used: the JSON file carries the
SHA-256 of its own content and the size and SHA-256 of every Parquet part
file (hashed by the executors, where the files are). A save whose JSON does
not parse or match its hash, whose part files are missing, truncated, changed
or joined by others, or whose JSON belongs to another save, is set aside
(renamed ``damaged-iteration-...``) with a warning naming the file, and the run
goes on from the save before it, or from the start: never from a wrong state.
Only a hash that was computed and differs sets a save aside: a hash job that
fails (a lost executor, an out-of-memory) is retried, and when it keeps failing
the run stops in one line with every save where it was.

Everything goes through Hadoop's FileSystem API, so the directory may be local
(for ``local[*]`` or a one-machine cluster) or on HDFS, S3 and the like (needed
when executors on several machines write the Parquet files).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from py4j.protocol import Py4JError
from pyspark.errors import PySparkException
from pyspark.sql import DataFrame, SparkSession

from spark_ap.checksums import first_difference, sha256_file, sha256_json
from spark_ap.compat import frame_from_arrow, spark_context
from spark_ap.errors import SaveUnreadableError, StateMismatchError, reason

log = logging.getLogger("spark_ap")

META = "_spark_ap_state.json"
KEPT = 2  # saves kept: the newest, and the one before it in case the newest is damaged
_NESTED = re.compile(r"(level|attempt)-\d+")
_SAVE = re.compile(r"iteration-(\d{6,})")
_DAMAGED = "damaged-"  # a save set aside
_PARTIAL = "partial-"  # a save being written
# Rows per part file of a save Spark writes: at most about 55 bytes a row, so a part file stays far
# below the 2 GB that ``binaryFiles`` (which hashes the files of a save off the local file system)
# can hold, and a hash task's memory stays small.
ROWS_PER_FILE = 4_000_000
# Tries of a hash job before the run stops: a failed job is a fault of the cluster, not of the save.
HASH_TRIES = 3
# What a failed hash job raises on the driver: the JVM's errors through Py4J and an executor's
# Python errors (PySparkException), and a broken gateway.
_FAILED_JOB = (Py4JError, PySparkException, ConnectionError)


class DamagedSaveError(Exception):
    """A save whose files do not match what was written; the message names the file."""


@dataclass
class Saved:
    """One save read back: the state after ``iteration`` and what led there."""

    iteration: int
    history: list[tuple[int, int, int]]
    last: dict | None  # exemplars, changed and min_run of that iteration; None before the first
    state: DataFrame


class StateStore:
    """The saves of one run in ``path``.

    Parameters
    ----------
    spark : SparkSession
    path : str
        A directory URI or local path; created on the first save.
    identity : dict
        What makes two runs the same run (params and input fingerprint),
        JSON-serialisable. A save made under another identity is refused.
    """

    def __init__(self, spark: SparkSession, path: str, identity: dict) -> None:
        self.spark = spark
        self.path = path.rstrip("/")
        self.identity = json.loads(json.dumps(identity))  # as it will read back from JSON
        # Saves go through Hadoop's FileSystem in the driver's JVM, and are hashed by executors.
        sc = spark_context(spark, "stateDir (saves and resumes)")
        jvm = sc._jvm
        self._Path = jvm.org.apache.hadoop.fs.Path
        self._io = jvm.org.apache.commons.io.IOUtils
        self._root = self._Path(self.path)
        self._fs = self._root.getFileSystem(sc._jsc.hadoopConfiguration())

    def _uri(self, name: str) -> str:
        return f"{self.path}/{name}"

    def _saves(self) -> list[tuple[int, str]]:
        """(iteration, folder name) of the complete saves, oldest first."""
        if not self._fs.exists(self._root):
            return []
        found = []
        for status in self._fs.listStatus(self._root):
            name = status.getPath().getName()
            match = _SAVE.fullmatch(name)
            if match and self._fs.exists(self._Path(self._uri(name), META)):
                found.append((int(match.group(1)), name))
        return sorted(found)

    def _meta(self, name: str) -> dict:
        stream = self._fs.open(self._Path(self._uri(name), META))
        try:
            return json.loads(self._io.toString(stream, "UTF-8"))
        finally:
            stream.close()

    def load(self) -> Saved | None:
        """The newest intact save of this run, or None when there is none; damaged saves are set aside.

        Raises
        ------
        StateMismatchError
            The newest intact save was made with other params or another input.
        """
        for iteration, name in reversed(self._saves()):
            try:
                meta = self._verified(name, iteration)
            except DamagedSaveError as error:
                self._set_aside(name, error)
                continue
            if meta["identity"] != self.identity:
                raise StateMismatchError(
                    f"The state in {self.path} (saved at iteration {iteration}) belongs to another run: "
                    f"{_differences(meta['identity'], self.identity)}. Delete that folder, point the run at "
                    "another one, or start fresh (spark-ap --restart)."
                )
            return Saved(
                iteration=meta["iteration"],
                history=[tuple(row) for row in meta["history"]],
                last=meta["last"],
                state=self.spark.read.parquet(self._uri(name)),
            )
        return None

    def _verified(self, name: str, iteration: int) -> dict:
        """The save ``name``'s JSON, once it and every part file are what was written."""
        meta_file = f"{self._uri(name)}/{META}"
        try:
            meta = self._meta(name)
        except (ValueError, UnicodeDecodeError, Py4JError) as error:  # Py4J: Hadoop's own checksum failed
            raise DamagedSaveError(f"{meta_file} cannot be read ({reason(error)})") from None
        if not isinstance(meta, dict) or meta.pop("sha256", None) != sha256_json(meta):
            raise DamagedSaveError(f"{meta_file} does not match its checksum (changed, or written without one)")
        if meta.get("iteration") != iteration:
            raise DamagedSaveError(f"{meta_file} describes iteration {meta.get('iteration')}, not {iteration}")
        written = meta["files"]
        # Names and sizes first, from the listing (which names a missing or truncated file even where
        # the file system's own checksum would fail the read), then every file's content.
        where = self._uri(name)
        listed = {part: [size] for part, size in self._listing(where).items()}
        # ``or``: the contents are hashed only once the names and sizes are right.
        problem = first_difference(written, listed, where) or first_difference(written, self._digest(where), where)
        if problem:
            raise DamagedSaveError(problem)
        return meta

    def _listing(self, folder: str) -> dict[str, int]:
        """``{part file: size}`` of ``folder``, without the ``_`` and ``.`` files, as Hadoop's input formats."""
        return {
            status.getPath().getName(): status.getLen()
            for status in self._fs.listStatus(self._Path(folder))
            if not status.getPath().getName().startswith(("_", "."))
        }

    def _digest(self, folder: str) -> dict[str, list]:
        """``{part file: [size, sha256]}`` of the Parquet files in ``folder``, hashed where they are
        (Hadoop's input formats skip the ``_`` and ``.`` files: the JSON, _SUCCESS, checksums).

        Raises
        ------
        SaveUnreadableError
            The hash job failed :data:`HASH_TRIES` times; nothing is known about the save.
        """
        for attempt in range(1, HASH_TRIES + 1):
            try:
                files = self._hashed(folder)
                break
            except _FAILED_JOB as error:
                if attempt == HASH_TRIES:
                    raise SaveUnreadableError(
                        f"The part files of {folder} could not be hashed in {HASH_TRIES} tries "
                        f"({reason(error)}); no save was set aside or changed: rerun once the cluster is healthy."
                    ) from None
                log.warning("hashing the part files of %s failed (%s); trying again", folder, reason(error))
        return {path.rsplit("/", 1)[-1]: [size, sha] for path, size, sha in files}

    def _hashed(self, folder: str) -> list[tuple[str, int, str]]:
        """(path, size, sha256) of each part file of ``folder``, computed by the executors: read as a
        stream of blocks on a local file system, else whole through ``binaryFiles`` (the part files a
        save writes there hold at most :data:`ROWS_PER_FILE` rows)."""
        sc = self.spark.sparkContext
        if self._fs.getUri().getScheme() != "file":
            return sc.binaryFiles(folder).map(_file_digest).collect()
        local = Path(self._fs.makeQualified(self._Path(folder)).toUri().getPath())
        paths = [str(local / name) for name in sorted(self._listing(folder))]
        if not paths:
            return []
        return sc.parallelize(paths, min(len(paths), sc.defaultParallelism)).map(_stream_digest).collect()

    def _set_aside(self, name: str, error: DamagedSaveError) -> None:
        """Rename a damaged save out of the way (kept for inspection; :meth:`clear` deletes it)."""
        aside = f"{_DAMAGED}{name}"
        self._fs.delete(self._Path(self._uri(aside)), True)
        self._fs.rename(self._Path(self._uri(name)), self._Path(self._uri(aside)))
        log.warning(
            "the saved state %s is damaged: %s; it is set aside as %s and the run goes on from the save "
            "before it, if any, else from the start",
            self._uri(name),
            error,
            aside,
        )

    def save(self, iteration: int, history: list, last: dict | None, state: DataFrame | pa.Table) -> DataFrame:
        """Write ``state`` as the save of ``iteration``, drop older saves, and return it read back from disk.

        An Arrow table (the local engine's state, on the driver) is written by
        the driver itself when the directory is on its local file system, and
        by Spark otherwise.
        """
        name = f"iteration-{iteration:06d}"
        # Not named "_..." or ".": Hadoop's input formats (which hash the part files) skip such folders.
        staging = self._uri(f"{_PARTIAL}{name}")
        self._fs.delete(self._Path(staging), True)  # the leftovers of a killed save
        if isinstance(state, pa.Table) and self._fs.getUri().getScheme() == "file":
            folder = Path(self._fs.makeQualified(self._Path(staging)).toUri().getPath())
            folder.mkdir(parents=True)
            pq.write_table(state, folder / "part-00000.snappy.parquet", compression="snappy")
        else:
            frame = frame_from_arrow(self.spark, state) if isinstance(state, pa.Table) else state
            frame.write.option("maxRecordsPerFile", ROWS_PER_FILE).parquet(staging)
        meta = {
            "iteration": iteration,
            "history": history,
            "last": last,
            "identity": self.identity,
            "files": self._digest(staging),
        }
        meta["sha256"] = sha256_json(meta)
        stream = self._fs.create(self._Path(staging, META), True)
        try:
            stream.write(bytearray(json.dumps(meta, indent=1).encode()))
        finally:
            stream.close()
        if not self._fs.rename(self._Path(staging), self._Path(self._uri(name))):
            raise OSError(f"Could not rename {staging} to {self._uri(name)}")
        for _, older in self._saves()[:-KEPT]:
            self._fs.delete(self._Path(self._uri(older)), True)
        log.info("saved the state of iteration %d in %s", iteration, self._uri(name))
        return self.spark.read.parquet(self._uri(name))

    def clear(self) -> None:
        """Delete every save, finished or not, and then the directory if nothing else is in it.

        Only what :meth:`save` writes is deleted, so a mistyped path cannot take
        anything else with it; that includes the stores of a multi-level run's
        levels and attempts (``level-N``, ``attempt-N``), cleared the same way.
        """
        if not self._fs.exists(self._root):
            return
        for status in self._fs.listStatus(self._root):
            name = status.getPath().getName()
            if _SAVE.fullmatch(name.removeprefix(_PARTIAL).removeprefix(_DAMAGED)):
                self._fs.delete(status.getPath(), True)
            elif status.isDirectory() and _NESTED.fullmatch(name):
                StateStore(self.spark, self._uri(name), {}).clear()
        self.remove_if_empty()

    def remove_if_empty(self) -> None:
        """Delete the directory if nothing is in it. Not recursive: a run that has just locked it
        (its lock file inside) keeps it."""
        try:
            if self._fs.exists(self._root) and len(self._fs.listStatus(self._root)) == 0:
                self._fs.delete(self._root, False)
        except Py4JError:
            pass  # no longer empty: another run's now


def _file_digest(item: tuple[str, bytes]) -> tuple[str, int, str]:
    """(path, size, sha256) of one file as ``binaryFiles`` gives it; runs in an executor."""
    path, content = item
    return path, len(content), hashlib.sha256(content).hexdigest()


def _stream_digest(path: str) -> tuple[str, int, str]:
    """(path, size, sha256) of one local file, read a block at a time; runs in an executor."""
    local = Path(path)
    return path, local.stat().st_size, sha256_file(local)


def _differences(saved: dict, now: dict, prefix: str = "") -> str:
    """'damping 0.9 then, 0.7 now; ...' for every leaf that differs."""
    out = []
    for key in sorted(set(saved) | set(now)):
        a, b = saved.get(key), now.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            inner = _differences(a, b, f"{prefix}{key}.")
            if inner:
                out.append(inner)
        elif a != b:
            out.append(f"{prefix}{key} {a!r} then, {b!r} now")
    return "; ".join(out)
