"""Checksums of what spark-ap writes, checked before it is read again (a model, a run folder; the
state saves hash their part files in the executors, :mod:`spark_ap.run.state`).

Nothing here imports Spark.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


def sha256_json(value: dict) -> str:
    """The SHA-256 of ``value`` as canonical JSON (sorted keys), as written and as read back."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as lines:
        for block in iter(lambda: lines.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def local_digests(folder: Path, leave_out: tuple[str, ...] = ()) -> dict[str, list]:
    """``{path relative to folder: [size, sha256]}`` of every file under ``folder``, but hidden ones
    (``.`` names: Hadoop's .crc files, staging folders) and the top-level names in ``leave_out``."""
    found = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if not path.is_file() or any(part.startswith(".") for part in relative.parts):
            continue
        if relative.parts[0] in leave_out:
            continue
        found[relative.as_posix()] = [path.stat().st_size, sha256_file(path)]
    return found


def first_difference(written: dict[str, list], found: dict[str, list], where: str) -> str | None:
    """What is wrong with the files ``found`` in ``where``, naming the first file not as ``written``
    (each ``[size]`` or ``[size, sha256]``); None when they match."""
    for name in sorted(set(written) | set(found)):
        if name not in found:
            return f"{where}/{name} is missing"
        if name not in written:
            return f"{where}/{name} was not written with it"
        if found[name] != written[name][: len(found[name])]:
            size, saved_size = found[name][0], written[name][0]
            how = f"{size} bytes, {saved_size} when written" if size != saved_size else "its content changed"
            return f"{where}/{name} is damaged: {how}"
    return None
