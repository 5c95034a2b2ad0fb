"""Files on any file system: one rule for every path spark-ap takes.

An input, an output or output root, a state dir, a model, a checkpoint location: each is either a
local path (``/data/runs``, ``runs/x``, ``file:///data/runs``) or the URI of a Hadoop file system
(``hdfs://``, ``s3a://``, ``gs://``, ``abfss://``, ...). A local path is the driver's own disk and
works without Spark (:mod:`spark_ap.files.local`); a URI is read and written through Hadoop's
FileSystem API in the session's JVM (:mod:`spark_ap.files.hadoop`), never through ``pathlib``, so a
URI never becomes a local folder named after it. Both backends have the methods of :class:`Files`,
and their errors are Python's: ``FileNotFoundError``, ``FileExistsError``, ``PermissionError``,
else ``OSError`` with the file system's one-line reason.

What each file system guarantees is :attr:`Files.renames_atomically`: a local disk and HDFS rename a
file or a folder in one step, so a file written under a temporary name and renamed appears whole;
an object store (S3, GCS, ...) copies, but writes one object in one step, so there a file appears
whole when its write is closed, and a folder is complete only once the marker its writer puts last
is there (a run folder's ``summary.json``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from spark_ap.paths import local_path

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


class Files(Protocol):
    """The file operations spark-ap needs, on one file system; paths are strings (local or URIs)."""

    renames_atomically: bool

    def kind(self, path: str) -> str | None:
        """``"file"``, ``"dir"``, or None when nothing is there."""

    def names(self, folder: str) -> list[str]:
        """The names in ``folder``, sorted."""

    def read(self, path: str) -> bytes: ...

    def write(self, path: str, data: bytes, *, exclusive: bool = False) -> None:
        """Write ``path`` whole (readers see the old content or the new one, never a part); with
        ``exclusive``, fail with ``FileExistsError`` if it exists (one writer wins a race)."""

    def mkdirs(self, folder: str) -> None: ...

    def rename(self, source: str, target: str) -> None:
        """Move ``source`` to ``target``, which must not exist."""

    def delete(self, path: str) -> None:
        """Delete a file, or a folder with everything in it; nothing there is no error."""

    def modified(self, path: str) -> float:
        """When ``path`` was last written or touched, in seconds since the epoch."""

    def touch(self, path: str) -> None:
        """Make ``path``'s modification time now, its content unchanged."""

    def listing(self, path: str) -> dict[str, list[int]]:
        """``{path relative to path: [size, modified in ms]}`` of every data file under ``path`` (a file:
        itself, as ``""``), without the ``_`` and ``.`` files and folders Hadoop's input formats skip:
        what a table at ``path`` is read from, from the file system's listing alone."""

    def digests(self, folder: str, leave_out: tuple[str, ...] = ()) -> dict[str, list]:
        """``{path relative to folder: [size, sha256]}`` of its files (see
        :func:`spark_ap.checksums.local_digests` for what is left out)."""


def is_uri(path: str) -> bool:
    """Whether ``path`` names a file system other than the driver's own disk (``file://`` does not)."""
    return local_path(str(path)) is None


def join(folder: str, *names: str) -> str:
    """``folder/name/...``, for local paths and URIs alike."""
    return "/".join([str(folder).rstrip("/"), *names])


def parent(path: str) -> str:
    """The folder holding ``path`` (a URI's parent is a URI)."""
    return str(path).rstrip("/").rsplit("/", 1)[0]


def basename(path: str) -> str:
    return str(path).rstrip("/").rsplit("/", 1)[-1]


def files_for(path: str, spark: SparkSession | None = None) -> Files:
    """The files of ``path``'s file system: the driver's disk for a local path, else Hadoop's
    FileSystem for that URI through ``spark`` (the active session when None).

    Raises
    ------
    InvalidInputError
        A URI without a session to read it, a scheme no file system on Spark's classpath serves
        (naming the package that does), or a file system that cannot be reached.
    """
    from spark_ap.files.local import LocalFiles

    if not is_uri(path):
        return LocalFiles()
    from spark_ap.files.hadoop import HadoopFiles

    return HadoopFiles(path, spark)
