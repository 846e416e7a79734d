"""Symbolic layer: activations and their Gaussian-equivalence coefficients,
random-matrix expressions, automatic linear pencils and the operator-valued
free-probability equations they satisfy.

Pipeline: activation -> Gaussian-equivalence numbers (:mod:`pencils.activation`)
-> rational expression of Gaussian matrices (:mod:`pencils.expr`)
-> linear pencil (:mod:`pencils.linearize`) -> fixed-point equations
(:mod:`pencils.freeprob`), compiled and solved in :mod:`numerics`.
"""
from .activation import Activation, activation, KNOWN_ACTIVATIONS
from .build import build

__all__ = ["Activation", "activation", "KNOWN_ACTIVATIONS", "build"]

# Linear-pencil engine: expressions -> pencils -> fixed-point equations.
from .expr import D, MatExpr, Space, Trace, gaussian, identity, inverse, trace, transpose  # noqa: E402
from .linearize import Pencil, linearize  # noqa: E402
from .freeprob import FixedPointSystem, equations  # noqa: E402

__all__ += ["D", "MatExpr", "Space", "Trace", "gaussian", "identity", "inverse", "trace",
            "transpose", "Pencil", "linearize", "FixedPointSystem", "equations"]
