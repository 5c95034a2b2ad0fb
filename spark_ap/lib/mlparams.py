"""pyspark.ml ``Param`` objects, defaults and checks made from :mod:`spark_ap.params`."""

from __future__ import annotations

from pyspark.ml.param import Param, Params, TypeConverters

from spark_ap.errors import InvalidParamError
from spark_ap.params import SPECS, check, defaults, noise_param

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
