"""Which paths the driver reads and writes as its own files (a local disk, a mount)."""

from __future__ import annotations


def local_path(path: str) -> str | None:
    """``path`` as a path of the driver's file system (a ``file://`` URI without its scheme), or None
    for a URI of another file system (``hdfs://``, ``s3a://``, ...)."""
    local = path.removeprefix("file://")
    return None if "://" in local else local
