"""Symbolic layer: activations and their Gaussian-equivalence coefficients,
random-matrix expressions, automatic linear pencils and the operator-valued
free-probability equations they satisfy.

Pipeline: activation -> Gaussian-equivalence numbers (:mod:`pencils.activation`)
-> rational expression of Gaussian matrices (:mod:`pencils.expr`)
-> linear pencil (:mod:`pencils.linearize`) -> fixed-point equations
(:mod:`pencils.freeprob`), compiled and solved in :mod:`numerics`.

The linear-pencil engine builds on sympy (about 0.35 s to import): its names are
imported on first access (PEP 562), so ``import pencils; pencils.build("relu")``
with a warm cache never loads it.
"""
import importlib
import sys
import types

from .activation import Activation, activation, KNOWN_ACTIVATIONS
from .build import build

#: Linear-pencil engine (expressions -> pencils -> fixed-point equations): name -> submodule.
_LAZY = {
    **dict.fromkeys(["D", "MatExpr", "Space", "Trace", "gaussian", "identity", "inverse", "trace",
                     "transpose"], "expr"),
    **dict.fromkeys(["Pencil", "linearize"], "linearize"),
    **dict.fromkeys(["FixedPointSystem", "equations"], "freeprob"),
}

__all__ = ["Activation", "activation", "KNOWN_ACTIVATIONS", "build", *_LAZY]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """Keeps ``pencils.linearize`` the function: importing the submodule ``pencils.linearize``
    (``pencils.freeprob`` does) would otherwise bind the module over the lazy name."""

    def __setattr__(self, name, value):
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
