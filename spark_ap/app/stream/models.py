"""Which model each micro-batch of the streaming job uses, pinned in the stream's checkpoint."""

from __future__ import annotations

import json
import logging
import os

from spark_ap.app.folders import LATEST
from spark_ap.app.stream.records import _Loaded
from spark_ap.errors import InvalidInputError
from spark_ap.estimators.model import AffinityPropagationModel
from spark_ap.files import basename, files_for, is_uri, join, parent

log = logging.getLogger("spark_ap.stream")


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


class ModelSource:
    """The model each micro-batch uses: the newest, or the one a replayed batch used before.

    Which model folder a batch uses is written to ``<checkpoint>/models/<batch>``
    once the model has loaded and before the batch writes anything, so a batch
    run again after a failure assigns its records exactly as the first attempt
    did. A newest model that cannot be read (a link being replaced, a broken
    folder) leaves the previous one in use, with a warning. The model and the
    checkpoint may be local or on a cluster's file system (:mod:`spark_ap.files`).
    """

    def __init__(self, path: str, checkpoint: str):
        self.path = path
        self.pins = join(checkpoint, "models")
        self.files = files_for(checkpoint)
        self.current: _Loaded | None = None

    def for_batch(self, batch_id: int) -> _Loaded:
        """The model of micro-batch ``batch_id``: the one pinned to it, else the newest, pinned now."""
        pin = join(self.pins, str(batch_id))
        if self.files.kind(pin) == "file":
            version, folder = json.loads(self.files.read(pin))
            if files_for(folder).kind(folder) == "dir":
                return self.load(version, folder)
            gone = "Batch %d ran with model %s, which is gone (%s); it runs again with the newest"
            log.warning(gone, batch_id, version, folder)
        try:
            model = self.load(*resolve_model(self.path))
        except Exception as error:
            if self.current is None:
                raise
            model = self.current
            log.warning(
                "The model at %s cannot be read (%s); batch %d keeps %s", self.path, error, batch_id, model.version
            )
        self.files.mkdirs(self.pins)
        self.files.write(pin, json.dumps([model.version, str(model.folder)]).encode())  # whole or absent
        for old in self.files.names(self.pins):  # the pins of batches long committed
            if old.isdigit() and int(old) < batch_id - 100:
                self.files.delete(join(self.pins, old))
        return model

    def load(self, version: str, folder: str) -> _Loaded:
        """The model in ``folder``; loaded once, and only the newest stays loaded."""
        if self.current is None or self.current.folder != folder:
            model = AffinityPropagationModel.load(folder)
            self.current = _Loaded(model, version, folder)
            log.info("Model %s: %d exemplars, %s, from %s", version, len(model.exemplars), model.getMetric(), folder)
        return self.current
