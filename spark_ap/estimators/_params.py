"""pyspark.ml ``Param`` objects, defaults and checks made from :mod:`spark_ap.params`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark.ml.param import Param, Params, TypeConverters

from spark_ap.errors import InvalidParamError
from spark_ap.params import SPECS, check, defaults, noise_param
from spark_ap.run.loop import Settings

if TYPE_CHECKING:
    from typing_extensions import Self

_CONVERTERS = {int: TypeConverters.toInt, float: TypeConverters.toFloat, str: TypeConverters.toString}


def spec_param(name: str) -> Param:
    """The ``Param`` for the spec ``name``: its doc and a type converter for its type."""
    spec = SPECS[name]
    converter = noise_param if name == "noise" else _CONVERTERS.get(spec.type)
    if converter is None:  # preference: a number or a word, checked by the spec
        return Param(Params._dummy(), name, spec.doc)
    return Param(Params._dummy(), name, spec.doc, typeConverter=converter)


class SpecParams(Params):
    """Params whose defaults and checks come from one estimator's spec (``_estimator``)."""

    _estimator: str

    def __init__(self, *args):
        super().__init__(*args)
        self._setDefault(**defaults(self._estimator))

    def _get(self, name: str):
        param = self.getParam(name)
        return self.getOrDefault(param) if self.isDefined(param) else None

    def _check(self) -> None:
        """Raise :class:`~spark_ap.InvalidParamError` for any param out of range."""
        self._check_spec()

    def _setChecked(self, **kwargs):
        """Set the params given by keyword and check them all; on an error, put the old values back."""
        before = {name: self.getOrDefault(name) for name in kwargs if self.isSet(name)}
        # The values as given, before pyspark's converters turn a wrong type into a TypeError
        # ("Could not convert nan to int") that names no rule.
        check(self._estimator, {k: noise_param(v) if k == "noise" else v for k, v in kwargs.items()})
        self._set(**kwargs)
        try:
            self._check()
        except InvalidParamError:
            for name in kwargs:
                self.clear(self.getParam(name))
            self._set(**before)
            raise
        return self

    def _check_spec(self) -> None:
        """Raise :class:`~spark_ap.InvalidParamError` for the first param its spec refuses."""
        check(self._estimator, {p.name: self.getOrDefault(p) for p in self.params if self.isDefined(p)})


class SharedParams(SpecParams):
    """The params both estimators have (how each AP run iterates), with their getters and setters."""

    damping = spec_param("damping")
    maxIter = spec_param("maxIter")
    convergenceIter = spec_param("convergenceIter")
    preference = spec_param("preference")
    idCol = spec_param("idCol")
    checkpointInterval = spec_param("checkpointInterval")
    checkpointKind = spec_param("checkpointKind")
    stateDir = spec_param("stateDir")
    engine = spec_param("engine")
    exchange = spec_param("exchange")
    noise = spec_param("noise")
    seed = spec_param("seed")
    maxClusterSize = spec_param("maxClusterSize")
    endOn = spec_param("endOn")

    def _check(self) -> None:
        """Raise :class:`~spark_ap.InvalidParamError` for any param out of range, alone or together."""
        self._check_spec()
        if self.getStateDir() and self.getCheckpointInterval() == -1:
            raise InvalidParamError("stateDir needs checkpointInterval >= 1: the state is saved that often")

    def _settings(self) -> Settings:
        """The params every AP run reads (the loop's), checked."""
        self._check()
        return Settings(
            damping=self.getDamping(),
            max_iter=self.getMaxIter(),
            convergence_iter=self.getConvergenceIter(),
            checkpoint_interval=self.getCheckpointInterval(),
            checkpoint_kind=self.getCheckpointKind(),
            noise=self.getNoise(),
            seed=self.getSeed(),
            engine=self.getEngine(),
            exchange=self.getExchange(),
            capacity=self.getMaxClusterSize() or None,
            end_on=self.getEndOn(),
        )

    def getDamping(self) -> float:
        return self.getOrDefault(self.damping)

    def getMaxIter(self) -> int:
        return self.getOrDefault(self.maxIter)

    def getConvergenceIter(self) -> int:
        return self.getOrDefault(self.convergenceIter)

    def getPreference(self) -> float | str:
        return self.getOrDefault(self.preference)

    def getIdCol(self) -> str:
        return self.getOrDefault(self.idCol)

    def getCheckpointInterval(self) -> int:
        return self.getOrDefault(self.checkpointInterval)

    def getCheckpointKind(self) -> str:
        return self.getOrDefault(self.checkpointKind)

    def getStateDir(self) -> str | None:
        return self._get("stateDir")

    def getEngine(self) -> str:
        return self.getOrDefault(self.engine)

    def getExchange(self) -> str:
        return self.getOrDefault(self.exchange)

    def getNoise(self) -> str:
        return self.getOrDefault(self.noise)

    def getSeed(self) -> int:
        return self.getOrDefault(self.seed)

    def getMaxClusterSize(self) -> int:
        return self.getOrDefault(self.maxClusterSize)

    def getEndOn(self) -> str:
        return self.getOrDefault(self.endOn)

    def setDamping(self, value: float) -> Self:
        return self._setChecked(damping=value)

    def setMaxIter(self, value: int) -> Self:
        return self._setChecked(maxIter=value)

    def setConvergenceIter(self, value: int) -> Self:
        return self._setChecked(convergenceIter=value)

    def setPreference(self, value: float | str) -> Self:
        return self._setChecked(preference=value)

    def setIdCol(self, value: str) -> Self:
        return self._setChecked(idCol=value)

    def setCheckpointInterval(self, value: int) -> Self:
        return self._setChecked(checkpointInterval=value)

    def setCheckpointKind(self, value: str) -> Self:
        return self._setChecked(checkpointKind=value)

    def setStateDir(self, value: str | None) -> Self:
        return self._setChecked(stateDir=value)

    def setEngine(self, value: str) -> Self:
        return self._setChecked(engine=value)

    def setExchange(self, value: str) -> Self:
        return self._setChecked(exchange=value)

    def setMaxClusterSize(self, value: int) -> Self:
        return self._setChecked(maxClusterSize=value)

    def setEndOn(self, value: str) -> Self:
        return self._setChecked(endOn=value)

    def setNoise(self, value: str | bool) -> Self:
        return self._setChecked(noise=value)

    def setSeed(self, value: int) -> Self:
        return self._setChecked(seed=value)
