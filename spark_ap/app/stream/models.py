"""Which model each micro-batch of the streaming job uses, pinned in the stream's checkpoint by content."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import uuid

from spark_ap.app.folders import LATEST
from spark_ap.app.stream.records import _Loaded
from spark_ap.checksums import sha256_json
from spark_ap.errors import InvalidInputError, SparkAPError
from spark_ap.estimators.model import CHECKSUMS, AffinityPropagationModel
from spark_ap.files import Files, basename, files_for, is_uri, join, parent

log = logging.getLogger("spark_ap.stream")
# <checkpoint>/models/<CONTENT>/<key>/: a copy of every model a micro-batch was pinned to, named by its content.
CONTENT = "content"


def resolve_model(path: str) -> tuple[str, str]:
    """``(version, model folder)`` of what ``path`` points at now.

    ``path`` is a run folder holding ``model/``, a model folder, a link to a run folder (the
    DAG's ``<output_root>/latest``) or an output root, whose ``latest.json`` names its newest
    run folder; a local path or a URI (:mod:`spark_ap.files`). The version is the name of the
    run folder that holds the model, or of the model folder itself when it is not ``model``.
    """
    files = files_for(path)
    real = path.rstrip("/") if is_uri(path) else os.path.realpath(path)
    if files.kind(join(real, "model")) is None and files.kind(join(real, LATEST)) == "file":
        real = join(real, json.loads(files.read(join(real, LATEST)))["folder"])
    if files.kind(join(real, "model", "metadata")) == "dir":
        return basename(real), join(real, "model")
    if files.kind(join(real, "metadata")) == "dir":
        name = basename(real)
        return (basename(parent(real)) if name == "model" else name), real
    raise InvalidInputError(
        f"--model {path} holds no model: expected a run folder with model/ (a feature run's), a model folder "
        f"with metadata/ (AffinityPropagationModel.save), a link to a run folder or an output root with {LATEST}"
    )


def model_files(files: Files, folder: str) -> dict[str, bytes]:
    """``{path relative to folder: content}`` of the files of a model folder, but hidden ones (Hadoop's
    ``.crc`` files, staging folders), as :func:`spark_ap.checksums.local_digests` lists them."""
    found: dict[str, bytes] = {}

    def visit(relative: str) -> None:
        for name in files.names(join(folder, relative) if relative else folder):
            if name.startswith("."):
                continue
            path = f"{relative}/{name}" if relative else name
            kind = files.kind(join(folder, path))
            if kind == "dir":
                visit(path)
            elif kind == "file":
                found[path] = files.read(join(folder, path))

    visit("")
    return dict(sorted(found.items()))


def content_key(found: dict[str, bytes]) -> str:
    """The SHA-256 of a model's files (:func:`model_files`) but its checksum list: the ``sha256`` its
    ``checksums.json`` records when the model was saved with one (on the driver's disk)."""
    listed = {name: [len(data), hashlib.sha256(data).hexdigest()] for name, data in found.items()}
    listed.pop(CHECKSUMS, None)
    return sha256_json(listed)


def recorded_key(files: Files, folder: str) -> str | None:
    """The content key the model in ``folder`` records in its ``checksums.json``; None without one."""
    listed = join(folder, CHECKSUMS)
    if files.kind(listed) != "file":
        return None
    try:
        key = json.loads(files.read(listed))["sha256"]
    except (ValueError, KeyError, TypeError):
        return None
    return key if isinstance(key, str) else None


class ModelSource:
    """The model each micro-batch uses: the newest, or the very one a replayed batch used before.

    A model is known by its content (:func:`content_key`), not by its folder: a model overwritten
    in place is used from the next micro-batch on, like one published in a new run folder. Each
    model a batch uses is copied once into ``<checkpoint>/models/content/<key>/`` and loaded from
    there, and the batch's pin ``<checkpoint>/models/<batch>`` (its version, content key and the
    folder it came from) is written once the model has loaded and before the batch writes
    anything. A batch run again after a failure loads the copy its pin names, so it assigns its
    records exactly as the first attempt did, whatever the model's folder holds by then. A newest
    model that cannot be read (a link being replaced, a folder being overwritten, a broken one)
    leaves the previous one in use, with a warning. The model and the checkpoint may be local or on
    a cluster's file system (:mod:`spark_ap.files`).
    """

    def __init__(self, path: str, checkpoint: str):
        self.path = path
        self.pins = join(checkpoint, "models")
        self.copies = join(self.pins, CONTENT)
        self.files = files_for(checkpoint)
        self.current: _Loaded | None = None

    def for_batch(self, batch_id: int) -> _Loaded:
        """The model of micro-batch ``batch_id``: the one pinned to it, else the newest, pinned now."""
        pin = join(self.pins, str(batch_id))
        if self.files.kind(pin) == "file":
            pinned = self.pinned(batch_id, json.loads(self.files.read(pin)))
            if pinned is not None:
                return pinned
        try:
            model = self.newest()
        except Exception as error:
            if self.current is None:
                raise
            model = self.current
            log.warning(
                "The model at %s cannot be read (%s); batch %d keeps %s", self.path, error, batch_id, model.version
            )
        self.files.mkdirs(self.pins)
        record = {"version": model.version, "content": model.content, "folder": str(model.folder)}
        self.files.write(pin, json.dumps(record).encode())  # whole or absent
        for old in self.files.names(self.pins):  # the pins of batches long committed
            if old.isdigit() and int(old) < batch_id - 100:
                self.files.delete(join(self.pins, old))
        return model

    def newest(self) -> _Loaded:
        """The model ``--model`` points at now, loaded from its copy in the checkpoint."""
        return self.from_folder(*resolve_model(self.path))

    def from_folder(self, version: str, folder: str) -> _Loaded:
        """The model in ``folder`` as it is now: the one in use when its content is the same."""
        files = files_for(folder)
        recorded = recorded_key(files, folder)
        if recorded is not None and self.current is not None and self.current.content == recorded:
            return self.labelled(version)  # one small file read per micro-batch while the model stays
        found = model_files(files, folder)
        key = content_key(found)
        if recorded is not None and recorded != key:
            raise InvalidInputError(
                f"The model {folder} is damaged or being written: its files are not those its {CHECKSUMS} lists"
            )
        if self.current is not None and self.current.content == key:
            return self.labelled(version)
        target = join(self.copies, key)
        if not self.intact(target, key):
            self.keep(key, found)
        return self.load(version, key, folder, target)

    def pinned(self, batch_id: int, pin) -> _Loaded | None:
        """The model a batch was pinned to; None when it runs with the newest."""
        if isinstance(pin, list):  # [version, folder]: pinned by folder by an older spark-ap
            version, folder = pin
            if files_for(folder).kind(folder) == "dir":
                what = "Batch %d was pinned to the folder %s, not to a content: it runs with what is there now"
                log.warning(what, batch_id, folder)
                return self.from_folder(version, folder)
            gone = "Batch %d ran with model %s, which is gone (%s); it runs again with the newest"
            log.warning(gone, batch_id, version, folder)
            return None
        version, key, folder = pin["version"], pin["content"], pin["folder"]
        if self.current is not None and self.current.content == key:
            return self.labelled(version)
        target = join(self.copies, key)
        if self.intact(target, key):
            return self.load(version, key, folder, target)
        try:  # the copy is gone, but the folder it came from may hold the same content still
            found = model_files(files_for(folder), folder)
        except OSError:
            found = {}
        if found and content_key(found) == key:
            self.keep(key, found)
            return self.load(version, key, folder, target)
        raise SparkAPError(
            f"Batch {batch_id} ran with model {version} (content {key[:12]}), whose copy {target} is missing or "
            f"damaged, and {folder} holds other content now: run again, it would answer otherwise; delete "
            f"{join(self.pins, str(batch_id))} to run it with the newest model"
        )

    def intact(self, target: str, key: str) -> bool:
        """Whether the copy ``target`` holds the model of content ``key``, every file of it."""
        try:
            return self.files.kind(target) == "dir" and content_key(model_files(self.files, target)) == key
        except OSError:
            return False

    def keep(self, key: str, found: dict[str, bytes]) -> None:
        """Copy a model's files to ``<checkpoint>/models/content/<key>``: staged, then renamed in place."""
        target = join(self.copies, key)
        staged = join(self.copies, f".{key}.{uuid.uuid4().hex[:8]}")
        if CHECKSUMS not in found:  # saved on a cluster's file system: the copy lists its files, checked on load
            listed = {name: [len(data), hashlib.sha256(data).hexdigest()] for name, data in found.items()}
            found = {**found, CHECKSUMS: json.dumps({"files": listed, "sha256": key}, indent=1).encode()}
        for name, data in found.items():
            self.files.mkdirs(parent(join(staged, name)))
            self.files.write(join(staged, name), data)
        self.files.delete(target)  # a damaged copy
        self.files.rename(staged, target)
        # The copies no pin names any more, and what a copy cut short left behind.
        keep = {key} | ({self.current.content} if self.current is not None else set())
        for name in self.files.names(self.pins):
            if name.isdigit():
                pin = json.loads(self.files.read(join(self.pins, name)))
                keep |= {pin["content"]} if isinstance(pin, dict) else set()
        for name in self.files.names(self.copies):
            if name not in keep:
                self.files.delete(join(self.copies, name))

    def load(self, version: str, key: str, folder: str, target: str) -> _Loaded:
        """The model copied to ``target``, now the one in use."""
        model = AffinityPropagationModel.load(target)
        self.current = _Loaded(model, version, folder, key)
        log.info(
            "Model %s (content %s): %d exemplars, %s, from %s",
            version, key[:12], len(model.exemplars), model.getMetric(), folder,
        )  # fmt: skip
        return self.current

    def labelled(self, version: str) -> _Loaded:
        """The model in use, under ``version`` (the same content may be published under two names)."""
        if self.current.version != version:
            self.current = copy.copy(self.current)
            self.current.version = version
        return self.current
