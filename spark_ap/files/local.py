"""The driver's own disk (a local path or ``file://``), through ``os`` and ``pathlib``: no Spark needed,
so the job checks a local output before Spark starts."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from spark_ap.checksums import local_digests
from spark_ap.paths import local_path


def _local(path: str) -> Path:
    return Path(local_path(str(path)))


class LocalFiles:
    """:class:`spark_ap.files.Files` on the driver's disk; renames are atomic (POSIX ``rename``)."""

    renames_atomically = True

    def kind(self, path: str) -> str | None:
        p = _local(path)
        return "dir" if p.is_dir() else "file" if p.exists() else None

    def names(self, folder: str) -> list[str]:
        return sorted(entry.name for entry in _local(folder).iterdir())

    def read(self, path: str) -> bytes:
        return _local(path).read_bytes()

    def write(self, path: str, data: bytes, *, exclusive: bool = False) -> None:
        target = _local(path)
        if exclusive:
            fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            with os.fdopen(fd, "wb") as file:
                file.write(data)
            return
        staged = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}")
        staged.write_bytes(data)
        os.replace(staged, target)

    def mkdirs(self, folder: str) -> None:
        _local(folder).mkdir(parents=True, exist_ok=True)

    def rename(self, source: str, target: str) -> None:
        if _local(target).exists():
            raise FileExistsError(f"{target} exists")
        os.replace(_local(source), _local(target))

    def delete(self, path: str) -> None:
        p = _local(path)
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink(missing_ok=True)

    def modified(self, path: str) -> float:
        return _local(path).stat().st_mtime

    def touch(self, path: str) -> None:
        os.utime(_local(path))

    def listing(self, path: str) -> dict[str, list[int]]:
        root = _local(path)
        if root.is_file():
            return {"": [root.stat().st_size, root.stat().st_mtime_ns // 1_000_000]}
        found = {}
        for file in sorted(root.rglob("*")):
            relative = file.relative_to(root)
            if file.is_file() and not any(part.startswith(("_", ".")) for part in relative.parts):
                stat = file.stat()
                found[relative.as_posix()] = [stat.st_size, stat.st_mtime_ns // 1_000_000]
        return found

    def digests(self, folder: str, leave_out: tuple[str, ...] = ()) -> dict[str, list]:
        return local_digests(_local(folder), leave_out)
