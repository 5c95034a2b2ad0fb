"""Which model each micro-batch of the streaming job uses, pinned in the stream's checkpoint."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from spark_ap.app.stream.records import _Loaded
from spark_ap.errors import InvalidInputError
from spark_ap.estimators.model import AffinityPropagationModel

log = logging.getLogger("spark_ap.stream")


def resolve_model(path: str | Path) -> tuple[str, Path]:
    """``(version, model folder)`` of what ``path`` points at now.

    The version is the name of the run folder that holds the model (after
    following links), or of the model folder itself when it is not ``model``.
    """
    real = Path(os.path.realpath(path))
    if (real / "model" / "metadata").is_dir():
        return real.name, real / "model"
    if (real / "metadata").is_dir():
        return (real.parent.name if real.name == "model" else real.name), real
    raise InvalidInputError(
        f"--model {path} holds no model: expected a run folder with model/ (a feature run's), a model folder "
        "with metadata/ (AffinityPropagationModel.save), or a link to a run folder"
    )


class ModelSource:
    """The model each micro-batch uses: the newest, or the one a replayed batch used before.

    Which model folder a batch uses is written to ``<checkpoint>/models/<batch>``
    once the model has loaded and before the batch writes anything, so a batch
    run again after a failure assigns its records exactly as the first attempt
    did. A newest model that cannot be read (a link being replaced, a broken
    folder) leaves the previous one in use, with a warning.
    """

    def __init__(self, path: str, checkpoint: str):
        self.path = path
        self.pins = Path(checkpoint) / "models"
        self.current: _Loaded | None = None

    def for_batch(self, batch_id: int) -> _Loaded:
        """The model of micro-batch ``batch_id``: the one pinned to it, else the newest, pinned now."""
        pin = self.pins / str(batch_id)
        if pin.is_file():
            version, folder = json.loads(pin.read_text())
            if Path(folder).is_dir():
                return self.load(version, Path(folder))
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
        self.pins.mkdir(parents=True, exist_ok=True)
        staged = pin.with_suffix(".tmp")
        staged.write_text(json.dumps([model.version, str(model.folder)]))
        os.replace(staged, pin)
        for old in self.pins.iterdir():  # the pins of batches long committed
            if old.name.isdigit() and int(old.name) < batch_id - 100:
                old.unlink(missing_ok=True)
        return model

    def load(self, version: str, folder: Path) -> _Loaded:
        """The model in ``folder``; loaded once, and only the newest stays loaded."""
        if self.current is None or self.current.folder != folder:
            model = AffinityPropagationModel.load(str(folder))
            self.current = _Loaded(model, version, folder)
            log.info("Model %s: %d exemplars, %s, from %s", version, len(model.exemplars), model.getMetric(), folder)
        return self.current
