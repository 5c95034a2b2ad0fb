"""Which paths the driver reads and writes as its own files (a local disk, a mount)."""

from __future__ import annotations

import os
from pathlib import Path


def local_path(path: str) -> str | None:
    """``path`` as a path of the driver's file system (a ``file://`` URI without its scheme), or None
    for a URI of another file system (``hdfs://``, ``s3a://``, ...)."""
    local = path.removeprefix("file://")
    return None if "://" in local else local


def dangling_link(path: str | os.PathLike) -> str | None:
    """What a symbolic link to nothing is (``"a link to <target>, which does not exist"``), or None for any
    other path: such a path neither exists (``Path.exists``) nor can be made (``mkdir``: "File exists")."""
    p = Path(path)
    return f"a link to {os.readlink(p)}, which does not exist" if p.is_symlink() and not p.exists() else None
